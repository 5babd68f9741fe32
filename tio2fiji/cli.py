"""The ``tio2fiji`` command line. It parses arguments, calls library functions and prints."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from . import __version__
from .errors import Tio2FijiError


class _Group(click.Group):
    """Turn tio2fiji's own errors into one clear line and exit code 1, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except Tio2FijiError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)


def example_data_dir() -> Path:
    """The bundled example data (``examples/data`` in a source checkout)."""
    return Path(__file__).resolve().parent.parent / "examples" / "data"


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tio2fiji")
@click.option("-v", "--verbose", is_flag=True, help="Log what the library decides.")
def main(verbose):
    """tio2fiji: SEM images of TiO2 nanoparticles to ImageJ-exact particle statistics."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    # tifffile logs its own parse errors; ours say the same thing with the file name and a remedy
    logging.getLogger("tifffile").setLevel(logging.INFO if verbose else logging.CRITICAL)


def _format_pixel_size(ps):
    return f"{ps * 1e9:.6g} nm" if ps is not None else "none (pixels)"


@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--data-bar-rows", type=int, default=None,
              help="Height of the microscope's data bar; detected from the image when omitted.")
@click.option("--page", type=int, default=None, help="Page of a multi-page TIFF.")
def info(images, data_bar_rows, page):
    """Print size, type, calibration and data-bar height of SEM IMAGES."""
    from .io import read_sem

    failed = 0
    for path in images:
        try:
            sem = read_sem(path, data_bar_rows=data_bar_rows, page=page)
        except Tio2FijiError as exc:
            click.echo(f"error: {exc}", err=True)
            failed += 1
            continue
        h, w = sem.data.shape
        click.echo(
            f"{path}: {w}x{h} {sem.original_dtype}, pixel size {_format_pixel_size(sem.pixel_size_m)} "
            f"[{sem.pixel_size_source}], data bar {sem.data_bar_rows} rows [{sem.data_bar_source}], "
            f"analysed area {w}x{h - sem.data_bar_rows}"
        )
        for note in sem.notes:
            click.echo(f"    note: {note}")
    if failed:
        click.echo(f"{failed} of {len(images)} image(s) could not be read", err=True)
        sys.exit(1)


@main.command()
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=None,
              help="Folder with SEM/ (and masks/); defaults to the bundled examples.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("demo-out"),
              show_default=True)
@click.pass_context
def demo(ctx, data_dir, out_dir):
    """Run the parts of the pipeline that exist on the bundled example images."""
    data_dir = data_dir or example_data_dir()
    images = sorted((data_dir / "SEM").glob("*.tif"))
    if not images:
        raise Tio2FijiError(f"{data_dir}/SEM: no example images found; pass --data DIR.")
    click.echo(f"Example images in {data_dir}/SEM:")
    ctx.invoke(info, images=images, data_bar_rows=None, page=None)
    click.echo("Segmentation and measurement are not implemented yet; this demo only reads the images.")


if __name__ == "__main__":  # pragma: no cover
    main()
