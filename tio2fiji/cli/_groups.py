"""The command group ``main`` (``tio2fiji``) and its subgroups ``dataset`` and ``train``: the
command modules register on these, and this module imports none of them."""

from __future__ import annotations

import logging

import click

from .. import __version__
from ._common import _Group

__all__ = ["main", "dataset_group", "train_group"]


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tio2fiji")
@click.option("-v", "--verbose", is_flag=True, help="Log what the library decides.")
def main(verbose):
    """tio2fiji: SEM images of TiO2 nanoparticles to ImageJ-exact particle statistics."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    # tifffile logs its own parse errors; ours say the same thing with the file name and a remedy
    logging.getLogger("tifffile").setLevel(logging.INFO if verbose else logging.CRITICAL)


@main.group("dataset")
def dataset_group():
    """Training data from image/mask folders."""


@main.group("train")
def train_group():
    """Train a segmentation network."""

