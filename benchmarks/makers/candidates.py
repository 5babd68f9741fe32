"""Issue 13 §2: train every segmentation candidate, choose each one's post-processing on the
validation images, score all of them on the test images; one unattended, resumable run.

Usage::

    python benchmarks/makers/candidates.py DATA_DIR --out runs/candidates [--threads 1] [--only NAME ...]
        [--epochs-scale 1.0]

``DATA_DIR`` holds ``SEM/`` and ``TiO2_Masks_Manual_4connected/`` (the BAM data set). The split is
the bundled model's (``tio2fiji dataset build --mode practical --seed 0``: 21 training, 4
validation, 5 test images; ``tio2fiji/data/MODEL_CARD.md``), rebuilt in ``OUT/data``.

Candidates (:data:`CANDIDATES`): the bundled one-output U-Net (``unet-watershed``, not retrained:
its watershed parameters were already chosen on the validation images), the star-convex U-Net of
:mod:`tio2fiji.training.star` (``star-r18``, started from it), and that network's particle channel
alone with the watershed (``star-r18-particle``: its parameters chosen on the validation images). Per candidate:

1. train it in ``OUT/<name>/`` (skipped when ``history.csv`` already has every epoch; an
   interrupted run resumes from ``last.pt``);
2. choose its post-processing on the validation images only (:data:`GRID`: ``mode``
   polygons/grow/distance, ``prob_thresh``, ``nms_thresh``, ``min_size``; by pooled F1 at IoU 0.5,
   ties by PQ) and write it to ``OUT/<name>/choice.json``;
3. score the validation and the test images with :func:`tio2fiji.metrics.evaluate_images` (the
   metrics of ``tio2fiji evaluate``), timing ``segment`` per image -> ``OUT/<name>/val.json``,
   ``OUT/<name>/test.json``.

Then ``OUT/table.md`` holds one row per candidate: the validation scores that choose between them
(:func:`choose`: best validation F1; within 0.005 of it, the lowest validation median-ECD error),
and the test scores. Every step writes its files atomically and is
skipped when its output exists, so rerunning the same command resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tio2fiji.errors import Tio2FijiError
from tio2fiji.instances import connected_components, labels_from_star
from tio2fiji.io import mask_for_image, pair_files, read_mask, read_sem, write_json
from tio2fiji.metrics import evaluate_images, instance_scores, match_counts, match_instances
from tio2fiji.models.checkpoint import export_model, load_checkpoint, load_model
from tio2fiji.predict import predict_maps, segment
from tio2fiji.training import build_dataset
from tio2fiji.training.splits import read_split
from tio2fiji.training.star import train_star

#: name -> training settings (None: the bundled model of that name, not retrained); ``init``
#: "@NAME" is ``OUT/NAME/best.pt``; ``from``: the particle channel of that star-convex run.
CANDIDATES = {
    "unet-watershed": None,
    "star-r18": {"config": "resnet18-scratch", "init": "unet-watershed", "epochs": 15, "crops_per_epoch": 128,
                 "lr": 3e-4, "n_rays": 32, "seed": 0},
    # longer training: 8 more epochs from star-r18's best, at half its learning rate
    "star-r18-long": {"config": "resnet18-scratch", "init": "@star-r18", "epochs": 8, "crops_per_epoch": 128,
                      "lr": 1.5e-4, "n_rays": 32, "seed": 1},
    # the particle channel of star-r18 alone, separated by the watershed as the bundled model: a
    # U-Net fine-tuned further with StarDist's targets as auxiliary tasks
    "star-r18-particle": {"from": "star-r18"},
}
#: watershed parameters tried on the validation images for "from" candidates
WATERSHED_GRID = [{"h": h, "sigma": s, "weight_by_probability": True} for h in (0.5, 0.75, 1.0, 1.5)
                  for s in (0.0, 1.0, 2.0)]

_THRESHOLDS = (0.4, 0.5, 0.6)
_MIN_SIZES = (1, 30)
#: The post-processing parameters tried on the validation images ("distance" uses no rays, so
#: its NMS threshold is irrelevant).
GRID = ([{"mode": m, "prob_thresh": p, "nms_thresh": n, "sigma": g, "min_size": s}
         for m in ("polygons", "grow") for p in _THRESHOLDS for n in (0.3, 0.4, 0.5) for g in (0.0, 2.0)
         for s in _MIN_SIZES]
        + [{"mode": "distance", "prob_thresh": p, "nms_thresh": 0.4, "sigma": g, "min_size": s}
           for p in (0.2, 0.3) + _THRESHOLDS + (0.7,) for g in (1.0, 2.0, 3.0) for s in _MIN_SIZES])


def _load(data_dir: Path, ids):
    pairs = {Path(i).stem: (i, m) for i, m in
             pair_files(data_dir / "SEM", data_dir / "TiO2_Masks_Manual_4connected", strict=False)}
    out = []
    for i in ids:
        sem = read_sem(pairs[i][0])
        mask = mask_for_image(read_mask(pairs[i][1]), sem, mask_name=str(pairs[i][1]))
        out.append((i, sem, connected_components(mask, 4)))
    return out


def choose_star(model, val) -> dict:
    """The post-processing with the best pooled validation F1 (ties: PQ), and the whole grid."""
    maps = [predict_maps(model, sem.analysed, outputs="star") for _, sem, _ in val]
    rows = []
    keys = list(GRID[0])
    for params in tqdm(GRID, desc="post-processing grid", leave=False):
        tp = fp = fn = 0
        s_iou = 0.0
        for m, (_, _, gt) in zip(maps, val):
            lab = labels_from_star(m[1], m[2:], mask=m[0] > 0.5, **params)
            c = match_counts(match_instances(lab, gt))
            tp, fp, fn, s_iou = tp + c["tp"], fp + c["fp"], fn + c["fn"], s_iou + c["sum_iou"]
        rows.append({**params, **instance_scores(tp, fp, fn, s_iou)})
    best = max(rows, key=lambda r: (round(r["f1"], 6), r["pq"]))
    return {"star": {k: best[k] for k in keys}, "val": {k: best[k] for k in ("f1", "pq", "precision", "recall")},
            "grid": rows}


def particle_channel(checkpoint: dict) -> dict:
    """A one-output U-Net checkpoint from a star-convex one: its particle logit only."""
    state = dict(checkpoint["model"])
    for key in ("segmentation_head.0.weight", "segmentation_head.0.bias"):
        state[key] = state[key][:1].clone()
    cfg = {k: v for k, v in checkpoint["model_config"].items() if k not in ("outputs", "n_rays", "ray_scale", "star")}
    cfg.update(classes=1, derived_from="particle channel of a star-convex U-Net")
    return {**checkpoint, "model": state, "model_config": cfg}


def choose_watershed(model, val) -> dict:
    """Watershed parameters with the best pooled validation F1 (ties: PQ)."""
    from tio2fiji.instances import watershed_split
    from tio2fiji.predict import predict_probability

    probs = [predict_probability(model, sem.analysed) for _, sem, _ in val]
    rows = []
    for params in tqdm(WATERSHED_GRID, desc="watershed grid", leave=False):
        tp = fp = fn = 0
        s_iou = 0.0
        for p, (_, _, gt) in zip(probs, val):
            c = match_counts(match_instances(watershed_split(p > 0.5, p, **params), gt))
            tp, fp, fn, s_iou = tp + c["tp"], fp + c["fp"], fn + c["fn"], s_iou + c["sum_iou"]
        rows.append({**params, **instance_scores(tp, fp, fn, s_iou)})
    best = max(rows, key=lambda r: (round(r["f1"], 6), r["pq"]))
    return {"watershed": {k: best[k] for k in WATERSHED_GRID[0]},
            "val": {k: best[k] for k in ("f1", "pq", "precision", "recall")}, "grid": rows}


def score_images(model, test) -> dict:
    preds, gts, names, seconds = [], [], [], []
    for name, sem, gt in test:
        t0 = time.perf_counter()
        seg = segment(model, sem)
        seconds.append(time.perf_counter() - t0)
        preds.append(seg.labels)
        gts.append(gt)
        names.append(name)
    res = evaluate_images(preds, gts, names=names)
    res.pop("per_image", None)
    return {"metrics": res, "seconds_per_image": float(np.mean(seconds)), "images": names}


def prepare(data_dir: Path, out: Path):
    """``(OUT/data, validation images, test images)``: the bundled model's split, built once."""
    data = out / "data"
    if not (data / "split.json").is_file():
        build_dataset(data_dir / "SEM", data_dir / "TiO2_Masks_Manual_4connected", data, mode="practical",
                      seed=0)
    split, _ = read_split(data / "split.json")
    return data, _load(data_dir, split["val"]), _load(data_dir, split["test"])


def progress_bar(name):
    """``(bar, progress)``: a tqdm bar over training steps and the engine's ``progress`` callback."""
    bar = tqdm(total=1, desc=f"train {name}")

    def progress(done, total, what):
        bar.total = total
        bar.n = done
        bar.set_postfix_str(what)
        bar.refresh()

    return bar, progress


def run(data_dir: Path, out: Path, threads: int, only=None, epochs_scale: float = 1.0) -> None:
    import torch

    torch.set_num_threads(threads)
    data, val, test = prepare(data_dir, out)
    for name, cfg in CANDIDATES.items():
        if only and name not in only:
            continue
        run_dir = out / name
        run_dir.mkdir(parents=True, exist_ok=True)
        model_file = name  # a bundled model
        if cfg is not None and "from" in cfg:
            model_file = run_dir / "model.pt"
            if not model_file.is_file():
                ck = particle_channel(load_checkpoint(out / cfg["from"] / "best.pt"))
                choice_path = run_dir / "choice.json"
                if not choice_path.is_file():
                    write_json(choice_path, choose_watershed(load_model(ck), val))
                choice = json.loads(choice_path.read_text())
                export_model(ck, model_file, weights="int8", watershed=choice["watershed"])
        elif cfg is not None:
            epochs = max(1, round(cfg["epochs"] * epochs_scale))
            bar, progress = progress_bar(name)
            init = out / cfg["init"][1:] / "best.pt" if cfg["init"].startswith("@") else cfg["init"]
            train_star(data, run_dir, config=cfg["config"], n_rays=cfg["n_rays"], init=init,
                       epochs=epochs, crops_per_epoch=cfg["crops_per_epoch"], lr=cfg["lr"],
                       seed=cfg["seed"], resume=True, threads=threads, progress=progress)
            bar.close()
            choice_path = run_dir / "choice.json"
            if not choice_path.is_file():
                choice = choose_star(load_model(run_dir / "best.pt"), val)
                write_json(choice_path, choice)
            choice = json.loads(choice_path.read_text())
            model_file = run_dir / "model.pt"
            if not model_file.is_file():
                export_model(run_dir / "best.pt", model_file, weights="int8", star=choice["star"])
        for subset, images in (("val", val), ("test", test)):
            path = run_dir / f"{subset}.json"
            if not path.is_file():
                write_json(path, score_images(load_model(model_file), images))
    write_table(out)


#: validation F1 within this of the best counts as a tie (0.005 is about two particles of the ~350 in
#: the 4 validation images)
F1_TIE = 0.005


def choose(rows):
    """The candidate with the best validation F1; among those within :data:`F1_TIE` of it, the one
    with the lowest validation median-ECD error, then count error (the sizes are what users publish)."""
    if not rows:
        return None
    best = max(r[2]["metrics"]["f1"] for r in rows)
    tied = [r for r in rows if r[2]["metrics"]["f1"] >= best - F1_TIE]
    return min(tied, key=lambda r: (r[2]["metrics"]["median_ecd_error"], r[2]["metrics"]["count_error"]))[0]


def write_table(out: Path) -> None:
    """``OUT/table.md`` from every candidate scored so far (runs of ``--only`` add their rows)."""
    rows = [(name, json.loads((out / name / "test.json").read_text()),
             json.loads((out / name / "val.json").read_text()))
            for name in CANDIDATES if (out / name / "test.json").is_file() and (out / name / "val.json").is_file()]
    chosen = choose(rows)
    lines = ["| candidate | val F1 | val median ECD error | IoU | F1@0.5 | precision | recall | PQ | count error "
             "| median ECD error | KS | s/image |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, res, vres in rows:
        m = res["metrics"]
        lines.append(f"| {name}{' (chosen on val)' if name == chosen else ''} | {vres['metrics']['f1']:.4f} | "
                     f"{vres['metrics']['median_ecd_error']:.1%} | "
                     f"{m['mean_iou']:.3f} | {m['f1']:.3f} | {m['precision']:.3f} | {m['recall']:.3f} | "
                     f"{m['pq']:.3f} | {m['count_error']:.1%} | {m['median_ecd_error']:.1%} | {m['ks_distance']:.3f} | "
                     f"{res['seconds_per_image']:.1f} |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))  # noqa: T201


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--epochs-scale", type=float, default=1.0, help="e.g. 0.05 for a smoke test")
    a = ap.parse_args(argv)
    try:
        run(a.data_dir, a.out, a.threads, a.only, a.epochs_scale)
    except Tio2FijiError as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
