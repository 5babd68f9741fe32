"""
U-Net against Mask R-CNN on one image
=====================================

The thesis compared a U-Net (semantic segmentation; touching particles are split afterwards by a
watershed) with Mask R-CNN (instance segmentation: every particle its own detection and mask).
This example segments one bundled image with both and scores each against the manual mask:
particle count, pixel IoU, and instance matching (a predicted particle matches a manual one when
their IoU exceeds 0.5).

No trained Mask R-CNN ships with tio2fiji yet, so the example trains one from scratch on the CPU,
on one of the bundled images, for a few minutes (``TIO2FIJI_GALLERY_FAST=1``: one step on a crop,
just to run the code). That is a toy: the thesis trained for 80 epochs from ImageNet weights on a
GPU, and a few minutes from random weights do not teach the network to find particles, so expect
it to find few or none. ``TIO2FIJI_GALLERY_MASKRCNN=path/to/best.pt`` uses a Mask R-CNN trained
elsewhere (``tio2fiji train maskrcnn``) instead. The bundled U-Net is the real one, but the
bundled images were among its training images.
"""

import os
import shutil
import tempfile
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import tifffile
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

if FAST:  # the smallest run that goes through every step: 256x256 crops, one training step
    crop = (slice(224, 480), slice(384, 640))
    training = dict(epochs_heads=1, epochs_all=0, crops_per_epoch=1, batch_size=1)
else:  # about 6 minutes on one CPU core: 4 epochs of 8 random 256x256 tiles
    crop = None
    training = dict(epochs_heads=1, epochs_all=3, crops_per_epoch=8, batch_size=2)
trained_elsewhere = os.environ.get("TIO2FIJI_GALLERY_MASKRCNN")

work = Path(tempfile.mkdtemp(prefix="tio2fiji-gallery-"))
images_dir, masks_dir = DATA / "SEM", DATA / "masks"
if crop is not None:
    # crops of the analysed areas, written as image/mask pairs beside each other
    images_dir, masks_dir = work / "SEM", work / "masks"
    images_dir.mkdir()
    masks_dir.mkdir()
    for path in sorted((DATA / "SEM").glob("*.tif")):
        sem = tio2fiji.read_sem(path)
        mask = tio2fiji.mask_for_image(tio2fiji.read_mask(DATA / "masks" / f"{path.stem}_m.tif"), sem)
        tifffile.imwrite(images_dir / path.name, sem.analysed[crop])
        tio2fiji.write_mask(masks_dir / f"{path.stem}_m.tif", mask[crop])

# A data folder of 256x256 tiles and a COCO file of their particles. Practical mode splits whole
# images: with three images, one each for training, validation and test.
built = tio2fiji.build_dataset(images_dir, masks_dir, work / "data", mode="practical",
                               fractions=(1 / 3, 1 / 3, 1 / 3), data_bar_rows=0 if crop else None)
print(f"split: {built.split['train']} train, {built.split['val']} validation, "
      f"{built.split['test']} test; tiles {built.counts()}")

if trained_elsewhere:
    checkpoint, about = Path(trained_elsewhere), f"from {trained_elsewhere}"
else:
    # Mask R-CNN configuration 1 of the thesis's Table 3 (ResNet-50 FPN), randomly initialised (no
    # ImageNet weights are downloaded), in the thesis's two phases: heads only, then all layers.
    print(f"training Mask R-CNN on the CPU ({training}); this is a toy, not the thesis's model")
    run = tio2fiji.train_maskrcnn(work / "data", work / "maskrcnn", config=1, threads=1, seed=0,
                                  val_loss=False, **training)
    print(f"  {run['seconds']:.0f} s, best validation IoU {run['best_val_iou']:.3f} "
          f"(epoch {run['best_epoch']})")
    checkpoint = work / "maskrcnn" / "best.pt"
    about = f"{'fast mode: ' if FAST else ''}{training}, CPU, not the thesis's model"

models = {"U-Net (bundled)": tio2fiji.load_model("default"),
          "Mask R-CNN" if trained_elsewhere else "Mask R-CNN (toy)": tio2fiji.load_model(checkpoint)}

# The test image, which the Mask R-CNN never saw (the bundled U-Net did, in its own training)
name = built.split["test"][0]
sem = tio2fiji.read_sem(DATA / "SEM" / f"{name}.tif")
manual = tio2fiji.mask_for_image(tio2fiji.read_mask(DATA / "masks" / f"{name}_m.tif"), sem)
image = sem.analysed
if crop is not None:
    image, manual = image[crop], manual[crop]

segs = {label: tio2fiji.segment(model, image) for label, model in models.items()}

# Scores against the manual mask; its particles are its 4-connected components (the annotators
# kept touching particles apart by one-pixel lines, which 8-connectivity would jump).
scores = tio2fiji.evaluate_images([s.labels for s in segs.values()], [manual] * len(segs),
                                  probs=[s.probability for s in segs.values()], names=list(segs),
                                  connectivity=4)
per = pd.DataFrame(scores["per_image"]).rename(columns={"name": "model"})
matched = [int(match_detections(match_instances(s.labels, manual, 4)).sum()) for s in segs.values()]
per.insert(per.columns.get_loc("count_error"), "matched", matched)  # predictions with IoU > 0.5
per["precision"] = per["matched"] / per["n_pred"].clip(lower=1)
per["recall"] = per["matched"] / per["n_gt"].clip(lower=1)
per.insert(1, "image", name)
per["training"] = ["bundled model (MODEL_CARD.md)", about]

pd.set_option("display.width", 200)
print(f"\n{name} ({image.shape[1]}x{image.shape[0]} pixels), against the manual mask:")
print(per.drop(columns="training").to_string(index=False, float_format=lambda v: f"{v:.3f}"))
if not trained_elsewhere:
    print("The Mask R-CNN here is a few minutes of CPU training, not the thesis's model.")
    if per["n_pred"].iloc[1] == 0:
        print("It finds no particle above its detection score threshold (0.5): a few minutes from "
              "random weights are far too little. Train it longer (tio2fiji train maskrcnn) and "
              "set TIO2FIJI_GALLERY_MASKRCNN to its best.pt.")
per.to_csv(OUT / "unet_vs_maskrcnn.csv", index=False)

# Figure: outlines of the manual particles and of each model's, side by side
gray = image / max(float(image.max()), 1.0)
panels = {"manual mask": tio2fiji.connected_components(manual, 4), **{k: s.labels for k, s in segs.items()}}
fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.4))
for ax, (title, labels), colour in zip(axes, panels.items(), [(0, 1, 0), (1, 0.8, 0), (0.2, 0.6, 1)]):
    rgb = np.dstack([gray] * 3)
    rgb[find_boundaries(labels, mode="thick" if crop is None else "inner")] = colour
    ax.imshow(rgb)
    ax.set_title(f"{title}: {int(labels.max())} particles")
    ax.set_axis_off()
fig.suptitle(f"{name}; Mask R-CNN: {about}", fontsize=10)
fig.tight_layout()
fig.savefig(OUT / "unet_vs_maskrcnn.png", dpi=120)
print(f"\nwrote {OUT / 'unet_vs_maskrcnn.png'} and {OUT / 'unet_vs_maskrcnn.csv'}")
shutil.rmtree(work)  # the data folder and the Mask R-CNN checkpoints (about 0.5 GB)
