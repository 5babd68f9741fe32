"""The thesis's plots and a self-contained HTML report.

The functions here take the particle table (``particles.csv``, one row per particle, column names of
:mod:`tio2fiji.columns`), the distribution table (``distribution.csv``), the summary table
(:func:`tio2fiji.summary.summary_table`) and a little metadata per image, and turn them into what a
reader looks at:

* one function per figure, each writing one PNG and returning its path: violin plots of particle
  area (thesis Fig. 34), kernel densities of the Feret angle (Fig. 35), correlation matrices of
  Area, Solidity, Circularity, Compactness, Roundness and Feret angle (Fig. 36), the ECD
  distribution, the G/L envelopes of :func:`tio2fiji.distribution.envelopes`, and
  :func:`overlay_image` (the detected particles' outlines on the SEM image).
* :func:`write_report`: one HTML page with every image embedded as base64 PNG, so it can be mailed
  or archived as one file.

Plots use matplotlib's Agg canvas directly (no pyplot, no display, nothing shown).
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import math
from pathlib import Path

import numpy as np
import pandas as pd

from .distribution import envelope_tests
from .io import atomic_write
from .overlay import overlay_image, overlay_rgb
from .summary import SIZE_STATS

__all__ = ["plot_area_violin", "plot_feret_angle_kde", "plot_correlation", "plot_ecd_distribution",
           "plot_run_overview", "plot_envelopes", "plot_envelopes_png", "overlay_rgb", "overlay_image", "write_report",
           "result_warnings", "CORRELATION_COLUMNS"]

#: Particle-table columns of the thesis's correlation matrices (Fig. 36) and their labels.
CORRELATION_COLUMNS = {"Area": "Area", "Solidity": "Solidity", "Circ.": "Circularity",
                       "Compact": "Compactness", "Round": "Roundness", "FeretAngle": "Feret angle"}


#: Columns of the report's whole-run table (:func:`tio2fiji.parts.pooled_sizes`) and their headers.
_POOLED_HEADERS = {"particles_kind": "Particles", "images": "Images", "particles": "Count",
                   "unit": "Unit", "ECD_mean": "ECD mean", "ECD_D10": "D10", "ECD_D50": "D50 (median)",
                   "ECD_D90": "D90", "ECD_median_of_image_medians": "Median of the image medians"}


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
        :func:`tio2fiji.summary.pooled_statistics` of every particle's ECD (its fine counting
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
        ax.set_title(f"{name} envelope test ({t['n_sim']} sims): p = {_fmt(t['p_value'])} "
                     f"({t['classification']})", fontsize=9)
        ax.legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_envelopes_png(env, path, unit="px", title=None) -> Path:
    """:func:`plot_envelopes` (same arguments) written as a PNG at ``path``; returns the path."""
    return _save(plot_envelopes(env, unit=unit, title=title), path)


# --------------------------------------------------------------------------------------------------
# HTML


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1200px;padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.6em}h2{font-size:1.25em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
h3{font-size:1.05em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0 1em}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:right}
th{background:#f0f0f0}td.text,th.text{text-align:left}
.wide{overflow-x:auto}figure{margin:1em 0}figcaption{font-size:.85em;color:#555}
img{max-width:100%;height:auto;border:1px solid #ddd}
.fail{color:#a00}.note{font-size:.85em;color:#555}code{font-size:.9em}
"""


def _esc(v) -> str:
    return html.escape(str(v), quote=True)


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        if math.isnan(v):
            return "–"
        # 4 significant digits (Table 8 style); large values keep their integer part
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.1f}"
    return str(v)


def html_table(df, columns=None, headers=None, table_id=None) -> str:
    """A DataFrame as an HTML table (escaped; numbers right-aligned, text left-aligned).

    Parameters
    ----------
    df : pandas.DataFrame
    columns : sequence of str, optional
        Columns to show (those missing from ``df`` are skipped).
    headers : dict, optional
        Display names of columns.
    table_id : str, optional
        ``id`` attribute of the table.
    """
    cols = [c for c in (columns or list(df.columns)) if c in df.columns]
    headers = headers or {}
    text = {c for c in cols if any(isinstance(v, str) for v in df[c])}
    id_attr = f' id="{_esc(table_id)}"' if table_id else ""
    out = [f'<div class="wide"><table{id_attr}>', "<thead><tr>"]
    out += [f'<th class="{"text" if c in text else "num"}">{_esc(headers.get(c, c))}</th>' for c in cols]
    out.append("</tr></thead><tbody>")
    for _, row in df.iterrows():
        out.append("<tr>" + "".join(f'<td class="{"text" if c in text else "num"}">{_esc(_fmt(row[c]))}</td>'
                                    for c in cols) + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _img_tag(path, alt) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{data}">'


def _figure_html(path, caption) -> str:
    return f"<figure>{_img_tag(path, caption)}<figcaption>{_esc(caption)}</figcaption></figure>"


_SUMMARY_HEADERS = {
    "image": "Image", "particles_kind": "Particles", "particles": "Particle count",
    "area_coverage_pct": "% Area coverage",
    "circularity_mean": "Circularity", "solidity_mean": "Solidity",
    "feret_angle_mean": "Feret angle (°, arithmetic mean, as Table 8: see note)",
    "feret_angle_axial_mean": "Feret axis (°, axial mean)",
    "unit": "Unit",
}

_DISTRIBUTION_HEADERS = {"image": "Image", "method": "Method", "points": "Points", "n": "n",
                         "expected_nnd": "Expected NND", "observed_nnd": "Observed NND",
                         "statistic": "Statistic", "critical_value": "Critical value",
                         "p_value": "p", "classification": "Classification", "unit": "Unit"}
_ENVELOPE_HEADERS = {"image": "Image", "function": "Function", "test": "Test", "n_sim": "Simulations", "mad":
                     "Max. deviation", "p_value": "p", "min_p_value": "Smallest p", "classification": "Classification"}
_DISTRIBUTION_COLUMNS = ["image", "method", "points", "n", "expected_nnd", "observed_nnd", "statistic",
                         "critical_value", "p_value", "classification", "unit"]


def _size_table(summary) -> pd.DataFrame:
    """ECD statistics as "estimate [low, high]" strings, one row per summary row."""
    rows = []
    for _, r in summary.iterrows():
        row = {"image": r["image"], "particles_kind": r.get("particles_kind", "all"), "unit": r["unit"]}
        for k in SIZE_STATS:
            est, lo, hi = r[f"ECD_{k}"], r[f"ECD_{k}_ci_low"], r[f"ECD_{k}_ci_high"]
            if pd.isna(est):
                row[k] = "–"
            else:
                row[k] = f"{est:.2f}" if pd.isna(lo) else f"{est:.2f} [{lo:.2f}, {hi:.2f}]"
        rows.append(row)
    return pd.DataFrame(rows, columns=["image", "particles_kind", "unit", *SIZE_STATS]).astype(object)


def _complete_note(summary) -> str:
    """What the summary's ``particles_kind`` rows mean, or "" when it has only all-particle rows."""
    kinds = set(summary["particles_kind"]) if "particles_kind" in summary else {"all"}
    if kinds == {"complete"}:
        return ("Complete particles only (complete_only): the summary, the size statistics, the plots "
                "and the spatial tests use only the particles the complete-particle classifier calls "
                "complete (complete_score ≥ its threshold), not those partly hidden by another "
                "particle or cut by the image border. particles.csv lists every particle with its "
                "complete_score and complete columns.")
    if "complete" in kinds:
        return ("Two rows per image: all particles, and its complete particles only (complete_score ≥ "
                "the complete-particle classifier's threshold: not partly hidden by another particle "
                "or cut by the image border). Plots and spatial tests use all particles.")
    return ""


def result_warnings(images=None, distribution=None) -> list:
    """Every warning about the results: the images' ``warnings`` and the spatial tests' ``note``.

    Parameters
    ----------
    images : sequence of dict, optional
        Per image, optionally ``warnings`` (list of str).
    distribution : pandas.DataFrame, optional
        ``distribution.csv``'s table; a non-empty ``note`` (e.g. a Monte Carlo test that cannot
        be significant with its ``n_sim``) becomes ``"<image>: <method>: <note>"``.

    Returns
    -------
    list of str
        In order, each once.
    """
    out = [w for m in images or () for w in (m.get("warnings") or ())]
    if distribution is not None and len(distribution) and "note" in distribution:
        for _, r in distribution.iterrows():
            if isinstance(r["note"], str) and r["note"]:
                out.append(f"{r['image']}: {r['method']}: {r['note']}")
    return list(dict.fromkeys(out))


def write_report(out_dir, summary, versions, distribution=None, images=None, plots=None, overlays=None,
                 envelopes=None, model=None, failures=None, options=None,
                 title="tio2fiji analysis", filename="report.html", scope=None, pooled=None) -> Path:
    """Write one self-contained HTML page (all images embedded as base64 PNG).

    Parameters
    ----------
    out_dir : path
        Folder of the report.
    summary : pandas.DataFrame
        :func:`tio2fiji.summary.summary_table`'s output; its ``particles_kind`` rows (all /
        complete particles) are shown as they are, with a note saying what they mean.
    versions : dict
        Software versions, as recorded in the run's JSON (:func:`tio2fiji.batch.software_versions`).
    distribution : pandas.DataFrame, optional
        ``distribution.csv``'s table.
    images : sequence of dict, optional
        Per image: ``image``, ``path``, ``width``, ``height``, ``pixel_size_m``,
        ``pixel_size_source`` (the calibration source), ``data_bar_rows``, ``particles`` and
        optionally ``complete_particles``, ``separation`` (how touching particles were split),
        ``annotations`` (``source``, ``pixels``, ``particles_removed`` of marks left out) and
        ``seconds``, ``warnings`` (list of str; shown with the distribution notes under
        "Warnings", :func:`result_warnings`).
    plots : dict, optional
        Caption -> PNG path of the summary figures.
    overlays, envelopes : dict, optional
        Image name -> PNG path of its overlay and of its G/L envelope plot.
    model : dict, optional
        What segmented the images (name, file, configuration, threshold...); shown as a table.
    failures : sequence of (path, message), optional
        Images that could not be analysed.
    options : dict, optional
        The analysis options, shown as a table.
    title : str
    filename : str
    scope : str, optional
        What part of a large run the page shows (which images, and why), said under the title.
    pooled : sequence of dict, optional
        The whole run pooled (:func:`tio2fiji.parts.pooled_sizes`), one row per kind of particles:
        shown first, as the table of every particle of every image.

    Returns
    -------
    Path
        The written report.
    """
    now = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_esc(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{_esc(title)}</h1>"
             f"<p class='note'>Written {_esc(now)} by tio2fiji {_esc(versions.get('tio2fiji', ''))}.</p>"]
    if scope:
        parts.append(f"<p class='note' id='scope'>{_esc(scope)}</p>")

    if failures:
        parts.append("<h2 id='failures'>Images that failed</h2><ul class='fail'>")
        parts += [f"<li><code>{_esc(p)}</code>: {_esc(m)}</li>" for p, m in failures]
        parts.append("</ul>")
    warned = result_warnings(images, distribution)
    if warned:
        parts.append("<h2 id='warnings'>Warnings: check these results before using them</h2>"
                     "<ul class='fail'>")
        parts += [f"<li>{_esc(w)}</li>" for w in warned]
        parts.append("</ul>")

    parts.append("<h2 id='images'>Images and calibration</h2>")
    if images:
        idf = pd.DataFrame(list(images))
        if "pixel_size_m" in idf:
            idf["pixel_size_nm"] = [None if v is None or pd.isna(v) else float(v) * 1e9
                                    for v in idf["pixel_size_m"]]
        if {"width", "height"} <= set(idf.columns):
            idf["Analysed area (px)"] = [f"{int(w)}×{int(h)}" for w, h in zip(idf["width"], idf["height"])]
        cols = ["image", "path", "Analysed area (px)", "data_bar_rows", "pixel_size_nm",
                "pixel_size_source", "separation", "particles", "complete_particles", "seconds"]
        if "annotations" in idf and idf["annotations"].map(lambda a: isinstance(a, dict)).any():
            idf["Left out (annotations)"] = [
                f"{a['source']}: {a['pixels']} px, {a['particles_removed']} particles beside them dropped"
                if isinstance(a, dict) else "" for a in idf["annotations"]]
            cols.insert(5, "Left out (annotations)")
        idf = idf.astype(object)
        parts.append(html_table(idf, cols,
                                {"image": "Image", "path": "File", "data_bar_rows": "Data-bar rows",
                                 "pixel_size_nm": "Pixel size (nm)",
                                 "pixel_size_source": "Calibration source",
                                 "separation": "Particles split by", "particles": "Particles",
                                 "complete_particles": "Complete particles",
                                 "seconds": "Time (s)"}, "images-table"))
    else:
        parts.append("<p>No image was analysed.</p>")

    if pooled:
        parts.append("<h2 id='pooled'>The whole run: every particle of every image</h2>")
        parts.append(html_table(pd.DataFrame(list(pooled)).astype(object), list(_POOLED_HEADERS),
                                _POOLED_HEADERS, "pooled-table"))
        parts.append("<p class='note'>Number-weighted ECD quantiles of all particles together (exact); "
                     "beside them the median of the images' own medians, which weighs every image "
                     "alike.</p>")

    parts.append("<h2 id='summary'>Summary (thesis Table 8)</h2>")
    if summary is not None and len(summary):
        parts.append(html_table(summary.astype(object), list(_SUMMARY_HEADERS), _SUMMARY_HEADERS,
                                "summary-table"))
        note = _complete_note(summary)
        if note:
            parts.append(f"<p class='note' id='complete-note'>{_esc(note)}</p>")
        parts.append("<p class='note' id='feret-note'>A Feret angle is an axis (0° and 180° are the same): "
                     "the arithmetic mean, kept to compare with thesis Table 8, depends on where 0°/180° "
                     "is cut (5° and 175° average to 90°) and is no direction; the axial mean is.</p>")
        lvl = summary["ci_level"].iloc[0]
        parts.append(f"<h3>Particle size: equivalent circle diameter</h3><p class='note'>Estimate "
                     f"[{lvl:.0%} percentile-bootstrap interval, {int(summary['n_boot'].iloc[0])} "
                     f"resamples, seed {_esc(summary['seed'].iloc[0])}]; number-weighted quantiles "
                     f"(D50 = median).</p>")
        parts.append(html_table(_size_table(summary), None,
                                {"image": "Image", "particles_kind": "Particles", "unit": "Unit",
                                 "mean": "Mean", "median": "Median"},
                                "size-table"))
    else:
        parts.append("<p>No summary: no image was analysed.</p>")

    parts.append("<h2 id='distribution'>Spatial distribution (thesis Table 9)</h2>")
    if distribution is not None and len(distribution):
        parts.append(html_table(distribution.astype(object), _DISTRIBUTION_COLUMNS, _DISTRIBUTION_HEADERS,
                                "distribution-table"))
        note = "Distances in the unit of the Unit column; points: what stands for a particle."
        if "biovoxxel" in set(distribution["method"]):
            note += (" The biovoxxel rows reproduce BioVoxxel's Particle Distribution (2D), which is "
                     "not a sound test (see the README).")
        parts.append(f"<p class='note'>{_esc(note)}</p>")
    else:
        parts.append("<p>No distribution test.</p>")

    if plots:
        parts.append("<h2 id='plots'>Plots</h2>")
        parts += [_figure_html(p, cap) for cap, p in plots.items()]
    tests = [t for m in images or () for t in (m.get("envelope_tests") or ())]
    if envelopes or tests:
        parts.append("<h2 id='envelopes'>Spatial statistics: G and L functions</h2>")
    if tests:  # the numbers of the plots' titles (distribution.envelope_tests)
        parts.append(html_table(pd.DataFrame(tests).astype(object), list(_ENVELOPE_HEADERS),
                                _ENVELOPE_HEADERS, "envelope-table"))
        parts.append("<p class='note'>The G and L plots' own tests (envelope_sims): not the Monte Carlo "
                     "row of Table 9 (mean nearest-neighbour distance, two-sided, n_sim).</p>")
    if envelopes:
        parts += [_figure_html(p, f"{name}: G(r) and L(r) − r of the particle centroids with "
                                  f"simulation envelopes of complete spatial randomness")
                  for name, p in envelopes.items()]
    if overlays:
        parts.append("<h2 id='overlays'>Detected particles</h2>")
        parts += [_figure_html(p, f"{name}: outline of each detected particle (one colour per particle)")
                  for name, p in overlays.items()]

    if model:
        parts.append("<h2 id='model'>Model</h2>")
        parts.append(html_table(pd.DataFrame({"key": list(model), "value": [str(v) for v in model.values()]}),
                                None, {"key": "setting", "value": "value"}, "model-table"))
    if options:
        parts.append("<h2 id='options'>Options</h2>")
        parts.append(html_table(pd.DataFrame({"option": list(options),
                                              "value": [str(v) for v in options.values()]}),
                                None, None, "options-table"))
    parts.append("<h2 id='versions'>Software</h2>")
    parts.append(html_table(pd.DataFrame({"package": list(versions),
                                          "version": [str(v) for v in versions.values()]}),
                            None, None, "versions-table"))
    parts.append("</body></html>")
    page = "\n".join(parts)
    path = Path(out_dir) / filename

    def _write(p):
        p.write_text(page, encoding="utf-8")

    return atomic_write(path, _write)
