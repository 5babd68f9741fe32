"""The smallest particle a model reports: scores on the validation images with and without it, and
(``--write``) the bound stored in a compact model file.

Usage::

    python benchmarks/makers/min_particle.py /work/shared/data/bam-tio2 [--model default]
        [--min-px 1 10] [--subset val|test] [--out runs/min-particle] [--write FILE --value 10]

The bundled distance U-Net was trained with the manual masks' components under 10 px (at 7.34 nm per
pixel) left out as drawing fragments, so it never learnt particles that small; what it outputs under
that size are slivers (pieces cut off by the one-pixel lines between particles, mask pixels no seed
reached, resampling remainders), which moved the counts of the magnified test copies by 2-4
particles in images of 28-59 (README, *Magnification*). For each bound (pixels at the model's
scale, :attr:`tio2fiji.models.settings.ModelSettings.min_particle_px`): F1, PQ, count and
median-ECD errors on the images of ``--subset``, with all objects and with objects under 10 px
dropped on both sides (BAM's protocol, unchanged by a bound up to 10 px by construction).
``--write FILE --value N`` stores ``N`` in FILE's ``model_config`` (weights untouched), atomically.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from candidates import prepare  # noqa: E402

KEYS = ("f1", "pq", "precision", "recall", "count_error", "count_error_signed", "median_ecd_error")


def write_bound(path: Path, value: int) -> None:
    """Store ``value`` as ``min_particle_px`` in the compact model file ``path`` (checked first)."""
    from tio2fiji.models.checkpoint import load_checkpoint, save_checkpoint
    from tio2fiji.models.settings import ModelSettings

    obj = load_checkpoint(path)
    cfg = dict(obj["model_config"], min_particle_px=int(value))
    ModelSettings.from_config(cfg)
    save_checkpoint(path, {**obj, "model_config": cfg})


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--model", default="default")
    ap.add_argument("--min-px", type=int, nargs="+", default=[1, 10])
    ap.add_argument("--subset", choices=["val", "test"], default="val")
    ap.add_argument("--out", type=Path, default=Path("runs/min-particle"))
    ap.add_argument("--write", type=Path)
    ap.add_argument("--value", type=int, default=10)
    args = ap.parse_args(argv)
    if args.write:
        write_bound(args.write, args.value)
        print(f"wrote min_particle_px {args.value} into {args.write}")
        return

    import torch

    from tio2fiji.metrics import evaluate_images
    from tio2fiji.models.checkpoint import load_model
    from tio2fiji.models.settings import Model
    from tio2fiji.predict import segment

    torch.set_num_threads(1)
    _, val, test = prepare(args.data_dir, args.out)
    images = val if args.subset == "val" else test
    base = load_model(args.model)
    rows = {}
    for m in args.min_px:
        model = Model(base.net, dataclasses.replace(base.settings, min_particle_px=m))
        preds = [segment(model, sem).labels for _, sem, _ in images]
        gts = [gt for _, _, gt in images]
        for protocol, min_size in (("all objects", 1), ("over 9 px", 10)):
            res = evaluate_images(preds, gts, coco=False, min_size=min_size)
            rows[f"{m} px, {protocol}"] = {k: res[k] for k in KEYS}
            print(args.subset, m, protocol, {k: round(res[k], 4) for k in KEYS}, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.subset}.json").write_text(json.dumps({"model": args.model, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
