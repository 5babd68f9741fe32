"""``tio2fiji segment``, ``evaluate`` and ``export``: a model on images, scored, or exported."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..instances import CONNECTIVITY, SEPARATE
from ..metrics import BAM_MIN_SIZE
from ..transforms import SCALES
from ._common import (
    _CONNECTIVITY,
    _Checked,
    _device_option,
    _fail_early_if_none_readable,
    _Progress,
    _report_failures,
)
from ._groups import main


@main.command("segment")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Folder for <stem>_mask.tif, <stem>_labels.tif, <stem>_scores.csv.")
@click.option("--model", "model_path", default="default", show_default=True,
              help="A bundled model ('default' = unet-border, the distance U-Net; unet-watershed; maskrcnn), "
              "a model file or a checkpoint (U-Net or Mask R-CNN).")
@click.option("--separate", type=click.Choice(SEPARATE), default="auto",
              show_default=True, help="Touching particles: auto = the model's own way (the default unet-border's "
              "seeds from its distance and band outputs; unet-watershed's distance watershed), watershed (of the "
              "particle probability), or none.")
@click.option("--connectivity", type=_CONNECTIVITY, default=str(CONNECTIVITY), show_default=True,
              help="Connectivity of the particles with --separate none.")
@click.option("--threshold", type=_Checked("threshold"), default=None,
              help="Probability threshold (default: the one stored with the model).")
@click.option("--mode", type=click.Choice(["auto", "whole", "blend", "thesis"]), default="auto", show_default=True,
              help="U-Net: whole: one pass over the image; blend: overlapping tiles, smooth weights; "
                   "thesis: 256 tiles, mirrored border; auto: whole up to a size limit, else blend. "
                   "Mask R-CNN: always its 256 tiles.")
@click.option("--overlap", type=_Checked("overlap"), default=64, show_default=True)
@click.option("--data-bar-rows", type=_Checked("data_bar_rows"), default=None,
              help="Data-bar height; detected when omitted.")
@click.option("--rois", is_flag=True, help="Also write <stem>_rois.zip (ImageJ ROI Manager set).")
@click.option("--probability", is_flag=True, help="Also write <stem>_prob.tif (float32).")
@click.option("--tta", is_flag=True, help="Test-time augmentation: maps averaged over 8 flips/rotations (8x time).")
@click.option("--scale", type=click.Choice(SCALES), default="model", show_default=True,
              help="model: segment each calibrated image at the model's pixel size and bring the particles "
                   "back to its own grid; none: at the image's own pixel size.")
@click.option("--threads", type=_Checked("threads"), default=None, help="torch CPU threads (default: torch's choice).")
@_device_option
def segment_cmd(images, out_dir, model_path, separate, connectivity, threshold, mode, overlap,
                data_bar_rows, rois, probability, tta, scale, threads, device):
    """Segment SEM IMAGES into particle masks, label images and (optionally) ROI sets."""
    from ..models import resolve_device
    from ..run import segment_files

    device = resolve_device(device)  # a missing GPU is one line, before any file is read
    _fail_early_if_none_readable(images)
    if threads:
        import torch

        torch.set_num_threads(threads)
    bar = _Progress(len(images), "segment")
    try:
        res = segment_files(images, out_dir, model=model_path, separate=separate, threshold=threshold,
                            mode=mode, overlap=overlap, data_bar_rows=data_bar_rows,
                            connectivity=int(connectivity), rois=rois, probability=probability,
                            progress=bar, device=device, tta=tta, scale=scale)
    finally:
        bar.close()
    for info in res.inputs:
        # a renamed stem (x_2: another x.tif) says which input it is
        source = "" if info["image"] == Path(info["path"]).name else f" (from {info['image']})"
        click.echo(f"{info['stem']}: {info['particles']} particles{source}")
    click.echo(f"wrote {len(res.tables)} image(s) to {out_dir}")
    _report_failures(res.failures, len(images))
    if res.failures:
        sys.exit(1)


@main.command("evaluate")
@click.option("--model", "model_path", default="default", show_default=True,
              help="A bundled model ('default' = unet-border, the distance U-Net; unet-watershed; maskrcnn), "
              "a compact model file, or a training checkpoint (best.pt).")
@click.option("--images", "images_dir", required=True, type=click.Path(path_type=Path, file_okay=False))
@click.option("--masks", "masks_dir", required=True, type=click.Path(path_type=Path, file_okay=False))
@click.option("--split", "split_file", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              default=None,
              help="split.json: evaluate only the images of --subset.")
@click.option("--subset", default="test", show_default=True)
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Folder for metrics.json and per_image.csv.")
@click.option("--threshold", type=_Checked("threshold"), default=None,
              help="Probability threshold (default: the one stored with the model, else 0.5).")
@click.option("--mode", type=click.Choice(["auto", "blend", "thesis", "whole"]), default="auto", show_default=True,
              help="auto: what segment and analyze do (one pass up to a size limit, else blend); blend: "
                   "overlapping tiles, smooth weights; thesis: 256 tiles, mirrored border; whole: one pass.")
@click.option("--overlap", type=_Checked("overlap"), default=64, show_default=True)
@click.option("--connectivity", type=_CONNECTIVITY, default=str(CONNECTIVITY), show_default=True)
@click.option("--data-bar-rows", type=_Checked("data_bar_rows"), default=None)
@click.option("--save-masks", is_flag=True, help="Also write each predicted mask.")
@click.option("--separate", type=click.Choice(SEPARATE), default="auto",
              show_default=True, help="Touching particles: the model's own way (auto), watershed split, or "
              "none (connected components, as the thesis).")
@click.option("--tta", is_flag=True, help="Test-time augmentation: maps averaged over 8 flips/rotations (8x time).")
@click.option("--min-size", type=_Checked("min_size"), default=BAM_MIN_SIZE, show_default=True,
              help="Second protocol: every score again with objects under this many pixels dropped on both "
                   "sides (BAM's scorer: 10); 1 turns it off.")
@click.option("--no-anatomy-plots", is_flag=True, help="Skip anatomy/<image>.png (the error anatomy on each image).")
@_device_option
def evaluate_cmd(model_path, images_dir, masks_dir, split_file, subset, out_dir, threshold, mode,
                 overlap, connectivity, data_bar_rows, save_masks, separate, tta, min_size, no_anatomy_plots,
                 device):
    """Score a model on image/mask pairs; writes metrics.json and per_image.csv."""
    from ..models import resolve_device
    from ..run import evaluate_model, select_pairs

    device = resolve_device(device)
    pairs = select_pairs(images_dir, masks_dir, split_file=split_file, subset=subset)
    bar = _Progress(len(pairs), "evaluate", unit="image")
    try:
        res = evaluate_model(model_path, pairs, out_dir=out_dir, threshold=threshold, overlap=overlap,
                             mode=mode, connectivity=int(connectivity), data_bar_rows=data_bar_rows,
                             save_masks=save_masks, separate=separate, progress=bar, device=device,
                             tta=tta, min_size=min_size, anatomy_plots=not no_anatomy_plots)
    finally:
        bar.close()

    def fmt(v):
        return "n/a" if v is None else f"{v:.4f}"

    click.echo(f"{res['n_images']} image(s): mean IoU {fmt(res['mean_iou'])}, Dice {fmt(res['mean_dice'])}, "
               f"instance IoU {fmt(res['instance_iou'])}, AP50 (VOC11) {fmt(res['ap50_voc11'])}, "
               f"COCO AP {fmt(res['coco_ap'])}, count error {fmt(res['count_error'])}")
    click.echo(f"  one-to-one at IoU 0.5: precision {fmt(res['precision'])}, recall {fmt(res['recall'])}, "
               f"F1 {fmt(res['f1'])}, PQ {fmt(res['pq'])}; prediction-centred instance IoU (BAM) "
               f"{fmt(res['prediction_iou'])}; median ECD error {fmt(res['median_ecd_error'])}, "
               f"KS distance {fmt(res['ks_distance'])}")
    a = res["anatomy"]
    click.echo(f"  unmatched manual particles: {a['missed']} missed, {a['merged']} merged with a neighbour, "
               f"{a['split']} split, {a['boundary_only']} boundary only; false particles: {a['false_merger']} "
               f"mergers, {a['false_piece']} pieces, {a['false_spurious']} spurious")
    if "over_min_size" in res:
        o = res["over_min_size"]
        click.echo(f"  objects of {min_size} px and more: F1 {fmt(o['f1'])}, PQ {fmt(o['pq'])}, count error "
                   f"{fmt(o['count_error'])}, median ECD error {fmt(o['median_ecd_error'])}")
    click.echo(f"wrote {out_dir / 'metrics.json'} and {out_dir / 'per_image.csv'}")


@main.command("export")
@click.option("--model", "model_path", default="default", show_default=True,
              help="'default' (bundled U-Net), 'maskrcnn' (bundled Mask R-CNN; --format onnx only) "
                   "or a model file / checkpoint.")
@click.option("--format", "fmt", type=click.Choice(["bioimageio", "onnx"]), default="bioimageio",
              show_default=True, help="bioimageio: model package (.zip or folder); onnx: one .onnx file.")
@click.option("--out", "out_path", required=True, type=click.Path(path_type=Path),
              help="Package .zip or new folder (bioimageio), or .onnx file.")
@click.option("--test-image", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
              help="SEM image for the package's test tensors / the ONNX check (default: bundled example).")
@click.option("--no-test", is_flag=True, help="Skip the test run (bioimageio.core / onnxruntime).")
@_device_option
def export_cmd(model_path, fmt, out_path, test_image, no_test, device):
    """Export the U-Net for bioimage.io consumers (deepImageJ, ilastik, ...), or a U-Net or Mask R-CNN
    as ONNX (PyTorch's side of the ONNX check runs on --device)."""
    from ..export import export
    from ..models import resolve_device

    device = resolve_device(device)
    res = export(model_path, fmt, out_path, test_image=test_image, check=not no_test, device=device)
    click.echo(f"wrote {res['path']}")
    if fmt == "bioimageio":
        click.echo(f"  files: {', '.join(res['files'])}")
        if "test" in res:
            t = res["test"]
            click.echo(f"  bioimageio.core test: {t['status']} (format {t['format_version']}, "
                       f"weights {', '.join(t['weights'])})")
    elif res.get("arch") == "maskrcnn" and "detections" in res:
        (nt, no), (pt, po), (st, so) = res["detections"], res["particles"], res["seconds"]
        diffs = ("" if res["max_abs_diff"] is None else
                 f", max |score diff| {res['max_score_diff']:.2e}, max |mask diff| {res['max_abs_diff']:.2e}")
        labels = ("identical" if res["mask_equal"] else f"differ in {res['mask_differences']} pixels")
        click.echo(f"  onnxruntime vs PyTorch on {res['test_image']} {res['shape'][1]}x{res['shape'][0]}: "
                   f"detections {no} vs {nt}{diffs}; particles {po} vs {pt}, labels {labels} "
                   f"({so:.1f} s vs {st:.1f} s)")
    elif "max_abs_diff" in res:
        masks = ("identical" if res["mask_equal"]
                 else f"differ in {res['mask_differences']} pixels")
        click.echo(f"  onnxruntime vs PyTorch on {res['test_image']} {res['shape'][1]}x{res['shape'][0]}: "
                   f"max |diff| {res['max_abs_diff']:.2e}, masks at {res['threshold']:g} {masks}")
