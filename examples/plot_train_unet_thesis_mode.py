"""
Training a U-Net the thesis's way
=================================

The thesis trained its U-Nets on 256x256 tiles cut from the SEM images, one tile per image, each
flipped three ways, each flip kept and rotated by five angles: 18 tiles per source tile (§3.1,
``tio2fiji.build_dataset(..., mode="thesis")``). This example builds such a data set from the
three bundled images (two for training, the third for validation), trains a small U-Net
(ResNet-18 encoder from scratch, Dice loss, Adam at 1e-4, as the thesis) for a few epochs on the
CPU, and draws the training curves and the trained network's prediction on a validation tile. A
few epochs on two source tiles only show the mechanics; the bundled model was trained on random
crops of 21 images for 35 epochs (see tio2fiji/data/MODEL_CARD.md).
"""

import os
import shutil
import tempfile
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.ticker import MaxNLocator
from skimage.segmentation import find_boundaries

import tio2fiji

matplotlib.use("Agg")  # files only, no window
torch.set_num_threads(1)  # one core for the network, one left for everything else

DATA = Path(__file__).resolve().parent / "data"
OUT = Path(os.environ.get("TIO2FIJI_GALLERY_OUT", "gallery-out"))
OUT.mkdir(parents=True, exist_ok=True)
FAST = os.environ.get("TIO2FIJI_GALLERY_FAST", "0") not in ("", "0")

# TIO2FIJI_GALLERY_FAST=1: one epoch on 128x128 tiles, just to run every step (the thesis's tiles
# are 256x256). Otherwise 10 epochs of 36 tiles, about 6 minutes on one CPU core.
tile, epochs = (128, 1) if FAST else (256, 10)

work = Path(tempfile.mkdtemp(prefix="tio2fiji-gallery-"))

# The thesis drew 22 source tiles and 6 test tiles from 28 images; with three images: three source
# tiles and no test tile. The thesis then drew its 16 validation tiles at random from the 396
# flipped and rotated ones, so every validation tile had siblings in the training set;
# val_grouping="source" holds out all 18 tiles of one source instead, so the validation IoU is
# measured on an image the network never saw.
built = tio2fiji.build_dataset(DATA / "SEM", DATA / "masks", work / "data", mode="thesis",
                               n_source=3, n_test=0, n_val=18, val_grouping="source", tile=tile)
tiles = built.tiles
print(f"thesis mode: {built.counts()} tiles of {tile}x{tile} from {tiles['source'].nunique()} sources")

run = tio2fiji.train_unet(work / "data", work / "unet", config="resnet18-scratch", epochs=epochs,
                          batch_size=4, lr=1e-4, loss="dice", seed=0, threads=1)
print(f"trained {epochs} epoch(s) in {run['seconds']:.0f} s; best validation IoU "
      f"{run['best_val_iou']:.3f} at epoch {run['best_epoch']}")
history = pd.read_csv(work / "unet" / "history.csv")  # one row per epoch, written by the engine
print(history.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
history.to_csv(OUT / "train_unet_history.csv", index=False)

# The best checkpoint is a model file like any other: load it and segment a validation tile (the
# source tile as it was cut, without flip or rotation: "vh" flipped and turned by 180 degrees)
model = tio2fiji.load_model(work / "unet" / "best.pt")
val = tiles[tiles["split"] == "val"]
row = val[(val["flip"] == "vh") & (val["angle"] == 180)].iloc[0]
image = tio2fiji.read_sem(work / "data" / row["image"], data_bar_rows=0).analysed
truth = tio2fiji.read_mask(work / "data" / row["mask"])
seg = tio2fiji.segment(model, image, separate="none")  # plain connected components
print(f"validation tile {row['name']}: pixel IoU {tio2fiji.evaluate_images([seg.mask], [truth])['mean_iou']:.3f}")

# Figure: the curves, then the tile with the manual outlines and the network's probability
fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
ax = axes[0]
ax.plot(history["epoch"], history["train_loss"], "o-", label="training loss")
ax.plot(history["epoch"], history["val_loss"], "s-", label="validation loss")
ax.plot(history["epoch"], history["val_iou"], "^-", label="validation IoU")
ax.set_xlabel("epoch")
ax.xaxis.set_major_locator(MaxNLocator(integer=True))
ax.set_title(f"U-Net {run['best_val_iou']:.2f} IoU after {epochs} epoch(s) (CPU)")
ax.legend()
gray = image / max(float(image.max()), 1.0)
rgb = np.dstack([gray] * 3)
rgb[find_boundaries(truth, mode="inner")] = (0, 1, 0)
axes[1].imshow(rgb)
axes[1].set_title(f"validation tile {row['name']}, manual outlines")
axes[2].imshow(seg.probability, vmin=0, vmax=1, cmap="magma")
axes[2].contour(seg.mask, levels=[0.5], colors="cyan", linewidths=0.8)
axes[2].set_title("particle probability, mask outline")
for ax in axes[1:]:
    ax.set_axis_off()
fig.tight_layout()
fig.savefig(OUT / "train_unet_thesis_mode.png", dpi=100)
print(f"\nwrote {OUT / 'train_unet_thesis_mode.png'} and {OUT / 'train_unet_history.csv'}")
shutil.rmtree(work)  # the data folder and the checkpoints
