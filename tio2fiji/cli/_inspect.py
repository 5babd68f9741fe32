"""``tio2fiji info``: size, type, calibration and data bar of SEM images; ``tio2fiji install-macros``:
the shipped ImageJ macros into a Fiji.app."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..errors import Tio2FijiError
from ._common import _Checked
from ._groups import main


def _format_pixel_size(ps):
    return f"{ps * 1e9:.6g} nm" if ps is not None else "none (pixels)"


def _model_pixel_size(model):
    """``(pixel size in m, name)`` of the model ``info`` compares images with; the bundled models'
    without importing torch (tests/predict/test_scale.py checks every bundled file stores it)."""
    from ..transforms import TRAINED_PIXEL_SIZE_M

    if model is None:
        return TRAINED_PIXEL_SIZE_M, "the bundled models'"
    from ..models import load_model

    return load_model(model).settings.pixel_size_m, f"{model}'s"


def _scale_line(pixel_size_m, model_ps, model_name):
    from ..transforms import SCALE_RANGE, scale_warning

    factor = pixel_size_m / model_ps
    warning = scale_warning(pixel_size_m, model_ps)
    if warning:
        return f"{factor:.2f}x {model_name} {model_ps * 1e9:.6g} nm; warning: {warning}"
    return (f"{factor:.2f}x {model_name} {model_ps * 1e9:.6g} nm, within the supported range "
            f"({SCALE_RANGE[0]}x-{SCALE_RANGE[1]}x)")


@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--data-bar-rows", type=_Checked("data_bar_rows"), default=None,
              help="Height of the microscope's data bar; detected from the image when omitted.")
@click.option("--page", type=_Checked("page"), default=None, help="Page of a multi-page TIFF (0 = first).")
@click.option("--model", default=None,
              help="Compare each image's pixel size with this model file's (default: the bundled models', "
                   "read without loading them).")
def info(images, data_bar_rows, page, model):
    """Print size, type, calibration (its value, vendor tag or entry and reader), data-bar height,
    the recorded magnification and beam energy of SEM IMAGES, and whether their pixel size lies
    within the scales the model supports."""
    from ..io import calibrate_missing, read_sem

    model_ps, model_name = _model_pixel_size(model)

    failed = 0
    for path in images:
        try:
            # no metadata: what analyze would read from the burned-in bar (Tesseract)
            sem = calibrate_missing(read_sem(path, data_bar_rows=data_bar_rows, page=page), allow_pixels=True)
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
        if sem.calibration_where:
            click.echo(f"    calibration: {_format_pixel_size(sem.pixel_size_m)} from {sem.calibration_where}")
        instrument = [f"magnification {sem.magnification:g}x" if sem.magnification else "",
                      f"beam {sem.beam_energy_kv:g} kV" if sem.beam_energy_kv else ""]
        if any(instrument):
            click.echo(f"    instrument: {', '.join(i for i in instrument if i)}")
        for note in sem.notes:
            click.echo(f"    note: {note}")
        if sem.pixel_size_m is not None:
            click.echo(f"    scale: {_scale_line(sem.pixel_size_m, model_ps, model_name)}")
    if failed:
        click.echo(f"{failed} of {len(images)} image(s) could not be read", err=True)
        sys.exit(1)


@main.command("install-macros")
@click.argument("app", type=click.Path(path_type=Path))
@click.option("--overwrite", is_flag=True,
              help="Replace macro files of the same name that differ from tio2fiji's (an older "
                   "tio2fiji's, or edited ones).")
def install_macros(app, overwrite):
    """Copy tio2fiji's ImageJ macros into the Fiji.app (or ImageJ) folder APP, under plugins/Macros.

    After a restart of Fiji (or Help > Refresh Menus) they are under Plugins > Macros: TiO2
    Particle Analysis, TiO2 Segment and BioVoxxel Particle Distribution.
    """
    from ..imagej import install_macros as install

    done = install(app, overwrite=overwrite)
    for path, how in done:
        click.echo(f"{how}: {path}")
    click.echo(f"{sum(how != 'unchanged' for _, how in done)} of {len(done)} macro(s) written to "
               f"{Path(app) / 'plugins' / 'Macros'}; restart Fiji (or Help > Refresh Menus) to see them "
               f"under Plugins > Macros.")
