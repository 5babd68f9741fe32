"""
U-Net against Mask R-CNN on the bundled images
==============================================

The thesis compared a U-Net (semantic segmentation; touching particles are split afterwards by a
watershed) with Mask R-CNN (instance segmentation: every particle its own detection and mask).
This example segments the bundled images with both bundled models (``--model default`` and
``--model maskrcnn``; ``tio2fiji/data/MODEL_CARD.md``) and scores each against the manual mask:
particle count, pixel IoU, and instance matching (a predicted particle matches a manual one when
their IoU exceeds 0.5). The bundled images were among both models' training images, so these are
not accuracy figures (those are in the model card, on test images neither model saw); they show
how the two models differ on the same particles. ``TIO2FIJI_GALLERY_FAST=1`` uses one 256×256 crop
of one image.
"""

import os
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from skimage.segmentation import find_boundaries

import tio2fiji
from tio2fiji.metrics import match_detections, match_instances

matplotlib.use("Agg")  # files only, no window
torch.set_num_threads(1)  # one core for the networks, one left for everything else

DATA = Path(__file__).resolve().parent / "data"
OUT = Path(os.environ.get("TIO2FIJI_GALLERY_OUT", "gallery-out"))
OUT.mkdir(parents=True, exist_ok=True)
FAST = os.environ.get("TIO2FIJI_GALLERY_FAST", "0") not in ("", "0")
crop = (slice(224, 480), slice(384, 640)) if FAST else (slice(None), slice(None))
paths = sorted((DATA / "SEM").glob("*.tif"))[:1 if FAST else None]

models = {"U-Net (default)": tio2fiji.load_model("default"),
          "Mask R-CNN (maskrcnn)": tio2fiji.load_model("maskrcnn")}
rows, shown = [], None
for path in paths:
    sem = tio2fiji.read_sem(path)
    manual = tio2fiji.mask_for_image(tio2fiji.read_mask(DATA / "masks" / f"{path.stem}_m.tif"), sem)[crop]
    image = sem.analysed[crop]
    segs = {label: tio2fiji.segment(model, image) for label, model in models.items()}
    # Scores against the manual mask; its particles are its 4-connected components (the
    # annotators kept touching particles apart by one-pixel lines, which 8-connectivity would jump).
    scores = tio2fiji.evaluate_images([s.labels for s in segs.values()], [manual] * len(segs),
                                      probs=[s.probability for s in segs.values()], names=list(segs),
                                      connectivity=4, coco=False)
    per = pd.DataFrame(scores["per_image"]).rename(columns={"name": "model"})
    matched = [int(match_detections(match_instances(s.labels, manual, 4)).sum()) for s in segs.values()]
    per.insert(per.columns.get_loc("count_error"), "matched", matched)  # predictions with IoU > 0.5
    per["precision"] = per["matched"] / per["n_pred"].clip(lower=1)
    per["recall"] = per["matched"] / per["n_gt"].clip(lower=1)
    per["f1"] = 2 * per["matched"] / (per["n_pred"] + per["n_gt"]).clip(lower=1)
    per.insert(1, "image", path.stem)
    rows.append(per)
    if shown is None:
        shown = (path.stem, image, manual, segs)
table = pd.concat(rows, ignore_index=True)

pd.set_option("display.width", 200)
print("against the manual masks (training images of both models):")
print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
table.to_csv(OUT / "unet_vs_maskrcnn.csv", index=False)

# Figure: outlines of the manual particles and of each model's, side by side, on the first image
name, image, manual, segs = shown
gray = image / max(float(image.max()), 1.0)
panels = {"manual mask": tio2fiji.connected_components(manual, 4), **{k: s.labels for k, s in segs.items()}}
fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.4))
for ax, (title, labels), colour in zip(axes, panels.items(), [(0, 1, 0), (1, 0.8, 0), (0.2, 0.6, 1)]):
    rgb = np.dstack([gray] * 3)
    rgb[find_boundaries(labels, mode="inner" if FAST else "thick")] = colour
    ax.imshow(rgb)
    ax.set_title(f"{title}: {int(labels.max())} particles")
    ax.set_axis_off()
fig.suptitle(f"{name}: the bundled U-Net and Mask R-CNN", fontsize=10)
fig.tight_layout()
fig.savefig(OUT / "unet_vs_maskrcnn.png", dpi=120)
print(f"\nwrote {OUT / 'unet_vs_maskrcnn.png'} and {OUT / 'unet_vs_maskrcnn.csv'}")
