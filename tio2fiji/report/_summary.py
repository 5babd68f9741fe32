"""Per-image summary statistics: the thesis's Table 8 plus particle sizes with bootstrap intervals.

:func:`summary_table` turns the particle table (``particles.csv``) and a little metadata per image
into ``summary.csv``: particle count, % area coverage, mean circularity, solidity and Feret angle
(thesis Table 8) and the equivalent circle diameter's mean, median, D10/D50/D90, each with a
seeded percentile-bootstrap confidence interval (:func:`bootstrap_ci`). When the particle table has
a ``complete`` column (:mod:`tio2fiji.particles._complete`), each image gets a row of all its particles and a
row of its complete particles only, told apart by ``particles_kind`` (``all`` / ``complete``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..errors import InputError

__all__ = ["SIZE_STATS", "SUMMARY_COLUMNS", "PARTICLES_KINDS", "bootstrap_ci", "summary_table", "pooled_statistics"]


#: Size statistics of the summary (number-weighted ECD); name -> statistic for :func:`bootstrap_ci`.
SIZE_STATS = {"mean": "mean", "median": "median", "D10": 0.10, "D50": 0.50, "D90": 0.90}


#: Values of the ``particles_kind`` column: which particles of the image a row summarises.
PARTICLES_KINDS = ("all", "complete")

#: Columns of :func:`summary_table`, in order.
SUMMARY_COLUMNS = (
    ["image", "particles_kind", "particles", "area_coverage_pct", "circularity_mean", "solidity_mean",
     "feret_angle_mean", "feret_angle_axial_mean", "unit", "pixel_size_nm"]
    + [f"ECD_{k}{s}" for k in SIZE_STATS for s in ("", "_ci_low", "_ci_high")]
    + ["ci_level", "n_boot", "seed", "warnings"]
)


def _stat_function(stat):
    """A function ``f(array, axis)`` for a statistic given by name, quantile or callable."""
    if callable(stat):
        return stat
    if stat == "mean":
        return np.mean
    if stat == "median":
        return np.median
    if isinstance(stat, (int, float)) and not isinstance(stat, bool) and 0.0 <= stat <= 1.0:
        q = float(stat)
        return lambda a, axis: np.quantile(a, q, axis=axis)
    raise InputError(f"stat must be 'mean', 'median', a quantile in [0, 1] or a callable, not {stat!r}.")


def bootstrap_ci(values, stat="median", n=1000, seed=0, level=0.95, chunk=200):
    """A statistic of a sample and its percentile-bootstrap confidence interval.

    Parameters
    ----------
    values : 1-D array_like
        The sample; NaNs are dropped.
    stat : {"mean", "median"}, float or callable
        The statistic: a name, a quantile in ``[0, 1]`` (0.1 for D10), or ``f(array, axis)``.
    n : int
        Bootstrap resamples.
    seed : int
        Seed of the resampling, so reports are reproducible.
    level : float
        Confidence level in (0, 1).
    chunk : int
        Resamples drawn at a time (bounds memory for large samples).

    Returns
    -------
    (estimate, low, high) : tuple of float
        The statistic of ``values`` and the ``(1 - level)/2`` and ``(1 + level)/2`` quantiles of
        its bootstrap distribution. All NaN for an empty sample; the interval is NaN for a sample
        of one value (a resample of one value says nothing about the spread).
    """
    f = _stat_function(stat)
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[~np.isnan(x)]
    if not 0.0 < level < 1.0:
        raise InputError(f"level must be in (0, 1), got {level}.")
    if n < 1:
        raise InputError(f"n (bootstrap resamples) must be positive, got {n}.")
    if x.size == 0:
        return math.nan, math.nan, math.nan
    estimate = float(f(x, axis=None))
    if x.size == 1:
        return estimate, math.nan, math.nan
    rng = np.random.default_rng(seed)
    boot = np.empty(int(n))
    for lo in range(0, int(n), chunk):
        hi = min(lo + chunk, int(n))
        idx = rng.integers(0, x.size, size=(hi - lo, x.size))
        boot[lo:hi] = f(x[idx], axis=1)
    low, high = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return estimate, float(low), float(high)


def _axial_mean(angles_deg) -> float:
    """Mean direction of axial data (angles in [0, 180), where 0 and 180 are the same axis)."""
    a = np.deg2rad(2.0 * np.asarray(angles_deg, dtype=np.float64))
    if a.size == 0:
        return math.nan
    s, c = np.sin(a).mean(), np.cos(a).mean()
    if math.hypot(s, c) < 1e-12:  # uniform around the circle: no mean direction
        return math.nan
    return float(np.rad2deg(np.arctan2(s, c)) / 2.0 % 180.0)


def _meta_frame(images_meta) -> pd.DataFrame:
    meta = pd.DataFrame(list(images_meta) if not isinstance(images_meta, pd.DataFrame) else images_meta)
    if "image" not in meta:
        raise InputError("images_meta needs an 'image' entry per image (the particle table's image name).")
    return meta


def summary_table(particles, images_meta, n_boot=1000, seed=0, level=0.95,
                  complete_only=False) -> pd.DataFrame:
    """Per-image summary: the thesis's Table 8 plus particle sizes with bootstrap intervals.

    Parameters
    ----------
    particles : pandas.DataFrame
        The particle table (``particles.csv``) of all images; rows are matched to images by its
        ``image`` column.
    images_meta : sequence of dict or DataFrame
        One entry per image, in the order of the output rows, with ``image`` (name as in the
        particle table), ``width`` and ``height`` (the analysed area in pixels) and optionally
        ``foreground_px`` (particle pixels of the mask), ``analysed_px`` (the analysed area less the
        annotations left out; coverage divides by it), ``pixel_size_m``, ``unit`` and
        ``warnings`` (list of str, e.g. :func:`tio2fiji.checks.plausibility_warnings`). Images
        without particles get a row with count 0.
    n_boot, seed, level
        Bootstrap settings of :func:`bootstrap_ci` (the same seed for every image and statistic).
    complete_only : bool
        Summarise only the complete particles (needs the particle table's ``complete`` column).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`SUMMARY_COLUMNS`, rows in the order of ``images_meta``:

        * ``particles_kind``: ``all`` (every particle of the image) or ``complete`` (only those
          whose ``complete`` is true: not partly hidden by another particle or cut by the image
          border, :mod:`tio2fiji.particles._complete`). Without a ``complete`` column each image has one
          ``all`` row; with it, an ``all`` row followed by a ``complete`` row; with
          ``complete_only``, only the ``complete`` row. All other columns summarise the row's
          particles.
        * ``particles``: particle count; ``area_coverage_pct``: 100 × particle pixels / analysed
          pixels (from ``foreground_px`` when given, e.g. the segmentation mask's pixel count,
          else from the summed ``Area``, which includes filled holes when holes were included);
          a ``complete`` row always uses the summed ``Area`` of its complete particles.
        * ``circularity_mean``, ``solidity_mean``, ``feret_angle_mean``: arithmetic means as in
          Table 8; ``feret_angle_axial_mean``: the mean axis of the Feret angles (the arithmetic
          mean of axial data depends on where 0°/180° is cut: particles at 5° and 175° are almost
          parallel, their arithmetic mean says 90°).
        * ``ECD_mean``, ``ECD_median``, ``ECD_D10``, ``ECD_D50``, ``ECD_D90``: the equivalent
          circle diameter's mean and number-weighted quantiles (D50 is the median, listed under
          both names), each with ``_ci_low``/``_ci_high`` percentile-bootstrap bounds, in ``unit``
          (nm when calibrated, else pixel).
        * ``warnings``: the image's ``warnings``, joined by ``"; "`` ("" when none): a result to
          check before trusting it (e.g. an inverted mask).
    """
    meta = _meta_frame(images_meta)
    pts = particles if particles is not None else pd.DataFrame(columns=["image"])
    has_complete = "complete" in pts.columns
    if complete_only and not has_complete:
        raise InputError("complete_only needs the particle table's 'complete' column "
                         "(tio2fiji measure and analyze write it).")
    kinds = ("complete",) if complete_only else PARTICLES_KINDS if has_complete else ("all",)
    groups = {name: g for name, g in pts.groupby("image", sort=False)} if len(pts) else {}
    rows = []
    for _, m in meta.iterrows():
        g_all = groups.get(m["image"], pts.iloc[0:0])
        for kind in kinds:
            g = g_all[g_all["complete"].astype(bool)] if kind == "complete" else g_all
            rows.append(_summary_row(g, m, kind, n_boot, seed, level))
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _summary_row(g, m, kind, n_boot, seed, level) -> dict:
    """One row of :func:`summary_table`: the particles ``g`` of the image described by ``m``."""
    ps = m.get("pixel_size_m")
    ps = None if ps is None or (isinstance(ps, float) and math.isnan(ps)) else float(ps)
    unit = m.get("unit") or ("nm" if ps is not None else "pixel")
    width, height = float(m["width"]), float(m["height"])
    specimen = m.get("analysed_px")  # the analysed area less any annotations left out
    specimen = width * height if specimen is None or (isinstance(specimen, float) and math.isnan(specimen)) \
        else float(specimen)
    fg = m.get("foreground_px")
    if kind == "all" and fg is not None and not (isinstance(fg, float) and math.isnan(fg)):
        coverage = 100.0 * float(fg) / specimen
    else:
        pw = ps * 1e9 if ps is not None else 1.0
        coverage = 100.0 * float(g["Area"].sum()) / (specimen * pw * pw) if len(g) else 0.0
    row = {"image": m["image"], "particles_kind": kind, "particles": int(len(g)),
           "area_coverage_pct": coverage,
           "circularity_mean": float(g["Circ."].mean()) if len(g) else math.nan,
           "solidity_mean": float(g["Solidity"].mean()) if len(g) else math.nan,
           "feret_angle_mean": float(g["FeretAngle"].mean()) if len(g) else math.nan,
           "feret_angle_axial_mean": _axial_mean(g["FeretAngle"]) if len(g) else math.nan,
           "unit": unit, "pixel_size_nm": ps * 1e9 if ps is not None else math.nan}
    ecd = g["ECD"].to_numpy(dtype=np.float64) if len(g) else np.empty(0)
    for key, stat in SIZE_STATS.items():
        est, lo, hi = bootstrap_ci(ecd, stat, n=n_boot, seed=seed, level=level)
        row[f"ECD_{key}"], row[f"ECD_{key}_ci_low"], row[f"ECD_{key}_ci_high"] = est, lo, hi
    warns = m.get("warnings")
    row.update(ci_level=level, n_boot=int(n_boot), seed=seed,
               warnings="; ".join(warns) if isinstance(warns, (list, tuple)) else "")
    return row


def pooled_statistics(chunks, quantiles=(0.1, 0.5, 0.9), bins_per_decade=200, low=1e-3, high=1e7) -> dict:
    """Count, mean and exact quantiles of positive values that come in chunks, in constant memory.

    The values of a run of many images (every particle's ECD) need not fit in memory: a first pass
    counts them in fine logarithmic bins, a second keeps only the values of the bins that hold the
    order statistics a quantile needs. The quantiles are exactly ``numpy.quantile``'s (linear
    interpolation between order statistics) of all values together.

    Parameters
    ----------
    chunks : callable
        ``chunks()`` returns an iterable of 1-D arrays; it is called twice and must give the same
        values both times. Non-finite values are left out.
    quantiles : sequence of float
        In [0, 1].
    bins_per_decade, low, high
        The counting bins: ``bins_per_decade`` per factor of 10 from ``low`` to ``high`` (values
        outside go to the first or last bin; any value is still placed exactly).

    Returns
    -------
    dict
        ``n``, ``mean``, ``quantiles`` (q -> value; NaN when there are no values), ``edges`` and
        ``counts`` of the counting histogram.
    """
    decades = math.log10(high) - math.log10(low)
    edges = np.logspace(math.log10(low), math.log10(high), int(round(decades * bins_per_decade)) + 1)

    def binned():
        for chunk in chunks():
            v = np.asarray(chunk, np.float64).ravel()
            v = v[np.isfinite(v)]
            if v.size:
                yield v, np.clip(np.searchsorted(edges, v, side="right") - 1, 0, len(edges) - 2)

    counts = np.zeros(len(edges) - 1, np.int64)
    total = 0.0
    for v, b in binned():
        counts += np.bincount(b, minlength=len(counts))
        total += float(v.sum())
    n = int(counts.sum())
    out = {"n": n, "mean": total / n if n else math.nan, "edges": edges, "counts": counts,
           "quantiles": {float(q): math.nan for q in quantiles}}
    if not n:
        return out
    cum = np.cumsum(counts)
    ranks = {}  # the order statistics (0-based) each quantile interpolates between
    for q in quantiles:
        h = (n - 1) * float(q)
        ranks[float(q)] = (int(math.floor(h)), int(math.ceil(h)), h - math.floor(h))
    wanted = {k for lo, hi, _ in ranks.values() for k in (lo, hi)}
    bin_of = {k: int(np.searchsorted(cum, k, side="right")) for k in wanted}
    kept: dict = {b: [] for b in set(bin_of.values())}
    for v, b in binned():
        for j in kept:
            kept[j].append(v[b == j])
    kept = {j: np.sort(np.concatenate(vs)) for j, vs in kept.items()}

    def value(k):
        j = bin_of[k]
        return float(kept[j][k - (cum[j - 1] if j else 0)])

    for q, (lo, hi, frac) in ranks.items():
        a, b = value(lo), value(hi)
        out["quantiles"][q] = a + frac * (b - a) if hi != lo else a
    return out
