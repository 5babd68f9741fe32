"""Train Cellpose 3.1 from scratch, with its own training code, on the training images of our split.

Usage (Cellpose 3.1 lives in the overlay environment of ``scripts/setup_peers.sh``, not in ``.venv``)::

    .venv-peers/bin/python benchmarks/accuracy/train_cellpose.py DATA_DIR --split runs/candidates/data/split.json \
        --out runs/peers-cellpose --minutes 300 [--threads 1]

``DATA_DIR`` holds ``SEM/<id>.tif`` and ``TiO2_Masks_Manual_4connected/<id>_m.tif``
(e.g. ``/work/shared/data/bam-tio2``). The split is the JSON of ``tio2fiji dataset build``
(:func:`tio2fiji.training.splits.read_split`): Cellpose trains on ``split["train"]`` (the same 21
images as the bundled U-Net) and reports its loss on ``split["val"]`` (its ``test_data``; the loss
only: Cellpose selects nothing with it). ``split["test"]`` is never read here; score those images with
``benchmarks/accuracy/peers.py --cellpose-model OUT``.

Data: the analysed area of each SEM image (:func:`tio2fiji.read_sem`, ``.analysed``: without the
data bar) as a one-channel gray image, and the manual mask cropped to it
(:func:`tio2fiji.read_mask`, :func:`tio2fiji.mask_for_image`) labelled with 4-connectivity
(:func:`tio2fiji.instances.connected_components`; the BAM masks separate touching particles by
1-pixel gaps). Flows are computed once, in memory (nothing is written next to the data).

Model and training: ``CellposeModel(gpu=False, pretrained_model=False, nchan=2, diam_mean=D)`` (no
weights loaded: from scratch; the default residual U-Net of Cellpose 3), ``channels=[0, 0]`` (gray,
no second channel) and ``cellpose.train.train_seg`` with its own API defaults: AdamW, learning rate 0.005, weight decay
1e-5, batch 8 (``--optimizer sgd --learning-rate 0.2`` gives the command line's settings, which did
not learn in this budget: 5 of 798 test particles after 43 epochs),
224×224 patches, one random patch per image and epoch, ``rescale=True`` (each training image is
resized so that its particles have diameter ``D``, then randomly by 0.75–1.25), per-image 1–99 %
percentile normalisation, ``min_train_masks=5``, Cellpose's learning-rate schedule (10 warm-up
epochs, halvings at the end) for the chosen number of epochs.

``D`` (``--diam-mean``): by default ``labels``, the mean over the training images of Cellpose's own
diameter of each image (the median equivalent circular diameter, ECD = 2·sqrt(area/π), of its
particles; ``cellpose.utils.diameters``, at least 5). That is exactly the ``diam_labels`` that
``train_seg`` stores in the model, so training sees the particles on average at their native size
and evaluation with ``diameter=diam_mean`` (``peers.py``) does no resizing. ``mean-ecd`` is the
pooled mean ECD of all training particles instead, or give a number. All three are recorded.

Budget: ``--minutes M`` of training on this CPU. A first short call (``--calibration-epochs``, default
2, on a throw-away network with the same data) measures the seconds of one epoch: from the start of
``train_seg``'s epoch loop to its last save, over those epochs (the epoch-0 warm-up and validation
loss included, so slightly pessimistic), read off the time stamps of Cellpose's own log lines; its
set-up (checks, normalisation) is timed apart. ``n_epochs = floor((60·M - set-up) / epoch)``, at
most ``--max-epochs``. ``--n-epochs`` skips the measurement; ``--measure-only`` stops after it. The
calibration is not part of the M minutes.

Resumable as far as Cellpose allows: ``train_seg`` cannot resume (no optimizer state or epoch in its
checkpoints; it overwrites the model file every 100 epochs), so an interrupted training starts again
from epoch 0, but a finished one (``OUT/cellpose_train.json`` with ``finished: true`` and its model
file) is not repeated (``--force`` does), and a measured epoch time is reused.

Writes ``OUT/models/cellpose_tio2`` (Cellpose's model file; ``--model-name``),
``OUT/cellpose_train.json`` (settings, diameters, calibration, n_epochs, seconds, versions, load
average) and ``OUT/cellpose_losses.csv`` (train loss per epoch; the validation loss where Cellpose
computes it: epochs 0, 5, 10, 20, ...). Progress goes to stderr (Cellpose's log).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from importlib.metadata import version as dist_version
from pathlib import Path


def _threads_env(argv) -> None:
    """Pin the BLAS/OpenMP pools before numpy and torch load (they read these at import)."""
    n = "1"
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            n = argv[i + 1]
        elif a.startswith("--threads="):
            n = a.split("=", 1)[1]
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, n)


def load_pairs(data_dir: Path, ids):
    """Analysed areas (float32) and 4-connected label images (int32) of ``ids``."""
    import numpy as np

    import tio2fiji
    from tio2fiji.instances import connected_components

    images, labels = [], []
    for i in ids:
        sem_path = data_dir / "SEM" / f"{i}.tif"
        mask_path = data_dir / "TiO2_Masks_Manual_4connected" / f"{i}_m.tif"
        sem = tio2fiji.read_sem(sem_path)
        mask = tio2fiji.mask_for_image(tio2fiji.read_mask(mask_path), sem, mask_name=str(mask_path))
        images.append(np.ascontiguousarray(sem.analysed, dtype=np.float32))
        labels.append(connected_components(mask, 4).astype(np.int32))
    return images, labels


def diameters(labels, min_train_masks: int) -> dict:
    """Cellpose's per-image diameters and the pooled ECD statistics of the training particles."""
    import numpy as np
    from cellpose import utils

    per_image, n_masks, ecd = [], [], []
    for lab in labels:
        d, dall = utils.diameters(lab)
        per_image.append(float(d))
        n_masks.append(len(dall))
        areas = np.bincount(lab.ravel())[1:]
        ecd.append(2.0 * np.sqrt(areas[areas > 0] / np.pi))
    kept = [max(5.0, d) for d, n in zip(per_image, n_masks) if n >= min_train_masks]
    ecd = np.concatenate(ecd)
    return {"labels": float(np.mean(kept)), "mean_ecd": float(ecd.mean()),
            "median_ecd_pooled": float(np.median(ecd)), "per_image_median_ecd": per_image,
            "n_particles_per_image": n_masks, "n_particles": int(ecd.size)}


def make_model(diam_mean: float, seed: int, mkldnn: bool):
    import torch
    from cellpose import models

    torch.manual_seed(seed)
    return models.CellposeModel(gpu=False, device=torch.device("cpu"), pretrained_model=False,
                                nchan=2, diam_mean=diam_mean, mkldnn=mkldnn)


def run_train_seg(model, data, n_epochs: int, save_path: Path, model_name: str, args):
    from cellpose import train

    return train.train_seg(
        model.net, train_data=data["train_x"], train_labels=data["train_y"],
        test_data=data["val_x"], test_labels=data["val_y"], channels=[0, 0], normalize=True,
        learning_rate=args.learning_rate, weight_decay=args.weight_decay, momentum=0.9,
        SGD=args.optimizer == "sgd", batch_size=args.batch_size, n_epochs=n_epochs,
        min_train_masks=args.min_train_masks, save_path=str(save_path), save_every=args.save_every,
        model_name=model_name, rescale=True, bsize=224)


class _EpochClock(logging.Handler):
    """Times of ``train_seg``'s own log lines: the start of its epoch loop, each logged epoch, the saves."""

    def __init__(self):
        super().__init__(level=logging.INFO)
        self.start, self.marks = None, []

    def emit(self, record):
        msg = record.getMessage()
        if msg.startswith(">>> saving model to"):
            self.start, self.marks = record.created, []
        elif self.start is not None and (msg.startswith("saving network parameters") or ", train_loss=" in msg):
            self.marks.append((record.created - self.start, msg.split(",")[0].split(" to ")[0]))

    def loop_seconds(self):
        """Seconds from the start of the epoch loop to the last save (the end of the last epoch)."""
        saves = [t for t, m in self.marks if m.startswith("saving")]
        return saves[-1] if saves else None


def timed_train_seg(model, data, n_epochs: int, save_path: Path, model_name: str, args):
    """``run_train_seg`` with its wall time split into set-up (data checks, normalisation) and epochs."""
    clock = _EpochClock()
    logger = logging.getLogger("cellpose.train")
    logger.addHandler(clock)
    try:
        t0 = time.time()
        result = run_train_seg(model, data, n_epochs, save_path, model_name, args)
        total = time.time() - t0
    finally:
        logger.removeHandler(clock)
    loop = clock.loop_seconds()
    timing = {"epochs": n_epochs, "seconds": total,
              "setup_seconds": (clock.start - t0) if clock.start is not None else None,
              "loop_seconds": loop, "seconds_per_epoch": (loop if loop is not None else total) / n_epochs,
              "marks": [[round(t, 2), m] for t, m in clock.marks]}
    return result, timing


def _write_json(path: Path, doc: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str), encoding="utf-8")
    tmp.replace(path)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    _threads_env(argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--split", type=Path, required=True, help="split.json of tio2fiji dataset build")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--minutes", type=float, default=None, help="training budget in CPU minutes")
    ap.add_argument("--n-epochs", type=int, default=None, help="fixed epochs (no measurement, no --minutes)")
    ap.add_argument("--max-epochs", type=int, default=None, help="upper bound on the epochs (smoke runs)")
    ap.add_argument("--calibration-epochs", type=int, default=2, help="epochs of the timing call (default 2)")
    ap.add_argument("--measure-only", action="store_true", help="only measure the seconds per epoch")
    ap.add_argument("--threads", type=int, default=1, help="torch / OpenCV threads (default 1)")
    ap.add_argument("--max-train-images", type=int, default=None,
                    help="use only the first K training images (smoke runs)")
    ap.add_argument("--diam-mean", default="labels",
                    help="'labels' (default: mean of the per-image median ECDs, Cellpose's diam_labels), "
                         "'mean-ecd' (pooled mean ECD) or a number of pixels")
    ap.add_argument("--optimizer", choices=("sgd", "adamw"), default="adamw", help="default adamw (train_seg)")
    ap.add_argument("--learning-rate", type=float, default=0.005, help="default 0.005 (train_seg)")
    ap.add_argument("--weight-decay", type=float, default=1e-5)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--min-train-masks", type=int, default=5)
    ap.add_argument("--save-every", type=int, default=100, help="Cellpose's checkpoint interval (epochs)")
    ap.add_argument("--seed", type=int, default=0, help="torch seed of the initial weights")
    ap.add_argument("--no-mkldnn", action="store_true", help="plain CPU kernels instead of MKL-DNN")
    ap.add_argument("--model-name", default="cellpose_tio2")
    ap.add_argument("--force", action="store_true", help="train again even when a finished model exists")
    args = ap.parse_args(argv)
    if args.n_epochs is None and args.minutes is None:
        ap.error("give --minutes (budget) or --n-epochs")

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    log = logging.getLogger("train_cellpose")

    import cv2
    import numpy as np
    import torch
    from cellpose import dynamics

    import tio2fiji
    from tio2fiji.training.splits import read_split

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "cellpose_train.json"
    model_path = out / "models" / args.model_name
    prev = json.loads(json_path.read_text(encoding="utf-8")) if json_path.is_file() else {}
    if prev.get("finished") and model_path.is_file() and not args.force and not args.measure_only:
        log.info("finished model exists: %s (%s epochs, %.0f s); --force trains again",
                 model_path, prev.get("n_epochs"), prev.get("train_seconds", float("nan")))
        return 0

    split, meta = read_split(args.split)
    train_ids = list(split["train"])[: args.max_train_images] if args.max_train_images else list(split["train"])
    val_ids = list(split["val"])
    t0 = time.perf_counter()
    train_x, train_lab = load_pairs(args.data_dir, train_ids)
    val_x, val_lab = load_pairs(args.data_dir, val_ids)
    diams = diameters(train_lab, args.min_train_masks)
    if args.diam_mean == "labels":
        diam_mean = diams["labels"]
    elif args.diam_mean == "mean-ecd":
        diam_mean = diams["mean_ecd"]
    else:
        diam_mean = float(args.diam_mean)
    cpu = torch.device("cpu")
    data = {"train_x": train_x, "train_y": dynamics.labels_to_flows(train_lab, device=cpu),
            "val_x": val_x, "val_y": dynamics.labels_to_flows(val_lab, device=cpu)}
    prep_seconds = time.perf_counter() - t0
    log.info("%d training, %d validation images; diam_mean %.2f px (%s); data and flows in %.1f s",
             len(train_ids), len(val_ids), diam_mean, args.diam_mean, prep_seconds)

    doc = {
        "format": "tio2fiji-cellpose-train", "finished": False,
        "data_dir": str(args.data_dir), "split": str(args.split), "split_mode": meta.get("mode"),
        "train_ids": train_ids, "val_ids": val_ids, "model_path": str(model_path),
        "cellpose_version": dist_version("cellpose"), "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "tio2fiji_version": tio2fiji.__version__, "python": sys.version.split()[0],
        "threads": args.threads, "budget_minutes": args.minutes, "max_epochs": args.max_epochs,
        "settings": {"pretrained_model": False, "nchan": 2, "channels": [0, 0], "normalize": True,
                     "optimizer": args.optimizer, "learning_rate": args.learning_rate, "momentum": 0.9,
                     "weight_decay": args.weight_decay, "batch_size": args.batch_size, "bsize": 224,
                     "rescale": True, "scale_range": 0.5, "min_train_masks": args.min_train_masks,
                     "save_every": args.save_every, "seed": args.seed, "mkldnn": not args.no_mkldnn,
                     "connectivity": 4, "input": "analysed area (data bar removed), gray"},
        "diam_mean": diam_mean, "diam_mean_rule": args.diam_mean, "diameters": diams,
        "prep_seconds": prep_seconds,
    }

    # --- seconds per epoch: a short call on a throw-away network (or the one measured before)
    calib = prev.get("calibration")
    same = (calib and prev.get("train_ids") == train_ids and prev.get("threads") == args.threads
            and prev.get("settings", {}).get("batch_size") == args.batch_size
            and calib.get("epochs") == args.calibration_epochs)
    if args.n_epochs is None and (not same or args.measure_only):
        log.info("measuring: %d epoch(s) on a throw-away network", args.calibration_epochs)
        with tempfile.TemporaryDirectory(prefix="cp-calib-") as tmp:
            model = make_model(diam_mean, args.seed, not args.no_mkldnn)
            load0 = os.getloadavg()
            _, calib = timed_train_seg(model, data, args.calibration_epochs, Path(tmp), "calibration", args)
        calib.update(n_train=len(train_ids), loadavg_before=load0, loadavg_after=os.getloadavg())
        del model
    if calib:
        doc["calibration"] = calib
        log.info("one epoch: %.1f s (%d images, %d thread(s))", calib["seconds_per_epoch"], len(train_ids),
                 args.threads)
    if args.measure_only:
        _write_json(json_path, {**prev, "calibration": calib} if prev.get("finished") else doc)
        log.info("wrote %s (measurement only)", json_path)
        return 0

    if args.n_epochs is not None:
        n_epochs, rule = args.n_epochs, "--n-epochs"
    else:
        setup = calib.get("setup_seconds") or 0.0
        n_epochs = max(1, math.floor((60 * args.minutes - setup) / calib["seconds_per_epoch"]))
        rule = (f"floor((60 * {args.minutes} min - {setup:.1f} s set-up) / "
                f"{calib['seconds_per_epoch']:.2f} s per epoch)")
    if args.max_epochs is not None and n_epochs > args.max_epochs:
        n_epochs, rule = args.max_epochs, rule + f", capped by --max-epochs {args.max_epochs}"
    doc.update(n_epochs=n_epochs, n_epochs_rule=rule, started=time.strftime("%Y-%m-%dT%H:%M:%S"))
    _write_json(json_path, doc)
    log.info("training %d epochs (%s) into %s", n_epochs, rule, model_path)

    if model_path.exists():
        model_path.unlink()  # an unfinished checkpoint or a --force rerun: train_seg starts at epoch 0
    model = make_model(diam_mean, args.seed, not args.no_mkldnn)
    load0 = os.getloadavg()
    (filename, train_losses, test_losses), timing = timed_train_seg(model, data, n_epochs, out, args.model_name,
                                                                    args)
    secs = timing["seconds"]
    if Path(filename) != model_path:
        shutil.move(str(filename), model_path)
    with open(out / "cellpose_losses.csv", "w", encoding="utf-8") as f:
        f.write("epoch,train_loss,val_loss\n")
        for e, (tr, te) in enumerate(zip(train_losses, test_losses)):
            val = f"{te:.6f}" if (e == 5 or e % 10 == 0) else ""
            f.write(f"{e},{tr:.6f},{val}\n")
    timing.pop("marks")
    doc.update(finished=True, train_seconds=secs, seconds_per_epoch_measured=timing["seconds_per_epoch"],
               train_timing=timing,
               loadavg_before=load0, loadavg_after=os.getloadavg(),
               finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
               diam_labels_stored=float(model.net.diam_labels.item()),
               diam_mean_stored=float(model.net.diam_mean.item()),
               final_train_loss=float(train_losses[-1]))
    _write_json(json_path, doc)
    log.info("trained %d epochs in %.0f s (%.1f s per epoch); model %s", n_epochs, secs,
             timing["seconds_per_epoch"], model_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
