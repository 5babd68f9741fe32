"""Training the networks: data sets on disk, splits, datasets, one engine, the recipes.

* :mod:`~tio2fiji.training.splits`: seeded train/val/test splits of image ids (``split.json``);
* :mod:`~tio2fiji.training.build`: image/mask folders → tiles, ``tiles.csv``, ``split.json``,
  ``coco.json`` (thesis and practical modes, :func:`build_dataset`);
* :mod:`~tio2fiji.training.coco`: the COCO export of masks and the Mask R-CNN instance dataset;
* :mod:`~tio2fiji.training.datasets`: the U-Net's datasets (random crops, full tiles, tiles on disk);
* :mod:`~tio2fiji.training.engine`: the one training loop of both networks (run settings, resume,
  atomic ``best.pt``/``last.pt``, ``history.csv`` and curves, the stop on a non-finite loss);
* :mod:`~tio2fiji.training.unet`, :mod:`~tio2fiji.training.star`, :mod:`~tio2fiji.training.maskrcnn`:
  the recipes (:func:`train_unet`, :func:`train_star`: the star-convex U-Net, :func:`train_maskrcnn`);
* :mod:`~tio2fiji.training.complete`: the complete-particle classifier (:mod:`tio2fiji.particles._complete`).

The augmentation's geometry and photometry, the tiling and the input scaling are shared with
inference and live in :mod:`tio2fiji.transforms`; model files are read and written by
:mod:`tio2fiji.models.checkpoint`. Inference (:mod:`tio2fiji.predict`) never imports this package.
"""

from .build import BuildResult, build_dataset
from .coco import CocoInstanceDataset, coco_from_masks, targets_from_instances
from .datasets import FullTileDataset, RandomCropDataset, Sample, TileDataset, load_samples, training_datasets
from .engine import fit, plot_history
from .maskrcnn import MASKRCNN_HISTORY_COLUMNS, train_maskrcnn, two_phase_lr
from .splits import SPLIT_NAMES, make_split, read_split, write_split
from .star import STAR_HISTORY_COLUMNS, train_star
from .unet import HISTORY_COLUMNS, fit_unet, make_loss, train_unet

__all__ = [
    "SPLIT_NAMES", "make_split", "write_split", "read_split",
    "BuildResult", "build_dataset",
    "coco_from_masks", "targets_from_instances", "CocoInstanceDataset",
    "Sample", "load_samples", "RandomCropDataset", "FullTileDataset", "TileDataset",
    "training_datasets",
    "fit", "plot_history",
    "HISTORY_COLUMNS", "make_loss", "fit_unet", "train_unet",
    "STAR_HISTORY_COLUMNS", "train_star",
    "MASKRCNN_HISTORY_COLUMNS", "two_phase_lr", "train_maskrcnn",
]
