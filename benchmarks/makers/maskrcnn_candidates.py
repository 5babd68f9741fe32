"""Issue 14: train Mask R-CNN candidates on the bundled model's split, choose on the validation
images, score on the test images; one unattended, resumable run (the thesis's Tables 4-5).

Usage::

    python benchmarks/makers/maskrcnn_candidates.py DATA_DIR --out runs/maskrcnn [--threads 1]
        [--only NAME ...] [--epochs-scale 1.0] [--device cpu]

``DATA_DIR`` holds ``SEM/`` and ``TiO2_Masks_Manual_4connected/`` (the BAM data set). The split is
the bundled U-Net's (``tio2fiji dataset build --mode practical --seed 0``: 21 training, 4
validation, 5 test images), rebuilt in ``OUT/data``.

Per candidate (:data:`CANDIDATES`, each a set of :func:`tio2fiji.training.train_maskrcnn`
arguments):

1. train it in ``OUT/<name>/`` (``resume=True``: a finished run is not redone, an interrupted one
   continues from ``last.pt``); ``best.pt`` is the whole-network epoch with the best validation
   IoU (the thesis's rule);
2. choose its post-processing on the validation images only: the detection score threshold
   (:data:`SCORE_THRESHOLDS`) and Panoptic FPN's overlap rule (:data:`MAX_OVERLAPS`,
   :func:`tio2fiji.instances.paint_instances`), by pooled F1 at IoU 0.5, ties by PQ ->
   ``OUT/<name>/choice.json``; the detections of each whole image are computed once at the
   lowest threshold (:func:`tio2fiji.predict.tiled_detections`) and painted for every pair;
3. export ``OUT/<name>/model.pt`` (int8, the chosen values stored beside the weights) and score the
   validation and the test images with :func:`tio2fiji.metrics.evaluate_images` (the metrics of
   ``tio2fiji evaluate``), timing ``segment`` per image -> ``val.json``, ``test.json``.

``OUT/table.md`` then holds one row per candidate in the form of the thesis's Tables 4-5
(validation AP@0.5 and IoU, best epoch, test IoU) with the instance scores beside them; the
candidate with the best validation IoU is marked. Every step writes its files atomically and is
skipped when its output exists, so rerunning the same command resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from candidates import prepare, progress_bar  # the U-Net candidates' split, images and bar

from tio2fiji.errors import Tio2FijiError
from tio2fiji.instances import paint_instances
from tio2fiji.io import write_json
from tio2fiji.metrics import evaluate_images, instance_scores, match_counts, match_instances
from tio2fiji.models.checkpoint import export_model, load_model
from tio2fiji.predict import segment, tiled_detections
from tio2fiji.training import train_maskrcnn

#: The levers of issue 14 on top of the thesis's configuration 1 (Table 3), sized for a 2-core CPU:
#: masks at 28 (the exact paste keeps small particles: tests/models/test_maskrcnn_levers.py), 512 sampled
#: RoIs per tile instead of 2000 (about 3x faster steps), the first two ResNet stages frozen.
_LEVERS = {"config": 1, "backbone": "resnet18", "weights_backbone": "unet", "norm": "frozen",
           "trainable_backbone_layers": 3, "mask_resolution": 28, "anchor_sizes": "auto",
           "box_head_dim": 256, "warmup_iters": 100, "lr": 0.01, "lr_final": 0.001,
           "crops_per_epoch": 128, "overrides": {"box_batch_size_per_image": 512}, "seed": 0}
#: name -> train_maskrcnn arguments.
CANDIDATES = {
    # ResNet-18 FPN from the bundled SEM U-Net's encoder, anchors from the training particles
    "r18-unet": {**_LEVERS, "epochs_heads": 1, "epochs_all": 19},
    # r18-unet continued (its run folder copied: see CONTINUES) for 10 more whole-network epochs at
    # lr 0.001, the same settings (a resume may change only the length)
    "r18-unet-long": {**_LEVERS, "epochs_heads": 1, "epochs_all": 24},
}
#: candidate -> the candidate whose training it continues (its last.pt, best.pt, history and run.json
#: are copied before the first training call; epochs are then counted from the copied run's)
CONTINUES = {"r18-unet-long": "r18-unet"}
#: candidates whose epochs --epochs-scale does not change (a continuation's length is absolute)
_FIXED_LENGTH = set(CONTINUES)
SCORE_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
#: the RPN's NMS IoU at inference (trained at the thesis's 0.2; 0.7 is torchvision's default)
RPN_NMS = (0.2, 0.4, 0.7)
#: None: every visible rest of an overlapped mask stays a particle
MAX_OVERLAPS = (None, 0.2, 0.35, 0.5, 0.7)


def choose_postprocessing(model, val) -> dict:
    """RPN NMS, score threshold and overlap rule with the best pooled validation F1, and the grid.

    F1 is compared to 3 decimals; ties go to the lower RPN NMS (fewer proposals: faster), then to PQ.
    The detections of each image are computed once per RPN NMS at the lowest score threshold.
    """
    rows = []
    for nms in RPN_NMS:
        model.net.rpn.nms_thresh = nms
        t0 = time.perf_counter()
        dets = [tiled_detections(model, sem.analysed, score_threshold=min(SCORE_THRESHOLDS))
                for _, sem, _ in val]
        seconds = (time.perf_counter() - t0) / max(len(val), 1)
        for ov in MAX_OVERLAPS:
            for t in SCORE_THRESHOLDS:
                tp = fp = fn = 0
                s_iou = 0.0
                for inst, (_, _, gt) in zip(dets, val):
                    labels = paint_instances(gt.shape, [d for d in inst if d[0] > t], max_overlap=ov)[0]
                    c = match_counts(match_instances(labels, gt))
                    tp, fp, fn, s_iou = tp + c["tp"], fp + c["fp"], fn + c["fn"], s_iou + c["sum_iou"]
                rows.append({"rpn_nms_thresh": nms, "score_threshold": t, "max_overlap": ov,
                             "detect_s_per_image": seconds, **instance_scores(tp, fp, fn, s_iou)})
    best = max(rows, key=lambda r: (round(r["f1"], 3), -r["rpn_nms_thresh"], r["pq"]))
    return {"rpn_nms_thresh": best["rpn_nms_thresh"], "score_threshold": best["score_threshold"],
            "max_overlap": best["max_overlap"],
            "val": {k: best[k] for k in ("f1", "pq", "precision", "recall")}, "grid": rows}


def score_images(model, images) -> dict:
    """Every metric of ``tio2fiji evaluate`` over ``images``, and seconds of ``segment`` per image."""
    preds, gts, probs, names, seconds = [], [], [], [], []
    for name, sem, gt in images:
        t0 = time.perf_counter()
        seg = segment(model, sem)
        seconds.append(time.perf_counter() - t0)
        preds.append(seg.labels)
        probs.append(seg.probability)
        gts.append(gt)
        names.append(name)
    res = evaluate_images(preds, gts, probs=probs, names=names)
    per_image = res.pop("per_image", None)
    return {"metrics": res, "per_image": per_image, "seconds_per_image": float(np.mean(seconds)),
            "images": names, "shape": list(images[0][1].analysed.shape) if images else None}


def continue_from(src: Path, run_dir: Path) -> None:
    """Copy the training state of the run in ``src`` into ``run_dir`` (a continuation starts there)."""
    import shutil

    if not (src / "last.pt").is_file():
        raise Tio2FijiError(f"{src}: no last.pt to continue from; train {src.name} first "
                            f"(--only {src.name}).")
    run_dir.mkdir(parents=True, exist_ok=True)
    for f in ("run.json", "history.csv", "best.pt", "last.pt"):  # last.pt last: it marks a copy done
        tmp = run_dir / (f + ".part")
        shutil.copyfile(src / f, tmp)
        tmp.replace(run_dir / f)


def run(data_dir: Path, out: Path, threads: int, only=None, epochs_scale: float = 1.0,
        device: str = "cpu") -> None:
    import torch

    torch.set_num_threads(threads)
    data, val, test = prepare(data_dir, out)
    for name, cfg in CANDIDATES.items():
        if only and name not in only:
            continue
        run_dir = out / name
        cfg = dict(cfg)
        if name not in _FIXED_LENGTH:
            cfg["epochs_all"] = max(1, round(cfg["epochs_all"] * epochs_scale))
        if name in CONTINUES and not (run_dir / "last.pt").is_file():
            continue_from(out / CONTINUES[name], run_dir)
        bar, progress = progress_bar(name)
        res = train_maskrcnn(data, run_dir, resume=True, threads=threads, device=device,
                             progress=progress, **cfg)
        bar.close()
        write_json(run_dir / "training.json", {k: res[k] for k in ("best_epoch", "best_val_iou", "seconds")})
        choice_path = run_dir / "choice.json"
        if not choice_path.is_file():
            write_json(choice_path, choose_postprocessing(load_model(run_dir / "best.pt"), val))
        choice = json.loads(choice_path.read_text())
        model_file = run_dir / "model.pt"
        if not model_file.is_file():
            export_model(run_dir / "best.pt", model_file, weights="int8",
                         score_threshold=choice["score_threshold"], max_overlap=choice["max_overlap"],
                         rpn_nms_thresh=choice.get("rpn_nms_thresh"),
                         metadata={"benchmark": "benchmarks/makers/maskrcnn_candidates.py", "candidate": name,
                                   "settings": cfg,
                                   "choice": {k: choice.get(k) for k in ("rpn_nms_thresh", "score_threshold",
                                                                            "max_overlap", "val")}})
        for subset, images in (("val", val), ("test", test)):
            path = run_dir / f"{subset}.json"
            if not path.is_file():
                write_json(path, score_images(load_model(model_file), images))
    write_table(out)


def write_table(out: Path) -> None:
    """``OUT/table.md`` (Tables 4-5 and the instance scores) from every candidate scored so far."""
    rows = []
    for name in CANDIDATES:
        files = [out / name / f for f in ("training.json", "val.json", "test.json")]
        if all(f.is_file() for f in files):
            rows.append((name, *(json.loads(f.read_text()) for f in files)))
    chosen = max(rows, key=lambda r: r[2]["metrics"]["mean_iou"])[0] if rows else None
    lines = ["| candidate | training (CPU min) | best epoch | val AP@0.5 | val IoU | test IoU | test Dice "
             "| test AP@0.5 | test COCO AP | F1@0.5 | precision | recall | PQ | count error "
             "| median ECD error | KS | s/image |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, tr, v, t in rows:
        m = t["metrics"]
        lines.append(
            f"| {name}{' (best val IoU)' if name == chosen else ''} | {tr['seconds'] / 60:.0f} | {tr['best_epoch']} "
            f"| {v['metrics']['ap50_voc11']:.3f} | {v['metrics']['mean_iou']:.3f} | {m['mean_iou']:.3f} "
            f"| {m['mean_dice']:.3f} | {m['ap50_voc11']:.3f} | {m['coco_ap']:.3f} | {m['f1']:.3f} "
            f"| {m['precision']:.3f} | {m['recall']:.3f} | {m['pq']:.3f} | {m['count_error']:.1%} "
            f"| {m['median_ecd_error']:.1%} | {m['ks_distance']:.3f} | {t['seconds_per_image']:.1f} |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))  # noqa: T201


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--out", type=Path, default=Path("runs/maskrcnn"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--epochs-scale", type=float, default=1.0,
                    help="multiply every candidate's whole-network epochs (e.g. 0.1 for a smoke test)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    try:
        run(args.data_dir, args.out, args.threads, args.only, args.epochs_scale, args.device)
    except Tio2FijiError as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
