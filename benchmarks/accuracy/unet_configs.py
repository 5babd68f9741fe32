"""The thesis's Tables 6-7 for U-Net runs trained here: validation IoU and best epoch (Table 6),
test scores (Table 7), from the run folders of ``tio2fiji train unet`` and the ``metrics.json`` of
``tio2fiji evaluate --out RUN/eval-test-best-<separate>``::

    python benchmarks/accuracy/unet_configs.py runs/r18-scratch runs/r34-scratch
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd


def run_row(run: Path) -> dict:
    settings = json.loads((run / "run.json").read_text())
    hist = pd.read_csv(run / "history.csv")
    best = hist.loc[hist["val_iou"].idxmax()]
    row = {"run": run.name, "configuration": settings.get("config"), "epochs": len(hist),
           "best_epoch": int(best["epoch"]), "val_iou": float(best["val_iou"]),
           "train_minutes": float(hist["seconds"].sum() / 60)}
    for sep in ("watershed", "none"):  # pixel IoU/Dice from "none": no watershed lines, as the thesis
        m = run / f"eval-test-best-{sep}" / "metrics.json"
        if m.is_file():
            d = json.loads(m.read_text())
            row.update({"test_iou": d["mean_iou"], "test_dice": d["mean_dice"],
                        f"instance_iou_{sep}": d["instance_iou"], f"count_error_{sep}": d["count_error"],
                        f"ap50_{sep}": d["ap50_voc11"]})
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    a = ap.parse_args(argv)
    rows = [run_row(r) for r in a.runs]
    f = lambda v: "–" if v is None or v != v else f"{v:.4f}"  # noqa: E731
    print("Table 6 form: validation IoU and best epoch\n")
    print("| configuration | epochs | best epoch | val IoU | training time |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['configuration']} | {r['epochs']} | {r['best_epoch']} | {f(r['val_iou'])} | "
              f"{r['train_minutes']:.0f} min |")
    print("\nTable 7 form: test images, best checkpoint\n")
    print("| configuration | test IoU | Dice | instance IoU (components) | instance IoU (watershed) | "
          "count error (components) | count error (watershed) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['configuration']} | {f(r.get('test_iou'))} | {f(r.get('test_dice'))} | "
              f"{f(r.get('instance_iou_none'))} | {f(r.get('instance_iou_watershed'))} | "
              f"{f(r.get('count_error_none'))} | {f(r.get('count_error_watershed'))} |")


if __name__ == "__main__":
    main()
