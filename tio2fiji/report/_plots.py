"""The thesis's plots, one function per figure, each writing one PNG and returning its path.

Violin plots of particle area (thesis Fig. 34), kernel densities of the Feret angle (Fig. 35),
correlation matrices of Area, Solidity, Circularity, Compactness, Roundness and Feret angle
(Fig. 36), the ECD distribution, the whole-run overview and the G/L envelopes of
:func:`tio2fiji.distribution.envelopes`. They take the particle table (``particles.csv``, columns
of :mod:`tio2fiji.particles._columns`). Plots use matplotlib's Agg canvas directly (no pyplot, no
display, nothing shown).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..distribution import envelope_tests
from ..io import atomic_write
from ._html import format_value

__all__ = ["plot_area_violin", "plot_feret_angle_kde", "plot_correlation", "plot_ecd_distribution",
           "plot_run_overview", "plot_envelopes", "plot_envelopes_png", "correlation_matrix", "CORRELATION_COLUMNS"]

#: Particle-table columns of the thesis's correlation matrices (Fig. 36) and their labels.
CORRELATION_COLUMNS = {"Area": "Area", "Solidity": "Solidity", "Circ.": "Circularity",
                       "Compact": "Compactness", "Round": "Roundness", "FeretAngle": "Feret angle"}




# --------------------------------------------------------------------------------------------------
# plots


def _figure(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> Path:
    return atomic_write(Path(path), lambda p: fig.savefig(p, format="png", dpi=100))


def _images_in_order(particles, images=None) -> list:
    if images is not None:
        return list(images)
    return list(dict.fromkeys(particles["image"])) if len(particles) else []


def _unit_of(particles, unit):
    if unit is not None:
        return unit
    return particles.attrs.get("unit", "") if hasattr(particles, "attrs") else ""


def _short(name, limit=18) -> str:
    stem = str(Path(str(name)).with_suffix("")) if Path(str(name)).suffix else str(name)
    return stem if len(stem) <= limit else stem[:limit - 1] + "…"


def plot_area_violin(particles, path, images=None, unit=None) -> Path:
    """Violin plots of particle area, one per image (thesis Fig. 34).

    Parameters
    ----------
    particles : pandas.DataFrame
        Particle table with ``image`` and ``Area``.
    path : path
        The PNG to write.
    images : sequence of str, optional
        Images to show and their order (default: order of appearance; images with no particles
        get an empty slot).
    unit : str, optional
        Length unit for the axis label (default: ``particles.attrs["unit"]``).

    Returns
    -------
    Path
    """
    names = _images_in_order(particles, images)
    unit = _unit_of(particles, unit)
    fig = _figure((max(4.0, 1.3 * len(names) + 2), 4.2))
    ax = fig.add_subplot()
    data = [particles.loc[particles["image"] == n, "Area"].to_numpy(float) for n in names]
    pos = [i + 1 for i, d in enumerate(data) if d.size >= 2]  # a violin needs a spread
    if pos:
        parts = ax.violinplot([data[p - 1] for p in pos], positions=pos, showmedians=True,
                              quantiles=[[0.25, 0.75]] * len(pos), widths=0.8)
        for body in parts["bodies"]:
            body.set_alpha(0.6)
    for i, d in enumerate(data, 1):
        if d.size == 1:
            ax.plot([i], d, "o", color="C0")
        ax.annotate(f"n={d.size}", (i, 1.0), xycoords=("data", "axes fraction"), ha="center",
                    va="bottom", fontsize=8)
    ax.set_xticks(range(1, len(names) + 1), [_short(n) for n in names], rotation=30 if len(names) > 4 else 0)
    ax.set_xlim(0.4, len(names) + 0.6)
    ax.set_ylabel(f"Area ({unit}²)" if unit else "Area")
    ax.set_title("Particle area per image (median and quartiles)", fontsize=10, pad=14)
    return _save(fig, path)


def _periodic_kde(angles, grid, period=180.0):
    """Wrapped-Gaussian kernel density of axial angles (0° and ``period`` are the same axis).

    The bandwidth is Silverman's rule on the *circular* spread of the angles (from the mean
    resultant length of the doubled angles): a linear rule would see particles at 2° and 178° as
    176° apart and smooth everything flat.
    """
    a = np.asarray(angles, float) % period
    n = a.size
    r = abs(np.exp(2j * np.pi * a / period).mean())
    spread = period / (2 * np.pi) * math.sqrt(-2.0 * math.log(r)) if r > 1e-12 else math.inf
    spread = min(spread, period / math.sqrt(12.0))  # never wider than a uniform distribution
    h = max(1.06 * spread * n ** -0.2, 1e-3 * period)
    g = np.asarray(grid, float)[:, None]
    dens = np.zeros(g.shape[0])
    for k in range(-3, 4):  # images of each kernel one to three periods away
        dens += np.exp(-0.5 * ((g - a[None, :] + k * period) / h) ** 2).sum(axis=1)
    return dens / (n * h * math.sqrt(2 * math.pi))


def plot_feret_angle_kde(particles, path, images=None) -> Path:
    """Kernel density of the Feret angle, one curve per image (thesis Fig. 35).

    The density is wrapped at 0°/180° (a Feret angle is an axis, 0° and 180° are the same), so it
    integrates to 1 over [0, 180) and has no artificial drop at the ends (see
    :func:`_periodic_kde`).

    Parameters
    ----------
    particles : pandas.DataFrame
        Particle table with ``image`` and ``FeretAngle`` (degrees, [0, 180)).
    path : path
    images : sequence of str, optional

    Returns
    -------
    Path
    """
    names = _images_in_order(particles, images)
    fig = _figure((6.4, 4.0))
    ax = fig.add_subplot()
    grid = np.linspace(0.0, 180.0, 361)
    for i, n in enumerate(names):
        a = particles.loc[particles["image"] == n, "FeretAngle"].to_numpy(float)
        a = a[~np.isnan(a)]
        if a.size < 2:
            continue  # no density from one angle
        ax.plot(grid, _periodic_kde(a, grid), color=f"C{i % 10}", label=f"{_short(n)} (n={a.size})")
    ax.set_xlim(0, 180)
    ax.set_xticks(range(0, 181, 30))
    ax.set_xlabel("Feret angle (°)")
    ax.set_ylabel("density")
    ax.set_title("Feret angle, kernel density per image", fontsize=10)
    if ax.lines:
        ax.legend(fontsize=8)
    return _save(fig, path)


def correlation_matrix(particles) -> pd.DataFrame:
    """Pearson correlations of :data:`CORRELATION_COLUMNS` (renamed to the thesis's words)."""
    return particles[list(CORRELATION_COLUMNS)].rename(columns=CORRELATION_COLUMNS).corr()


def plot_correlation(particles, path, images=None) -> Path:
    """Correlation matrices of Area, Solidity, Circularity, Compactness, Roundness and Feret
    angle, one panel per image (thesis Fig. 36).

    Parameters
    ----------
    particles : pandas.DataFrame
    path : path
    images : sequence of str, optional

    Returns
    -------
    Path
    """
    names = _images_in_order(particles, images) or [""]
    ncols = min(3, len(names))
    nrows = -(-len(names) // ncols)
    fig = _figure((4.6 * ncols + 0.8, 4.2 * nrows))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    labels = list(CORRELATION_COLUMNS.values())
    im = None
    for ax, n in zip(axes, names):
        g = particles[particles["image"] == n] if len(particles) else particles
        ax.set_title(f"{_short(n, 30)} (n={len(g)})", fontsize=9)
        if len(g) < 3:
            ax.text(0.5, 0.5, "too few particles", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        c = correlation_matrix(g).to_numpy()
        im = ax.imshow(c, vmin=-1, vmax=1, cmap="RdBu_r")
        for (r, k), v in np.ndenumerate(c):
            ax.text(k, r, "–" if np.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if abs(v) > 0.6 else "black")
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
    for ax in axes[len(names):]:
        ax.set_axis_off()
    if im is not None:
        fig.colorbar(im, ax=list(axes), shrink=0.8, label="Pearson r")
    return _save(fig, path)


def plot_ecd_distribution(particles, path, images=None, unit=None) -> Path:
    """Size distribution: histogram and cumulative number distribution of the ECD per image,
    with D10, D50 and D90 marked on the cumulative curve.

    Parameters
    ----------
    particles : pandas.DataFrame
        Particle table with ``image`` and ``ECD``.
    path : path
    images : sequence of str, optional
    unit : str, optional

    Returns
    -------
    Path
    """
    names = _images_in_order(particles, images)
    unit = _unit_of(particles, unit)
    fig = _figure((10, 4.0))
    ax_h, ax_c = fig.subplots(1, 2)
    all_ecd = particles["ECD"].to_numpy(float) if len(particles) else np.empty(0)
    all_ecd = all_ecd[np.isfinite(all_ecd)]
    bins = np.histogram_bin_edges(all_ecd, bins="auto") if all_ecd.size else 10
    if not np.isscalar(bins) and len(bins) > 61:  # readable bars
        bins = np.linspace(bins[0], bins[-1], 61)
    for i, n in enumerate(names):
        d = particles.loc[particles["image"] == n, "ECD"].to_numpy(float)
        d = np.sort(d[np.isfinite(d)])
        if d.size == 0:
            continue
        color = f"C{i % 10}"
        ax_h.hist(d, bins=bins, histtype="step", density=True, color=color, label=f"{_short(n)} (n={d.size})")
        ax_c.step(d, np.arange(1, d.size + 1) / d.size, where="post", color=color)
        qs = np.quantile(d, [0.1, 0.5, 0.9])
        ax_c.plot(qs, [0.1, 0.5, 0.9], "o", color=color, ms=4)
    u = f" ({unit})" if unit else ""
    ax_h.set_xlabel(f"ECD{u}")
    ax_h.set_ylabel("density")
    ax_h.set_title("Equivalent circle diameter", fontsize=10)
    if ax_h.patches:
        ax_h.legend(fontsize=8)
    ax_c.set_xlabel(f"ECD{u}")
    ax_c.set_ylabel("cumulative number fraction")
    ax_c.set_title("Cumulative distribution (dots: D10, D50, D90)", fontsize=10)
    for y in (0.1, 0.5, 0.9):
        ax_c.axhline(y, color="0.85", lw=0.8, zorder=0)
    ax_c.set_ylim(0, 1.02)
    return _save(fig, path)


def plot_run_overview(pooled, per_image, path, unit="", kind="all") -> Path:
    """A whole run at a glance, however many images: the pooled ECD distribution of all its
    particles, and each image's median ECD and particle count in input order (drift, outliers).

    Parameters
    ----------
    pooled : dict
        :func:`tio2fiji.report.pooled_statistics` of every particle's ECD (its fine counting
        bins are shown 10 to a bar, on a logarithmic axis).
    per_image : pandas.DataFrame
        One row per image in input order: ``ECD_median`` and ``particles``.
    path : path
    unit : str
    kind : str
        Which particles (``"all"`` or ``"complete"``), for the titles.

    Returns
    -------
    Path
    """
    fig = _figure((11, 3.8))
    ax_h, ax_m = fig.subplots(1, 2)
    u = f" ({unit})" if unit else ""
    counts, edges = np.asarray(pooled["counts"]), np.asarray(pooled["edges"])
    if pooled["n"]:
        nz = np.flatnonzero(counts)
        lo, hi = nz[0] - nz[0] % 10, min(len(counts), nz[-1] + 10 - nz[-1] % 10)
        c = counts[lo:hi].reshape(-1, 10).sum(axis=1)
        e = edges[lo:hi + 1:10]
        ax_h.stairs(c, e, fill=True, color="C0", alpha=0.6)
        for q, v in pooled["quantiles"].items():
            ax_h.axvline(v, color="k", lw=1, ls="--" if q != 0.5 else "-")
            ax_h.annotate(f"D{round(q * 100):d}", (v, 1), xycoords=("data", "axes fraction"),
                          xytext=(2, -10), textcoords="offset points", fontsize=8)
        ax_h.set_xscale("log")
    ax_h.set_xlabel(f"ECD{u}")
    ax_h.set_ylabel("particles per bar")
    ax_h.set_title(f"Pooled ECD of {pooled['n']} particles ({kind}; D10, D50, D90 exact)", fontsize=10)
    from matplotlib.ticker import MaxNLocator

    x = np.arange(1, len(per_image) + 1)
    ms = 5 if len(x) < 200 else 1.5
    ax_m.plot(x, per_image["ECD_median"].to_numpy(float), "o", ms=ms, color="C0")
    ax_m.set_xlabel("image (input order)")
    ax_m.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_m.set_ylabel(f"median ECD{u}", color="C0")
    ax_n = ax_m.twinx()
    ax_n.plot(x, per_image["particles"].to_numpy(float), "s", ms=ms * 0.8, mfc="none", color="C1")
    ax_n.set_ylabel("particles", color="C1")
    ax_m.set_title(f"Per image: median ECD (blue dots), particles (orange squares); {len(x)} images", fontsize=10)
    return _save(fig, path)


def plot_envelopes(env, unit="px", title=None):
    """Plot G(r) and L(r) - r with their simulation envelopes.

    Parameters
    ----------
    env : dict
        Output of :func:`tio2fiji.distribution.envelopes`.
    unit : str
        Unit of r for the axis labels (``"nm"`` when calibrated).
    title : str, optional
        Figure title (e.g. the image name).

    Returns
    -------
    matplotlib.figure.Figure
        Not shown, not saved (``fig.savefig("g_l.png")``); the Agg canvas needs no display. Each
        panel's title gives its test's p as the report's table (:func:`~tio2fiji.distribution.envelope_tests`).
    """
    fig = _figure((9, 3.8))
    null = "CSR" if env.get("null", "csr") == "csr" else "hard-core"
    tests = {t["function"]: t for t in envelope_tests(env)}  # the rows of the report's table
    for ax, name in zip(fig.subplots(1, 2), ("G", "L")):
        e, t = env[name], tests[name]
        r = e["r"]
        shift = r if name == "L" else 0.0  # L(r) - r: zero under CSR, easier to read
        ax.fill_between(r, e["low"] - shift, e["high"] - shift, color="0.8",
                        label=f"{null} envelope ({env['n_sim']} sims)")
        ax.plot(r, e["mean"] - shift, "k--", lw=1, label=f"{null} mean")
        ax.plot(r, e["observed"] - shift, "C3", lw=1.5, label="observed")
        ax.set_xlabel(f"r ({unit})")
        ax.set_ylabel("G(r)" if name == "G" else f"L(r) - r ({unit})")
        ax.set_title(f"{name} envelope test ({t['n_sim']} sims): p = {format_value(t['p_value'])} "
                     f"({t['classification']})", fontsize=9)
        ax.legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_envelopes_png(env, path, unit="px", title=None) -> Path:
    """:func:`plot_envelopes` (same arguments) written as a PNG at ``path``; returns the path."""
    return _save(plot_envelopes(env, unit=unit, title=title), path)


