"""Would the bundled model separate more particles at another working scale?

Usage::

    python benchmarks/accuracy/working_scale.py /work/shared/data/bam-tio2 [--model default]
        [--subset val|test] [--factors 0.9 1 1.15 1.33] [--out runs/workscale]

For each factor ``f`` the model is told that it works at ``pixel_size / f`` (so ``segment`` magnifies
each image ``f``-fold before the network, and brings the particles back to the image's grid), the
distance decoding's smoothing ``sigma`` scaled by ``f`` too; F1 at IoU 0.5, PQ, count and median-ECD
errors on the bundled model's validation (or test) images, objects under 10 px dropped on both
sides. Factor 1 is the shipped setting (its validation F1 equals ``border_candidates.py``'s).
MODEL_CARD, *Stages 9 and 10*, quotes the validation run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "makers"))

from candidates import prepare  # noqa: E402

KEYS = ("f1", "pq", "count_error", "count_error_signed", "median_ecd_error")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--model", default="default")
    ap.add_argument("--subset", choices=["val", "test"], default="val")
    ap.add_argument("--factors", type=float, nargs="+", default=[0.9, 1.0, 1.15, 1.33])
    ap.add_argument("--out", type=Path, default=Path("runs/workscale"))
    args = ap.parse_args(argv)

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
    for f in args.factors:
        settings = base.settings
        if settings.outputs == "distance":
            settings = dataclasses.replace(settings, distance={**settings.distance,
                                                               "sigma": settings.distance["sigma"] * f})
        model = Model(base.net, dataclasses.replace(settings, pixel_size_m=settings.pixel_size_m / f))
        preds = [segment(model, sem).labels for _, sem, _ in images]
        res = evaluate_images(preds, [gt for _, _, gt in images], coco=False, min_size=10)
        rows[str(f)] = {k: res[k] for k in KEYS}
        print(args.subset, f, {k: round(v, 4) for k, v in rows[str(f)].items()}, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.subset}.json").write_text(json.dumps({"model": args.model, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
