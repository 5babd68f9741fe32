"""``tio2fiji dataset build``: tiles, the seeded split and COCO annotations from image/mask folders."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import _Checked, _StepProgress
from ._groups import dataset_group


@dataset_group.command("build")
@click.option("--images", "images_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Folder of SEM images.")
@click.option("--masks", "masks_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Folder of masks <id>_m.tif (0/255).")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Folder for tiles, tiles.csv, split.json, coco.json.")
@click.option("--mode", type=click.Choice(["thesis", "practical"]), default="thesis", show_default=True,
              help="thesis: 22 source tiles -> 396 augmented tiles; practical: split whole images, "
                   "random crops while training.")
@click.option("--seed", type=_Checked("seed"), default=0, show_default=True)
@click.option("--val-grouping", type=click.Choice(["tile", "source"]), default="tile", show_default=True,
              help="Thesis mode: random validation tiles (thesis) or whole held-out sources.")
@click.option("--format", "fmt", type=click.Choice(["png", "tif"]), default="png", show_default=True)
@click.option("--data-bar-rows", type=_Checked("data_bar_rows"), default=None,
              help="Data-bar height; detected when omitted.")
@click.option("--skip-bad", is_flag=True, help="Leave unusable pairs out (reported) instead of stopping.")
def dataset_build_cmd(images_dir, masks_dir, out_dir, mode, seed, val_grouping, fmt, data_bar_rows,
                      skip_bad):
    """Write 256x256 tiles, the seeded split (split.json) and COCO annotations."""
    from ..io import RunFolder
    from ..training import build_dataset

    progress = bar = _StepProgress("tiles", unit="tile", leave=False, postfix=False)
    try:  # the tiles are not known in advance: the manifest lists every file the build wrote
        with RunFolder(out_dir, "dataset build", planned=["coco.json", "tiles.csv", "split.json"],
                       scan=True):
            res = build_dataset(images_dir, masks_dir, out_dir, mode=mode, seed=seed,
                                val_grouping=val_grouping, fmt=fmt, data_bar_rows=data_bar_rows,
                                on_bad="skip" if skip_bad else "raise", progress=progress)
    finally:
        bar.close()
    counts = res.counts()
    click.echo(f"{out_dir}: {mode} mode, seed {seed}: {counts['train']} train / {counts['val']} val / "
               f"{counts['test']} test tiles, {res.n_particles} particles in coco.json")
    click.echo("images: " + ", ".join(f"{k} {len(v)}" for k, v in res.split.items()))
    for p in res.problems:
        if p["problem"] != "tile: empty":
            click.echo(f"warning: {p['name']}: {p['problem']}: {p['detail']}", err=True)
    empty = sum(p["problem"] == "tile: empty" for p in res.problems)
    if empty:
        click.echo(f"note: {empty} tile(s) without particles (kept as negative examples)")
