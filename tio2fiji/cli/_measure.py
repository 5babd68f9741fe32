"""``tio2fiji measure`` and ``tio2fiji distribution``: particle tables and spatial tests of masks."""

from __future__ import annotations

import sys

import click

from ..distribution import METHODS
from ..instances import CONNECTIVITY
from ._common import _CONNECTIVITY, _Checked, _mask_options, _pixel_size, _Progress, _report_failures
from ._groups import main

#: --size of measure and analyze: ImageJ's Analyze Particles size field.
SIZE_HELP = ("ImageJ's Analyze Particles size filter: MIN-MAX area (e.g. 10-Infinity), in nm² for calibrated "
             "images and pixels otherwise, or with a unit: '10-Infinity pixel', '0.01-Infinity um^2'. "
             "Bounds included, holes counted as ImageJ counts them; recorded in the outputs.")


def _bounds(size) -> str:
    """A size filter's pixel bounds, as the outputs record them (SizeFilter.describe)."""
    hi = "Infinity" if size["size_max_px"] is None else f"{size['size_max_px']:.6g}"
    return f"{size['size_min_px']:.6g}-{hi} px"


@main.command()
@_mask_options
@click.option("--connectivity", type=_CONNECTIVITY, default=str(CONNECTIVITY), show_default=True,
              help="4 keeps particles apart that touch only at corners (the BAM masks and tio2fiji's "
                   "own); 8 is ImageJ's default.")
@click.option("--include-holes", is_flag=True, help="Count holes as particle area (ImageJ 'include').")
@click.option("--exclude-edges", is_flag=True, help="Drop particles touching the image border.")
@click.option("--complete-only", is_flag=True,
              help="particles.csv lists only the complete particles (not partly hidden or cut).")
@click.option("--size", default=None, metavar="MIN-MAX",
              help=SIZE_HELP)
def measure(masks, out_dir, backend, images_dir, pixel_size, threshold, connectivity, include_holes,
            exclude_edges, complete_only, size):
    """Measure every particle of MASKS as ImageJ's Analyze Particles does; writes particles.csv
    (with complete_score and complete: whether a particle is whole, not partly hidden or cut)."""
    from ..run import measure_files

    ps = _pixel_size(pixel_size)
    bar = _Progress(len(masks), "measure")
    try:
        res = measure_files(list(masks), out_dir=out_dir, backend=backend, images_dir=images_dir,
                            pixel_size_m=ps, threshold=threshold, connectivity=int(connectivity),
                            include_holes=include_holes, exclude_edges=exclude_edges,
                            complete_only=complete_only, progress=bar, size=size)
    finally:
        bar.close()
    for it, t in zip(res.inputs, res.tables):
        unit = "nm" if it.pixel_size_m else "pixel"
        within = f" of --size {it.size['size']} ({_bounds(it.size)})" if it.size else ""
        click.echo(f"{it.name}: {len(t)} particles{within}, {int(t['complete'].sum())} complete "
                   f"({unit}; calibration: {it.calibration_source})")
    if res.tables:
        n_complete = sum(int(t["complete"].sum()) for t in res.tables)
        click.echo(f"wrote {res.files['particles.csv']} ({sum(len(t) for t in res.tables)} particles, "
                   f"{n_complete} complete, from {len(res.tables)} file(s))")
    _report_failures(res.failures, len(masks))
    if res.failures:
        sys.exit(1)


@main.command()
@_mask_options
@click.option("--method", "methods", multiple=True, default=("clark-evans",), show_default=True,
              type=click.Choice(METHODS),
              help="Repeat for several. biovoxxel reproduces BioVoxxel's Particle Distribution (2D) "
                   "(the thesis's Table 9); it is biased, see the docs.")
@click.option("--points", type=click.Choice(["auto", "uep", "centroid"]), default="auto", show_default=True,
              help="Ultimate eroded points (as the thesis) or particle centroids.")
@click.option("--alpha", type=_Checked("alpha"), default=0.05, show_default=True, help="Significance level.")
@click.option("--n-sim", type=_Checked("n_sim"), default=199, show_default=True,
              help="Monte Carlo simulations (a two-sided test at alpha needs n_sim >= 2/alpha).")
@click.option("--null", type=click.Choice(["csr", "hardcore"]), default="csr", show_default=True,
              help="Monte Carlo null: complete spatial randomness or non-overlapping discs.")
@click.option("--seed", type=_Checked("seed"), default=0, show_default=True)
@click.option("--connectivity", type=_CONNECTIVITY, default=str(CONNECTIVITY), show_default=True,
              help="Which pixels of a binary mask make one particle for --points centroid, as in "
                   "measure: 4 keeps particles apart that touch only at corners; 8 is ImageJ's "
                   "default. Recorded in distribution.csv and distribution.json.")
def distribution(masks, out_dir, backend, images_dir, pixel_size, threshold, methods, points, alpha,
                 n_sim, null, seed, connectivity):
    """Test whether the particles of MASKS are clustered, random or regular; writes distribution.csv."""
    from ..run import concat_tables, distribution_files

    ps = _pixel_size(pixel_size)
    bar = _Progress(len(masks), "distribution")
    try:
        res = distribution_files(list(masks), out_dir=out_dir, methods=methods, backend=backend,
                                 images_dir=images_dir, pixel_size_m=ps, threshold=threshold,
                                 progress=bar, points=points, alpha=alpha, n_sim=n_sim, null=null,
                                 seed=seed, connectivity=int(connectivity))
    finally:
        bar.close()
    if res.tables:
        for _, row in concat_tables(res.tables).iterrows():
            click.echo(f"{row['image']}: {row['method']}: n={row['n']}, statistic={row['statistic']:.4g}, "
                       f"p={row['p_value']:.3g} -> {row['classification']}")
        click.echo(f"wrote {res.files['distribution.csv']}")
    _report_failures(res.failures, len(masks))
    if res.failures:
        sys.exit(1)
