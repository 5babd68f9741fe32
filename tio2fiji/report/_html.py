"""A self-contained HTML report: :func:`write_report` writes one page with every image embedded
as base64 PNG, so it can be mailed or archived as one file.

It takes the summary table (:func:`tio2fiji.report.summary_table`), the distribution table
(``distribution.csv``), the plots of :mod:`tio2fiji.report._plots`, the overlays of
:mod:`tio2fiji.report._overlay` and a little metadata per image.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import atomic_write
from ._summary import SIZE_STATS

__all__ = ["format_value", "html_table", "result_warnings", "write_report"]

#: Columns of the report's whole-run table (:func:`tio2fiji.run.pooled_sizes`) and their headers.
_POOLED_HEADERS = {"particles_kind": "Particles", "images": "Images", "particles": "Count",
                   "unit": "Unit", "ECD_mean": "ECD mean", "ECD_D10": "D10", "ECD_D50": "D50 (median)",
                   "ECD_D90": "D90", "ECD_median_of_image_medians": "Median of the image medians"}



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


def format_value(v) -> str:
    """A table cell or plot label: yes/no, integers as such, floats to 4 significant digits
    (Table 8 style), NaN as a dash, None as empty."""
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
        out.append("<tr>" + "".join(f'<td class="{"text" if c in text else "num"}">{_esc(format_value(row[c]))}</td>'
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
        :func:`tio2fiji.report.summary_table`'s output; its ``particles_kind`` rows (all /
        complete particles) are shown as they are, with a note saying what they mean.
    versions : dict
        Software versions, as recorded in the run's JSON (:func:`tio2fiji.run.software_versions`).
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
        The whole run pooled (:func:`tio2fiji.run.pooled_sizes`), one row per kind of particles:
        shown first, as the table of every particle of every image.

    Returns
    -------
    Path
        The written report.
    """
    now = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    parts = _head_html(title, now, versions, scope)
    parts += _problems_html(failures, result_warnings(images, distribution))
    parts += _images_html(images)
    parts += _pooled_html(pooled)
    parts += _summary_html(summary)
    parts += _distribution_html(distribution)
    parts += _figures_html(plots, envelopes, overlays, images)
    parts += _settings_html(model, options, versions)
    parts.append("</body></html>")
    page = "\n".join(parts)
    path = Path(out_dir) / filename

    def _write(p):
        p.write_text(page, encoding="utf-8")

    return atomic_write(path, _write)


# Each section below returns the page's pieces in order; write_report joins them with newlines, so
# a section's pieces are kept as they were (one string each) to keep the page byte for byte.

def _head_html(title, now, versions, scope) -> list:
    """The document head, the title and when and by what the page was written."""
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_esc(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{_esc(title)}</h1>"
             f"<p class='note'>Written {_esc(now)} by tio2fiji {_esc(versions.get('tio2fiji', ''))}.</p>"]
    if scope:
        parts.append(f"<p class='note' id='scope'>{_esc(scope)}</p>")
    return parts


def _problems_html(failures, warned) -> list:
    """The images that failed and the warnings, first, where a reader cannot miss them."""
    parts = []
    if failures:
        parts.append("<h2 id='failures'>Images that failed</h2><ul class='fail'>")
        parts += [f"<li><code>{_esc(p)}</code>: {_esc(m)}</li>" for p, m in failures]
        parts.append("</ul>")
    if warned:
        parts.append("<h2 id='warnings'>Warnings: check these results before using them</h2>"
                     "<ul class='fail'>")
        parts += [f"<li>{_esc(w)}</li>" for w in warned]
        parts.append("</ul>")
    return parts


_IMAGE_HEADERS = {"image": "Image", "path": "File", "data_bar_rows": "Data-bar rows",
                  "pixel_size_nm": "Pixel size (nm)", "pixel_size_source": "Calibration source",
                  "separation": "Particles split by", "particles": "Particles",
                  "complete_particles": "Complete particles", "seconds": "Time (s)"}


def _images_frame(images):
    """The images' metadata as the table's rows and the columns it shows."""
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
    if "segmentation" in idf and idf["segmentation"].map(lambda s: isinstance(s, dict) and "min_particle" in s).any():
        # the model's smallest particle (ModelSettings.min_particle_px): what was not reported
        idf["Not particles (under the model's smallest)"] = [
            f"{s['min_particle']['dropped']} under {s['min_particle']['nm2']:g} nm² "
            f"({s['min_particle']['pixels']:g} px)" if isinstance(s, dict) and "min_particle" in s else ""
            for s in idf["segmentation"]]
        cols.insert(cols.index("particles") + 1, "Not particles (under the model's smallest)")
    return idf.astype(object), cols


def _images_html(images) -> list:
    """Images and calibration: one row per image."""
    parts = ["<h2 id='images'>Images and calibration</h2>"]
    if images:
        idf, cols = _images_frame(images)
        parts.append(html_table(idf, cols, _IMAGE_HEADERS, "images-table"))
    else:
        parts.append("<p>No image was analysed.</p>")
    return parts


def _pooled_html(pooled) -> list:
    """The whole run pooled, when given."""
    if not pooled:
        return []
    return ["<h2 id='pooled'>The whole run: every particle of every image</h2>",
            html_table(pd.DataFrame(list(pooled)).astype(object), list(_POOLED_HEADERS),
                       _POOLED_HEADERS, "pooled-table"),
            "<p class='note'>Number-weighted ECD quantiles of all particles together (exact); "
            "beside them the median of the images' own medians, which weighs every image "
            "alike.</p>"]


def _summary_html(summary) -> list:
    """Table 8 and the particle sizes with their bootstrap intervals."""
    parts = ["<h2 id='summary'>Summary (thesis Table 8)</h2>"]
    if summary is None or not len(summary):
        parts.append("<p>No summary: no image was analysed.</p>")
        return parts
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
    return parts


def _distribution_html(distribution) -> list:
    """Table 9: the spatial tests."""
    parts = ["<h2 id='distribution'>Spatial distribution (thesis Table 9)</h2>"]
    if distribution is None or not len(distribution):
        parts.append("<p>No distribution test.</p>")
        return parts
    parts.append(html_table(distribution.astype(object), _DISTRIBUTION_COLUMNS, _DISTRIBUTION_HEADERS,
                            "distribution-table"))
    note = "Distances in the unit of the Unit column; points: what stands for a particle."
    if "biovoxxel" in set(distribution["method"]):
        note += (" The biovoxxel rows reproduce BioVoxxel's Particle Distribution (2D), which is "
                 "not a sound test (see the README).")
    parts.append(f"<p class='note'>{_esc(note)}</p>")
    return parts


def _figures_html(plots, envelopes, overlays, images) -> list:
    """The summary plots, the G/L envelopes with their tests, the overlays."""
    parts = []
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
    return parts


def _settings_html(model, options, versions) -> list:
    """What produced the results: the model, the options, the software versions."""
    parts = []
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
    return parts
