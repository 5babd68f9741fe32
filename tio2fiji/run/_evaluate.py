"""Score a segmentation model on image/mask pairs: ``metrics.json`` and a per-image CSV.

Each image's analysed area (data bar excluded) is segmented with :func:`tio2fiji.predict.segment`
and compared with its mask by :func:`tio2fiji.metrics.evaluate_images`: per-image IoU and Dice
averaged over images, PASCAL VOC 11-point AP at IoU 0.5 and COCO AP/AP50 over particles (a
particle's score is its mean probability), per-instance IoU, and particle-count error. Predicted
particles are the connected components of the binary mask (4-connectivity by default, as the
BAM masks separate touching particles by 1-pixel gaps).
"""

from __future__ import annotations

import time
from pathlib import Path

from ..errors import InputError
from ..instances import CONNECTIVITY
from ..io import mask_for_image, pair_files, read_mask, read_sem, write_csv, write_json, write_mask
from ..metrics import BAM_MIN_SIZE, GT_CAUSES, anatomy_labels, evaluate_images, match_instances, per_image_frame
from ..models.checkpoint import load_model
from ..models.device import resolve_device
from ..models.settings import as_model
from ..predict import segment
from ..report._overlay import anatomy_image
from ..training import read_split
from ._batch import run_folder

__all__ = ["select_pairs", "evaluate_model"]


def select_pairs(images_dir, masks_dir, split_file=None, subset: str = "test") -> list:
    """Image/mask pairs of two folders, optionally only those of one subset of a ``split.json``.

    Returns
    -------
    list of (Path, Path)
    """
    pairs = pair_files(images_dir, masks_dir, strict=split_file is None)
    if split_file is None:
        return pairs
    split, _ = read_split(split_file)
    if subset not in split:
        raise InputError(f"{split_file}: no subset {subset!r} (has {', '.join(split)}).")
    wanted = list(split[subset])
    by_id = {Path(i).stem: (i, m) for i, m in pairs}
    missing = [i for i in wanted if i not in by_id]
    if missing:
        raise InputError(f"{len(missing)} image(s) of the {subset!r} split not found in {images_dir} "
                         f"with masks in {masks_dir}: {', '.join(missing[:10])}")
    return [by_id[i] for i in wanted]


def evaluate_model(model, pairs, out_dir=None, threshold: float | None = None, tile: int = 256,
                   overlap: int = 64, mode: str = "blend", batch_size: int = 4, connectivity: int = CONNECTIVITY,
                   data_bar_rows: int | None = None, save_masks: bool = False, coco: bool = True,
                   separate: str = "auto", progress=None, device=None, tta: bool = False,
                   min_size: int = BAM_MIN_SIZE, anatomy_plots: bool = True) -> dict:
    """Segment every image of ``pairs`` with ``model`` and compute the metrics of DESIGN.md.

    Parameters
    ----------
    model : Model, torch.nn.Module, str or path
        A loaded model (:func:`tio2fiji.models.load_model`), anything ``load_model`` accepts
        (``"default"``), or a bare network (the settings of a file that stores none).
    pairs : list of (image path, mask path)
        E.g. from :func:`select_pairs`. A mask may include or leave out the data bar.
    out_dir : path, optional
        Gets ``metrics.json`` and ``per_image.csv`` (and ``<name>_pred.tif`` with ``save_masks``),
        as one run of :class:`tio2fiji.io.RunFolder` (locked, listed in ``run_manifest.json``, the
        earlier evaluate run's files replaced).
    threshold, tile, overlap, mode, batch_size
        As :func:`tio2fiji.predict.segment` (threshold None: the one stored with the model).
    connectivity : {4, 8}
        Particles of the ground truth (and of the prediction with ``separate="none"``).
    data_bar_rows : int, optional
        Data-bar height of all images (detected per image when None).
    save_masks : bool
        Also write each predicted mask (0/255 TIFF of the analysed area).
    coco : bool
        Compute COCO AP (pycocotools).
    separate : {"auto", "watershed", "none"}
        How predicted particles are formed (:func:`tio2fiji.predict.segment`): ``"none"`` scores
        the plain connected components of the mask, as the thesis did.
    progress : callable, optional
        ``progress(done, total, name)`` after each image.
    device : str or torch.device, optional
        Where the network runs (:func:`tio2fiji.models.resolve_device`; default ``"auto"``: the
        GPU when present).
    tta : bool
        Test-time augmentation (:func:`tio2fiji.predict.segment`).
    min_size : int
        The second protocol: every score again with objects under ``min_size`` pixels dropped on
        both sides (BAM's scorer: 10), in ``metrics.json`` under ``"over_min_size"`` and in
        ``per_image_over_min_size.csv``; 1 or less skips it.
    anatomy_plots : bool
        With ``out_dir``: ``anatomy/<name>.png`` per image, the error anatomy drawn on the image
        (:func:`tio2fiji.report._overlay.anatomy_rgb`), objects of all sizes.

    Returns
    -------
    dict
        The ``metrics.json`` document: the keys of :func:`tio2fiji.metrics.evaluate_images` (all
        objects, with the error anatomy) plus ``over_min_size`` (the same with small objects
        dropped), ``model``, ``threshold``, ``inference`` (tile, overlap, mode, the mode of the
        last image as run, device, engine, mixed precision, test-time augmentation) and
        ``seconds_per_image``.
    """
    device = resolve_device(device)  # a missing GPU is refused before anything is read or written
    pairs = list(pairs)
    if not pairs:
        raise InputError("no image/mask pairs to evaluate.")
    names = [Path(i).stem for i, _ in pairs]
    planned = (["metrics.json", "per_image.csv"] + (["per_image_over_min_size.csv"] if min_size > 1 else [])
               + [f"{n}_pred.tif" for n in names if save_masks]
               + [f"anatomy/{n}.png" for n in names if anatomy_plots and out_dir is not None])
    with run_folder(out_dir, "evaluate", planned, inputs=[p for pair in pairs for p in pair]):
        model_name = str(model) if isinstance(model, (str, Path)) else type(as_model(model).net).__name__
        model = load_model(model, device=device) if isinstance(model, (str, Path)) else as_model(model).to(device)
        if threshold is None:
            threshold = model.settings.threshold
        preds, gts, probs, names, areas = [], [], [], [], []
        seconds = []
        for k, (img_path, mask_path) in enumerate(pairs, 1):
            sem = read_sem(img_path, data_bar_rows=data_bar_rows)
            gt = mask_for_image(read_mask(mask_path), sem, mask_name=str(mask_path))
            t0 = time.perf_counter()
            seg = segment(model, sem, threshold=threshold, tile=tile, overlap=overlap,
                          batch_size=batch_size, mode=mode, separate=separate,
                          connectivity=connectivity, tta=tta)
            seconds.append(time.perf_counter() - t0)
            name = Path(img_path).stem
            if save_masks and out_dir is not None:
                write_mask(Path(out_dir) / f"{name}_pred.tif", seg.labels > 0, sem.pixel_size_m)
            preds.append(seg.labels)
            gts.append(gt)
            probs.append(seg.probability)
            names.append(name)
            areas.append(sem.analysed)
            if progress is not None:
                progress(k, len(pairs), name)
        result = evaluate_images(preds, gts, probs=probs, names=names, connectivity=connectivity, coco=coco)
        if min_size > 1:
            result["over_min_size"] = evaluate_images(preds, gts, probs=probs, names=names, coco=coco,
                                                      connectivity=connectivity, min_size=min_size)
        result.update({"model": model_name, "threshold": threshold,
                       "inference": {"tile": tile, "overlap": overlap, "mode": mode,
                                     "mode_run": seg.info.get("mode"), "device": str(device),
                                     **{k: seg.info[k] for k in ("engine", "amp") if k in seg.info},
                                     "separate": seg.info.get("separate"), "tta": bool(tta),
                                     **({"watershed": seg.info["watershed"]} if "watershed" in seg.info
                                        else {})},
                       "seconds_per_image": float(sum(seconds) / len(seconds))})
        if out_dir is not None:
            out_dir = Path(out_dir)
            write_json(out_dir / "metrics.json", result)
            write_csv(out_dir / "per_image.csv", per_image_frame(result))
            if min_size > 1:
                write_csv(out_dir / "per_image_over_min_size.csv", per_image_frame(result["over_min_size"]))
            if anatomy_plots:
                for name, area, pred, gt in zip(names, areas, preds, gts):
                    m = match_instances(pred, gt, connectivity)
                    anatomy_image(out_dir / "anatomy" / f"{name}.png", area, m.gt_labels, m.pred_labels,
                                  *anatomy_labels(m), GT_CAUSES)
    return result
