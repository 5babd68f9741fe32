"""``tio2fiji analyze`` (the main job: segment, measure, test, report) and ``tio2fiji demo`` (it
on the bundled example images)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..distribution import METHODS
from ..errors import Tio2FijiError
from ..imagej import BACKENDS
from ..instances import SEPARATE
from ..run import AnalysisOptions
from ..transforms import SCALES
from ._common import (
    _CONNECTIVITY,
    _Checked,
    _device_option,
    _fail_early_if_none_readable,
    _pixel_size,
    _report_failures,
    _StepProgress,
    example_data_dir,
)
from ._groups import main
from ._inspect import info
from ._measure import SIZE_HELP, _bounds

#: Images whose result line the command prints; a larger run prints a count instead.
_LINES = 50
#: The library's defaults: every option's default is read from here, never stated again.
_DEFAULT = AnalysisOptions()


def _names(names, shown=5) -> str:
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


@main.command("analyze")
@click.argument("images", nargs=-1, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Output folder.")
@click.option("--model", "model_path", default=_DEFAULT.model, show_default=True,
              help="A bundled model ('default' = unet-border, the distance U-Net; unet-watershed; maskrcnn), "
              "a compact model file, or a training checkpoint (best.pt).")
@click.option("--backend", type=click.Choice(BACKENDS), default=_DEFAULT.backend, show_default=True,
              help="Who measures the particles.")
@click.option("--separate", type=click.Choice(SEPARATE), default=_DEFAULT.separate,
              show_default=True, help="Touching particles: the model's own way (auto: the default unet-border's seeds "
              "from its distance and band outputs, unet-watershed's distance watershed; a Mask R-CNN finds its "
              "own), watershed, or none (connected components, as the thesis).")
@click.option("--connectivity", type=_CONNECTIVITY, default=str(_DEFAULT.connectivity), show_default=True,
              help="Particle connectivity of the components and the measurement (4: as the BAM masks).")
@click.option("--method", "methods", multiple=True, default=_DEFAULT.methods, show_default=True,
              type=click.Choice(METHODS),
              help="Spatial-distribution test; repeat for several.")
@click.option("--threshold", type=_Checked("threshold"), default=_DEFAULT.threshold,
              help="Probability threshold (default: the one stored with the model).")
@click.option("--seed", type=_Checked("seed"), default=_DEFAULT.seed, show_default=True,
              help="Seed of the bootstrap intervals and the simulations.")
@click.option("--threads", type=_Checked("threads"), default=_DEFAULT.threads,
              help="torch CPU threads (per Dask worker with --workers/--scheduler; default: torch's choice, "
                   "on Dask cores // workers of the host).")
@click.option("--complete-only", is_flag=True, default=_DEFAULT.complete_only,
              help="Summary, sizes, plots and spatial tests of the complete particles only (not partly "
                   "hidden or cut); particles.csv keeps every particle with its complete column.")
@click.option("--data-bar-rows", type=_Checked("data_bar_rows"), default=_DEFAULT.data_bar_rows,
              help="Height of the microscope's data bar (0: none); detected from each image when omitted.")
@click.option("--pixel-size", default=_DEFAULT.pixel_size_m,
              help="Pixel size (e.g. 7.3nm) of every image, overriding its metadata and burned-in bar (as "
                   "in measure); the outputs name the value it replaced. Without it, an image without "
                   "metadata gets its burned-in field width or scale bar.")
@click.option("--allow-pixels", is_flag=True, default=_DEFAULT.allow_pixels,
              help="Measure images that nothing calibrates in pixels, instead of refusing them.")
@click.option("--glob", "pattern", default=None,
              help="Files of a folder given as IMAGES (e.g. '*.tif', '**/*.tif'); default: every image "
                   "format tio2fiji reads, in all subfolders.")
@click.option("--from-list", "from_list", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="A text file of image paths, one per line (for more paths than a command line takes).")
@click.option("--workers", type=click.IntRange(min=1), default=_DEFAULT.workers,
              help="Analyse on a local Dask cluster of N worker processes (cores // N torch threads each); "
                   "default: one image after another in this process.")
@click.option("--scheduler", default=_DEFAULT.scheduler, metavar="ADDRESS",
              help="Analyse on the workers of a running Dask scheduler (tcp://host:8786 or a scheduler "
                   "file); they must see the images and --out at the same paths.")
@click.option("--force", is_flag=True, default=_DEFAULT.force,
              help="Analyse every image again; by default a rerun into the same --out keeps the results "
                   "made from the same image bytes, model and options.")
@click.option("--tta", is_flag=True, default=_DEFAULT.tta,
              help="Test-time augmentation: maps averaged over 8 flips/rotations (8x time).")
@click.option("--scale", type=click.Choice(SCALES), default=_DEFAULT.scale, show_default=True,
              help="model: segment each calibrated image at the model's pixel size and bring the particles "
                   "back to its own grid (the same particles at any magnification); none: at the image's own.")
@click.option("--size", default=_DEFAULT.size, metavar="MIN-MAX", help=SIZE_HELP)
@_device_option
def analyze(images, out_dir, model_path, backend, separate, connectivity, methods, threshold, seed, threads,
            complete_only, data_bar_rows, pixel_size, allow_pixels, pattern, from_list, workers, scheduler,
            force, tta, scale, device, size=None):
    """Segment SEM IMAGES (files or folders), measure every particle, test their spatial
    distribution, and write particles.csv, distribution.csv, summary.csv (per image a row of all
    particles and one of the complete ones), plots/ and report.html. Each image's results are
    kept in parts/ as it finishes; a rerun into the same --out skips the finished images."""
    from ..run import analyze_images, gather_images

    images = gather_images(images, glob=pattern, from_list=from_list, out_dir=out_dir)
    _fail_early_if_none_readable(images)
    if threads and workers is None and scheduler is None:
        import torch

        torch.set_num_threads(threads)
    bar = _StepProgress("analyze", unit="image", leave=False)
    try:
        res = analyze_images(images, out_dir, model=model_path, backend=backend, separate=separate,
                             connectivity=int(connectivity), methods=methods, threshold=threshold,
                             seed=seed, complete_only=complete_only, data_bar_rows=data_bar_rows,
                             pixel_size_m=_pixel_size(pixel_size), allow_pixels=allow_pixels,
                             progress=bar, device=device, workers=workers, scheduler=scheduler,
                             threads=threads, force=force, tta=tta, scale=scale, size=size)
    finally:
        bar.close()

    def ecd(row):
        return (f"ECD median {row['ECD_median']:.4g} {row['unit']} [{row['ECD_median_ci_low']:.4g}, "
                f"{row['ECD_median_ci_high']:.4g}]")

    by_image = {}
    if len(res.images) <= _LINES:
        for _, r in res.summary.iterrows():
            by_image.setdefault(r["image"], {})[r["particles_kind"]] = r
    reused = set(res.skipped)
    for meta in res.images[:_LINES] if by_image else ():
        rows = by_image[meta["image"]]
        # a kept result's seconds are those of the run that made it: not printed as this run's
        when = ("kept from an earlier run (same image, model and options), not analysed now"
                if meta["image"] in reused else f"{meta['seconds']:.1f} s")
        within = f" within --size {meta['size']['size']} ({_bounds(meta['size'])})" if meta.get("size") else ""
        done = f"(calibration: {meta['pixel_size_source']}){within}, {when}"
        c = rows["complete"]
        if complete_only:
            click.echo(f"{meta['image']}: {c['particles']} complete particles of {meta['particles']}, "
                       f"{c['area_coverage_pct']:.2f} % area, {ecd(c)} {done}")
        else:
            a = rows["all"]
            click.echo(f"{meta['image']}: {a['particles']} particles, {a['area_coverage_pct']:.2f} % area, "
                       f"{ecd(a)}; {c['particles']} complete, {ecd(c)} {done}")
    if len(res.images) > _LINES:
        click.echo(f"{len(res.images)} images analysed: one row each in summary.csv")
    if res.skipped:
        click.echo(f"skipped {len(res.skipped)} image(s) whose results in {out_dir} were made from the same "
                   f"image, model and options (--force analyses them again)")
    if res.redone:
        click.echo(f"analysed again: {_names(res.redone)} (its earlier results were made from another image, "
                   f"model or options{', or --force' if force else ''})")
    if res.kept_other:
        click.echo(f"kept {len(res.kept_other)} image(s) of an earlier run in this folder that are not in this "
                   f"run: {_names(res.kept_other)} (their parts, masks and labels stay; not in this run's tables)")
    if res.removed:
        click.echo(f"replaced {len(res.removed)} file(s) of the earlier run in {out_dir} (its tables, report and "
                   f"the files of the images analysed again; run_manifest.json lists them)")
    if res.images:
        click.echo(f"wrote {res.report} and particles.csv, distribution.csv, summary.csv, analysis.json, "
                   f"<image>_mask.tif, <image>_labels.tif, plots/ in {out_dir} ({res.seconds:.0f} s)")
    elif res.report is not None:
        click.echo(f"wrote {res.report} (no image could be analysed)")
    _report_failures(res.failures, len(images))
    if res.failures:
        sys.exit(1)


@main.command()
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=None,
              help="Folder with SEM/*.tif; defaults to the bundled examples.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), default=Path("demo-out"),
              show_default=True)
@click.pass_context
def demo(ctx, data_dir, out_dir):
    """The main job on the bundled example images: 'tio2fiji analyze' with the bundled model.

    Reads the SEM images (calibration, data bar), segments them with the bundled U-Net, measures
    every particle as ImageJ does, tests their spatial distribution, and writes the tables, plots
    and report.html to OUT.
    """
    if data_dir is None and not (example_data_dir() / "SEM").is_dir():
        # the example images (CC BY-NC-ND) are in the source repository, not in the wheel
        raise Tio2FijiError("the example images are not installed with tio2fiji (they are in its source "
                            "repository, examples/data); pass --data DIR, a folder with SEM/*.tif.")
    data_dir = data_dir or example_data_dir()
    images = sorted((data_dir / "SEM").glob("*.tif"))
    if not images:
        raise Tio2FijiError(f"--data {data_dir}: no SEM/*.tif images found; pass --data DIR, a folder with "
                            f"SEM/*.tif.")
    click.echo(f"== 1. SEM images in {data_dir / 'SEM'}")
    ctx.invoke(info, images=images, data_bar_rows=None, page=None)
    click.echo("\n== 2. Segment with the bundled model, measure, test the distribution, report")
    ctx.invoke(analyze, images=images, out_dir=out_dir)  # every other option at its default
    click.echo(f"\nOpen {out_dir / 'report.html'} in a browser.")
