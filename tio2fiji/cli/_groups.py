"""The command group ``main`` (``tio2fiji``) and its subgroups ``dataset`` and ``train``: the
command modules register on these when a command of theirs is run (:class:`._common._LazyGroup`),
and this module imports none of them."""

from __future__ import annotations

import logging

import click

from .. import __version__
from ._common import _LazyGroup

__all__ = ["main", "dataset_group", "train_group", "COMMANDS", "TRAIN_COMMANDS", "DATASET_COMMANDS"]


#: Every command: its module (registers it when imported) and its short help (the first sentence
#: of its docstring, as click takes it; ``tests/cli/test_cli.py`` keeps the two equal).
COMMANDS = {
    "analyze": ("._analyze", "Segment SEM IMAGES (files or folders), measure every particle, test their spatial "
                             "distribution, and write particles.csv, distribution.csv, summary.csv (per image a "
                             "row of all particles and one of the complete ones), plots/ and report.html."),
    "demo": ("._analyze", "The main job on the bundled example images: 'tio2fiji analyze' with the bundled model."),
    "distribution": ("._measure", "Test whether the particles of MASKS are clustered, random or regular; writes "
                                  "distribution.csv."),
    "evaluate": ("._segment", "Score a model on image/mask pairs; writes metrics.json and per_image.csv."),
    "export": ("._segment", "Export the U-Net for bioimage.io consumers (deepImageJ, ilastik, ...), or a U-Net or "
                            "Mask R-CNN as ONNX (PyTorch's side of the ONNX check runs on --device)."),
    "info": ("._inspect", "Print size, type, calibration (its value, vendor tag or entry and reader), data-bar "
                          "height, the recorded magnification and beam energy of SEM IMAGES, and whether their "
                          "pixel size lies within the scales the model supports."),
    "install-macros": ("._inspect", "Copy tio2fiji's ImageJ macros into the Fiji.app (or ImageJ) folder APP, under "
                                    "plugins/Macros."),
    "measure": ("._measure", "Measure every particle of MASKS as ImageJ's Analyze Particles does; writes "
                             "particles.csv (with complete_score and complete: whether a particle is whole, not "
                             "partly hidden or cut)."),
    "segment": ("._segment", "Segment SEM IMAGES into particle masks, label images and (optionally) ROI sets."),
}
TRAIN_COMMANDS = {
    "border": ("._train", "Train a border U-Net (particle mask + where touching particles meet) on DATA_DIR "
                          "(practical mode)."),
    "maskrcnn": ("._train", "Train a Mask R-CNN (thesis Table 3) on DATA_DIR (written by 'tio2fiji dataset build')."),
    "star": ("._train", "Train a star-convex U-Net (particle mask, object probability, rays) on DATA_DIR "
                        "(practical mode)."),
    "unet": ("._train", "Train a U-Net on DATA_DIR (written by 'tio2fiji dataset build')."),
}
DATASET_COMMANDS = {"build": ("._dataset", "Write 256x256 tiles, the seeded split (split.json) and COCO annotations.")}


@click.group(cls=_LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tio2fiji")
@click.option("-v", "--verbose", is_flag=True, help="Log what the library decides.")
def main(verbose):
    """tio2fiji: SEM images of TiO2 nanoparticles to ImageJ-exact particle statistics."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    # tifffile logs its own parse errors; ours say the same thing with the file name and a remedy
    logging.getLogger("tifffile").setLevel(logging.INFO if verbose else logging.CRITICAL)


@main.group("dataset", cls=_LazyGroup, lazy=DATASET_COMMANDS)
def dataset_group():
    """Training data from image/mask folders."""


@main.group("train", cls=_LazyGroup, lazy=TRAIN_COMMANDS)
def train_group():
    """Train a segmentation network."""

