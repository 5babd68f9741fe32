"""Where do the models fail? Per-image IoU and F1 of several models side by side (the thesis's
Fig. 32, drawn as ``fig32_per_image.png``),
recall of ground-truth particles by size and by contact with a neighbour, and an overlay picture.

    python benchmarks/accuracy/compare_models.py --images ../shared/data/bam-tio2/SEM \
        --masks ../shared/data/bam-tio2/TiO2_Masks_Manual_4connected --split runs/data-practical/split.json \
        --model unet=default --model maskrcnn=runs/mrcnn-c1/best.pt --out runs/compare
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

SIZE_BINS = (0, 100, 400, 1600, np.inf)  # particle area in pixels


def touching(gt_labels: np.ndarray) -> np.ndarray:
    """Per ground-truth particle: does it touch another one (across the 1-pixel gap)?"""
    from scipy import ndimage as ndi

    n = int(gt_labels.max())
    out = np.zeros(n, bool)
    # a particle touches another when its 2-pixel dilation covers another label
    grown = ndi.grey_dilation(gt_labels, size=(5, 5))
    shrunk = -ndi.grey_dilation(-np.where(gt_labels > 0, gt_labels, n + 1), size=(5, 5))
    both = (grown != shrunk) & (grown > 0) & (shrunk <= n)
    for lab in (grown[both], shrunk[both]):
        out[lab[lab > 0] - 1] = True
    return out


def recall_table(best_iou, areas, touch, threshold=0.5) -> dict:
    found = best_iou >= threshold
    rows = {}
    for lo, hi in zip(SIZE_BINS[:-1], SIZE_BINS[1:]):
        sel = (areas >= lo) & (areas < hi)
        rows[f"area {lo:g}-{hi:g} px"] = (int(sel.sum()), float(found[sel].mean()) if sel.any() else float("nan"))
    for name, sel in (("touching", touch), ("isolated", ~touch)):
        rows[name] = (int(sel.sum()), float(found[sel].mean()) if sel.any() else float("nan"))
    rows["all"] = (len(found), float(found.mean()))
    return rows


def overlay(image, gt, preds: dict, path, crop=(slice(150, 450), slice(300, 700))):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from skimage.segmentation import find_boundaries

    panels = [("manual mask", gt)] + list(preds.items())
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4))
    for ax, (name, lab) in zip(np.atleast_1d(axes), panels):
        ax.imshow(image[crop], cmap="gray")
        b = find_boundaries(lab[crop], mode="inner")
        rgba = np.zeros(b.shape + (4,))
        rgba[b] = (1.0, 0.2, 0.1, 1.0) if name != "manual mask" else (0.1, 0.9, 0.2, 1.0)
        ax.imshow(rgba)
        ax.set_title(f"{name}: {len(np.unique(lab[crop])) - 1} particles", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fig32(df, names, path):
    """Per-image IoU and F1@0.5 of each model as grouped bars (the thesis's Fig. 32 showed IoU)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    x = np.arange(len(df))
    width = 0.8 / len(names)
    for ax, metric, title in zip(axes, ("iou", "f1"), ("pixel IoU", "F1 at IoU 0.5 (one-to-one)")):
        for k, name in enumerate(names):
            vals = df[f"{name}_{metric}"].to_numpy()
            bars = ax.bar(x + (k - (len(names) - 1) / 2) * width, vals, width, label=name)
            ax.bar_label(bars, fmt="%.2f", fontsize=7)
        ax.set_xticks(x, df["image"], rotation=30)
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{title}; mean " + ", ".join(f"{n} {df[f'{n}_{metric}'].mean():.3f}" for n in names),
                     fontsize=9)
    axes[0].set_ylabel("score")
    axes[0].legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    import torch

    from tio2fiji.instances import connected_components
    from tio2fiji.io import mask_for_image, read_mask, read_sem
    from tio2fiji.metrics import best_iou_per_gt, instance_scores, iou, match_counts, match_instances
    from tio2fiji.models.checkpoint import load_model
    from tio2fiji.predict import segment
    from tio2fiji.run import select_pairs

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", required=True)
    ap.add_argument("--masks", required=True)
    ap.add_argument("--split", required=True)
    ap.add_argument("--subset", default="test")
    ap.add_argument("--model", action="append", required=True, help="NAME=PATH (or NAME=default)")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    models = {k: load_model(v) for k, v in (m.split("=", 1) for m in a.model)}
    pairs = select_pairs(a.images, a.masks, a.split, a.subset)
    a.out.mkdir(parents=True, exist_ok=True)
    per_image, recall = [], {k: [] for k in models}
    for img_path, mask_path in pairs:
        sem = read_sem(img_path)
        gt = connected_components(mask_for_image(read_mask(mask_path), sem), 4)
        areas = np.bincount(gt.ravel())[1:]
        touch = touching(gt)
        preds = {}
        row = {"image": Path(img_path).stem, "n_gt": int(gt.max())}
        for name, model in models.items():
            t0 = time.perf_counter()
            seg = segment(model, sem)
            row[f"{name}_seconds"] = time.perf_counter() - t0
            preds[name] = seg.labels
            m = match_instances(seg.labels, gt)
            best = best_iou_per_gt(m)
            row[f"{name}_iou"] = iou(seg.labels > 0, gt > 0)
            row[f"{name}_instance_iou"] = float(best.mean())
            c = match_counts(m)
            row[f"{name}_f1"] = instance_scores(c["tp"], c["fp"], c["fn"], c["sum_iou"])["f1"]
            row[f"{name}_n"] = int(seg.labels.max())
            recall[name].append((best, areas, touch))
        per_image.append(row)
        overlay(sem.analysed, gt, preds, a.out / f"overlay_{row['image']}.png")
    df = pd.DataFrame(per_image)
    df.to_csv(a.out / "per_image_iou.csv", index=False)
    fig32(df, list(models), a.out / "fig32_per_image.png")
    print("| image | particles | " + " | ".join(f"{k} IoU | {k} F1@0.5 | {k} instance IoU | {k} n | {k} s"
                                               for k in models) + " |")
    print("|---" * (2 + 5 * len(models)) + "|")
    for r in per_image:
        print(f"| {r['image']} | {r['n_gt']} | " + " | ".join(
            f"{r[k + '_iou']:.3f} | {r[k + '_f1']:.3f} | {r[k + '_instance_iou']:.3f} | {r[k + '_n']} | "
            f"{r[k + '_seconds']:.1f}" for k in models) + " |")
    rec = {}
    for name, parts in recall.items():
        best = np.concatenate([p[0] for p in parts])
        areas = np.concatenate([p[1] for p in parts])
        touch = np.concatenate([p[2] for p in parts])
        rec[name] = recall_table(best, areas, touch)
    print("\nRecall of manual particles (best IoU >= 0.5), n in brackets\n")
    cats = list(next(iter(rec.values())))
    print("| model | " + " | ".join(cats) + " |")
    print("|---" * (1 + len(cats)) + "|")
    for name, r in rec.items():
        print(f"| {name} | " + " | ".join(f"{r[c][1]:.2f} ({r[c][0]})" for c in cats) + " |")
    (a.out / "recall.json").write_text(json.dumps(rec, indent=1))


if __name__ == "__main__":
    main()
