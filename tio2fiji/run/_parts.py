"""Per-image parts of an ``analyze`` run: written as each image finishes, kept on a rerun, merged.

A part is ``parts/<stem>.json`` (the image's meta, distribution and summary rows, its SHA-256, the
run's key: model, classifier, code version and the options that change numbers,
:meth:`tio2fiji.run.AnalysisOptions.resume_key`) beside ``parts/<stem>.csv`` (its particles).
:func:`write_part` writes the CSV first and the JSON last, each atomically, so a part whose JSON
exists is complete whatever killed its run.
:func:`reusable_part` says whether an earlier part can stand for this run's analysis of an image;
:func:`merge_parts` streams the parts, one after another, into ``summary.csv``, ``particles.csv``
and ``distribution.csv`` (memory does not grow with the number of particles) and collects what the
report shows: all images of a small run, :data:`MAX_PANELS` evenly spaced ones of a large run.
:func:`gather_images` turns files, folders and list files into the run's image list.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from .. import report as rep
from ..checks import warn_result
from ..distribution import distribution_table
from ..errors import InputError, OutputError
from ..io import IMAGE_SUFFIXES, MANIFEST, atomic_write, file_sha256, read_manifest, write_csv, write_json
from ..particles import mixed_units
from ..report import SUMMARY_COLUMNS, pooled_statistics
from ._options import MAX_PANELS  # the default of AnalysisOptions.max_panels

__all__ = ["PLOTS", "MAX_PANELS", "WRITTEN_SUFFIXES", "gather_images", "panel_positions", "write_part", "read_part",
           "reusable_part", "earlier_parts", "image_files", "run_outputs", "other_parts", "merge_parts", "pooled_sizes"]

#: The summary plots of a run: file name -> caption.
PLOTS = {"area_violin.png": "Particle area per image (thesis Fig. 34)",
          "feret_angle_kde.png": "Kernel density of the Feret angle per image (thesis Fig. 35)",
          "correlation.png": "Correlation matrices of Area, Solidity, Circularity, Compactness, "
                             "Roundness and Feret angle (thesis Fig. 36)",
          "ecd_distribution.png": "Particle size: equivalent circle diameter (ECD)",
          "run_overview.png": "The whole run: the pooled ECD distribution of every particle, and each "
                              "image's median ECD and particle count in input order"}
_PART_FORMAT = 1
#: Files tio2fiji writes beside a run's manifest that are never SEM images (even when the manifest
#: does not list them: a run that died before it finished).
WRITTEN_SUFFIXES = ("_mask.tif", "_labels.tif", "_prob.tif")


def gather_images(items=(), glob=None, from_list=None, out_dir=None) -> list:
    """The image files of a run: files as given, folders searched, a list file read; never the
    outputs of a run.

    A file inside ``out_dir``, or one that tio2fiji wrote (listed in the ``run_manifest.json`` of
    a folder above it, or named ``*_mask.tif``, ``*_labels.tif``, ``*_prob.tif`` beside such a
    manifest: :data:`WRITTEN_SUFFIXES`), is left out, and a
    :class:`~tio2fiji.checks.ResultWarning` says how many and which: a second ``analyze D --out
    D/results`` reads the images of ``D``, not the first run's masks, labels and plots.

    Parameters
    ----------
    items : sequence of path
        Files (kept in order; a missing one stays in the list, to fail as that image) and folders
        (searched with ``glob``, sorted).
    glob : str, optional
        Pattern inside each folder (e.g. ``"*.tif"``, ``"**/*.tif"``); default every file
        :func:`tio2fiji.io.read_sem` reads (``.tif``, ``.png``, ``.dm3``, ...) in all subfolders.
        An absolute pattern is taken relative to a folder it lies inside (``/data/run/*.tif`` for
        the folder ``/data/run``) and refused for any other folder.
    from_list : path, optional
        A text file of image paths, one per line (blank lines and ``#`` comments skipped; relative
        paths are relative to the list's folder), so that many thousands of paths never meet the
        command line's length limit.
    out_dir : path, optional
        The run's output folder: nothing inside it is an input.

    Returns
    -------
    list of Path
        De-duplicated (the same file twice is analysed once), in the order given (a folder's
        contents sorted), outputs left out.

    Raises
    ------
    InputError
        A folder without matching files (outputs left out), an unreadable list, an absolute
        ``glob`` outside a folder, a ``glob`` that is no pattern (empty, ``**`` inside a name), or
        nothing at all.
    """
    given = [Path(p) for p in items]
    if from_list is not None:
        lst = Path(from_list)
        try:
            lines = lst.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"--from-list {lst}: cannot read it ({exc}); give a text file of image "
                             f"paths, one per line.") from exc
        given += [p if p.is_absolute() else lst.parent / p
                  for p in (Path(t.strip()) for t in lines if t.strip() and not t.lstrip().startswith("#"))]
    out, seen, skipped = [], set(), []
    written = _Outputs(out_dir)
    for p in given:
        if p.is_dir():
            pattern = _folder_pattern(p, glob) if glob is not None else None
            try:  # pathlib checks the pattern when the search starts
                found = sorted(f for f in (p.glob(pattern) if pattern else p.rglob("*"))
                               if f.is_file() and (pattern or f.suffix.lower() in IMAGE_SUFFIXES))
            except (ValueError, NotImplementedError) as exc:
                raise InputError(f"--glob {glob!r}: not a file pattern ({exc}); give one such as "
                                 f"--glob '*.tif' or --glob '**/*.tif'.") from None
            outputs = [f for f in found if written.holds(f)]
            if not found or len(outputs) == len(found):
                want = glob or f"{', '.join('*' + s for s in IMAGE_SUFFIXES)} in any subfolder"
                but = f" ({len(outputs)} file(s) that tio2fiji wrote left out)" if outputs else ""
                raise InputError(f"{p}: no image files matching {want}{but}; check the folder or "
                                 f"--glob (e.g. --glob '**/*.tif').")
        else:
            found = [p]
        for f in found:
            key = os.path.normpath(os.path.abspath(f))  # cheaper than resolve() for 100,000s of paths
            if key in seen:
                continue
            seen.add(key)
            if written.holds(f):
                skipped.append(f)
            else:
                out.append(f)
    if skipped:
        shown = ", ".join(str(f) for f in skipped[:3]) + (", ..." if len(skipped) > 3 else "")
        warn_result(f"{len(skipped)} file(s) left out of the inputs: tio2fiji's outputs (inside --out, "
                    f"or written by a run whose {MANIFEST} is above them): {shown}")
    if not out:
        raise InputError("no images given: name image files or folders, or --from-list FILE.")
    return out


class _Outputs:
    """Which files are a run's outputs (see :func:`gather_images`); manifests read once per folder."""

    def __init__(self, out_dir=None):
        self.out_dir = None if out_dir is None else os.path.normpath(os.path.abspath(out_dir))
        self._listed = {}

    def _manifest(self, folder: str):
        """The relative paths that ``folder``'s manifest lists (every run's files and planned
        files), an empty set for a manifest it cannot read, None without a manifest."""
        if folder not in self._listed:
            listed = None
            if os.path.isfile(os.path.join(folder, MANIFEST)):
                try:
                    runs = read_manifest(folder)["runs"].values()
                    listed = {str(rel) for run in runs if isinstance(run, dict)
                              for key in ("files", "planned") for rel in (run.get(key) or ())}
                except OutputError:
                    listed = set()
            self._listed[folder] = listed
        return self._listed[folder]

    def holds(self, path) -> bool:
        """Whether ``path`` is inside the output folder or a file tio2fiji wrote."""
        full = os.path.normpath(os.path.abspath(path))
        if self.out_dir is not None and full.startswith(self.out_dir + os.sep):
            return True
        folder = os.path.dirname(full)
        above = folder
        while True:
            listed = self._manifest(above)
            if listed is not None:
                rel = Path(os.path.relpath(full, above)).as_posix()
                if rel in listed or (above == folder and full.endswith(WRITTEN_SUFFIXES)):
                    return True
            parent = os.path.dirname(above)
            if parent == above:
                return False
            above = parent


def _folder_pattern(folder, glob) -> str:
    """``glob`` as a pattern relative to ``folder`` (pathlib's ``glob`` takes no other), checked."""
    pattern = str(glob)
    if Path(pattern).is_absolute():
        base = Path(os.path.abspath(folder))
        try:
            pattern = str(Path(os.path.normpath(pattern)).relative_to(base))
        except ValueError:
            raise InputError(f"--glob {glob!r}: an absolute pattern outside the folder {folder}; give "
                             f"a pattern inside the folder, e.g. --glob '*.tif'.") from None
    if pattern in ("", "."):
        raise InputError(f"--glob {glob!r}: no file pattern for the folder {folder}; give one, "
                         f"e.g. --glob '*.tif' or --glob '**/*.tif'.")
    return pattern


def panel_positions(n, max_panels) -> set:
    """Input positions of the images with report panels: all, or ``max_panels`` evenly spaced."""
    if n <= max_panels:
        return set(range(n))
    return {int(round(i)) for i in np.linspace(0, n - 1, max_panels)} if max_panels > 0 else set()


def _native(obj):
    """numpy scalars and arrays as plain Python values (for a part's JSON)."""
    if isinstance(obj, dict):
        return {str(k): _native(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_native(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj




def write_part(out_dir, stem, table, fields) -> dict:
    """Write the part of one image: its particle ``table`` as CSV, then ``fields`` + the CSV's hash."""
    out_dir = Path(out_dir)
    csv = write_csv(out_dir / "parts" / f"{stem}.csv", table)
    part = _native({"format": _PART_FORMAT, "stem": stem, **fields, "csv": f"parts/{stem}.csv",
                    "csv_sha256": file_sha256(csv)})
    write_json(out_dir / "parts" / f"{stem}.json", part)  # last: a part without its JSON is not done
    return part


def read_part(out_dir, stem):
    """The part of ``stem`` (dict) or None when missing or unreadable."""
    try:
        part = json.loads((Path(out_dir) / "parts" / f"{stem}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return part if isinstance(part, dict) and part.get("format") == _PART_FORMAT else None


def reusable_part(out_dir, path, name, stem, key, want_panel):
    """The earlier part of this image when it was made from the same bytes, model and options."""
    part = read_part(out_dir, stem)
    if part is None or part.get("key") != key or part.get("image") != name \
            or (want_panel and not part.get("panel")):
        return None
    out_dir = Path(out_dir)
    if not all((out_dir / rel).is_file() for rel in [part["csv"], *part["files"].values()]):
        return None
    if not Path(path).is_file() or file_sha256(path) != part.get("image_sha256") \
            or file_sha256(out_dir / part["csv"]) != part.get("csv_sha256"):
        return None
    return part


def image_files(stem) -> list:
    """The files an analyze run writes for one image (relative paths), its part included."""
    return [f"{stem}_mask.tif", f"{stem}_labels.tif", f"parts/{stem}.json", f"parts/{stem}.csv",
            f"plots/{stem}_overlay.png", f"plots/{stem}_envelopes.png"]


def run_outputs(stems, report) -> list:
    """Every file an analyze run of the images ``stems`` may write into its folder (relative paths)."""
    # the panels of any image too: a kept part may have them from an earlier run
    out = [f for s in stems for f in image_files(s) if report or not f.startswith("plots/")]
    if report:
        out += [f"plots/{name}" for name in PLOTS] + ["report.html"]
    return out + ["particles.csv", "distribution.csv", "summary.csv", "analysis.json"]


def earlier_parts(out_dir, stale, images, names, key, panels, force) -> tuple:
    """What a rerun does with the earlier run's parts (``stale``: its files that still exist).

    Parameters
    ----------
    out_dir : Path
    stale : iterable of str
    images : list of Path
    names : list of (name, stem)
        This run's images and their names (:func:`tio2fiji.run.unique_names`).
    key : str
        This run's model and options (a part made with another key is not used).
    panels : set of int
        Positions of the images whose part must have report panels.
    force : bool
        Use no earlier part of this run's images.

    Returns
    -------
    kept : set of str
        Stems of this run's images whose earlier part stands for them (same image bytes, model
        and options): not analysed again.
    redone : list of str
        Names of this run's images with an earlier part that cannot stand for them.
    others : list of str
        Names of the earlier run's images that are not in this run (:func:`other_parts`).
    files : set of str
        The earlier files to keep: the kept parts' and the other images'.
    """
    stale, kept, redone, files = set(stale), set(), [], set()
    for i, (path, (name, stem)) in enumerate(zip(images, names)):
        earlier = f"parts/{stem}.json" in stale
        part = None if force or not earlier else reusable_part(out_dir, path, name, stem, key, i in panels)
        if part is not None:  # only its name: 100,000 kept parts are not held in memory
            kept.add(stem)
            files |= {f"parts/{stem}.json", part["csv"], *part["files"].values()}
        elif earlier:
            redone.append(name)
    others = []
    for image, theirs in other_parts(out_dir, stale, {s for _, s in names}).values():
        others.append(image)
        files |= theirs
    return kept, redone, others, files


def other_parts(out_dir, stale, stems) -> dict:
    """The finished parts of an earlier run among ``stale`` (relative paths) whose images are not
    among this run's ``stems``: ``stem -> (image name, their files in stale)``.

    A rerun into the same folder with other inputs keeps them: nothing a user made is removed
    without asking. They stay out of the new run's tables and stand for their images when a later
    run names them again (:func:`reusable_part`).
    """
    stale, out = set(stale), {}
    for rel in sorted(stale):
        if not (rel.startswith("parts/") and rel.endswith(".json") and rel.count("/") == 1):
            continue
        stem = rel[len("parts/"):-len(".json")]
        if stem in stems:
            continue
        part = read_part(out_dir, stem)
        files = set(image_files(stem))
        if part is not None:
            files |= {part["csv"], *part["files"].values()}
        out[stem] = (part["image"] if part is not None else stem, files & stale)
    return out


def merge_parts(res, out_dir, done, panel_stems, report, complete_only):
    """The parts, one after another, into the run's CSV files; what the report shows.

    Returns every image's meta (input order) and the report's share: the summary, distribution,
    metas, plots and panels of the images in ``panel_stems`` (all of a small run) and a note.
    Images in different units (``--allow-pixels`` beside calibrated images) are a
    :class:`~tio2fiji.checks.ResultWarning`, also in the ``warnings`` of the metas of the images in
    pixels (so in ``analysis.json`` and the report): particles.csv's ``unit`` column tells the rows
    apart (:func:`tio2fiji.particles.mixed_units`).
    """
    metas, dist_cols, shown, rows = [], {}, [], []
    totals = {"particles": 0, "complete": 0, "medians": []}

    def parts():
        for stem, part in done:
            part = part or read_part(out_dir, stem)
            if part is None:
                raise OutputError(f"{out_dir / 'parts' / stem}.json: missing after its image was "
                                  f"analysed (removed by someone else?); run again.")
            yield part

    def write_summary(p):  # first pass: summary rows, metas, the distribution's columns
        with open(p, "w", encoding="utf-8", newline="") as fh:
            for part in parts():
                metas.append(part["meta"])
                for row in part["distribution"]:
                    dist_cols.update(dict.fromkeys(row))
                pd.DataFrame(part["summary"], columns=SUMMARY_COLUMNS).to_csv(fh, header=fh.tell() == 0,
                                                                              index=False)
                totals["particles"] += part["meta"]["particles"]
                totals["complete"] += part["meta"]["complete_particles"]
                totals["medians"] += [r["ECD_median"] for r in part["summary"]
                                      if r["particles_kind"] == ("complete" if complete_only else "all")]
                rows.extend({k: r[k] for k in ("particles_kind", "particles", "ECD_median", "unit")}
                            for r in part["summary"])
                if part["stem"] in panel_stems:
                    shown.append(part)

    if done:
        res.files["summary.csv"] = atomic_write(out_dir / "summary.csv", write_summary)
        res.files["particles.csv"] = atomic_write(out_dir / "particles.csv",
                                                  lambda p: _append_csvs(p, out_dir, done))
        mixed = mixed_units(m["unit"] for m in metas)
        if mixed:
            warn_result(mixed)
            for m in metas:  # the shown parts hold the same dicts
                if m["unit"] != "nm":
                    m["warnings"] = [*(m.get("warnings") or []), mixed]
        cols = list(distribution_table([dist_cols]).columns) if dist_cols else []
        if cols:
            def write_dist(p):
                with open(p, "w", encoding="utf-8", newline="") as fh:
                    for part in parts():
                        if part["distribution"]:
                            distribution_table(part["distribution"]).reindex(columns=cols).to_csv(
                                fh, header=fh.tell() == 0, index=False)
            res.files["distribution.csv"] = atomic_write(out_dir / "distribution.csv", write_dist)
    view = {"metas": [p["meta"] for p in shown], "plots": {}, "note": None,
            "summary": pd.DataFrame([r for p in shown for r in p["summary"]], columns=SUMMARY_COLUMNS),
            "distribution": distribution_table([r for p in shown for r in p["distribution"]])
            if any(p["distribution"] for p in shown) else pd.DataFrame(),
            "overlays": {p["image"]: out_dir / p["files"]["overlay"] for p in shown if "overlay" in p["files"]},
            "envelopes": {p["image"]: out_dir / p["files"]["envelopes"] for p in shown
                          if "envelopes" in p["files"]}}
    if len(shown) < len(metas):
        med = np.nanmedian(totals["medians"]) if np.isfinite(totals["medians"]).any() else math.nan
        view["note"] = (f"This run has {len(metas)} analysed images ({totals['particles']} particles, "
                        f"{totals['complete']} complete; median of the images' ECD medians {med:.4g}). "
                        f"To stay readable at any size, the tables, plots and panels below show "
                        f"{len(shown)} of them, evenly spaced over the input order (the first, the last "
                        f"and every {len(metas) / max(1, len(shown) - 1):.1f}th between); "
                        f"summary.csv, distribution.csv and particles.csv have every image.")
    view["pooled"], per_image = pooled_sizes(res.files.get("particles.csv"), pd.DataFrame(rows),
                                             len(metas), complete_only)
    if report and shown:
        view["plots"] = _plots(res, out_dir, shown, complete_only)
        if view["pooled"]:
            first = view["pooled"][0]
            res.files["run_overview.png"] = rep.plot_run_overview(
                first["statistics"], per_image, out_dir / "plots" / "run_overview.png", first["unit"],
                first["particles_kind"])
            view["plots"] = {PLOTS["run_overview.png"]: res.files["run_overview.png"], **view["plots"]}
    for row in view["pooled"]:
        del row["statistics"]
    return metas, view


def pooled_sizes(particles_csv, per_image, n_images, complete_only):
    """The ECD of every particle of the run pooled, per kind of particles, and the per-image rows.

    Parameters
    ----------
    particles_csv : path or None
        The run's ``particles.csv`` (read in chunks, twice: :func:`tio2fiji.report.pooled_statistics`).
    per_image : pandas.DataFrame
        The summary rows of every image (``particles_kind``, ``particles``, ``ECD_median``,
        ``unit``), in input order.
    n_images : int
    complete_only : bool
        Only the complete particles; else all particles, then the complete ones.

    Returns
    -------
    rows : list of dict
        Per kind: ``particles_kind``, ``images``, ``particles``, ``unit``, ``ECD_mean``,
        ``ECD_D10``, ``ECD_D50``, ``ECD_D90`` (exact, of all particles together),
        ``ECD_median_of_image_medians`` and ``statistics`` (the counting histogram). Empty when
        there are no particles, or when the images are in different units (nm and px do not pool).
    per_image : pandas.DataFrame
        The rows of the first kind, one per image.
    """
    if particles_csv is None or not len(per_image) or per_image["unit"].nunique() != 1:
        return [], pd.DataFrame()
    kinds = ("complete",) if complete_only else ("all", "complete")
    out = []
    for kind in kinds:
        def chunks(kind=kind):
            for c in pd.read_csv(particles_csv, usecols=["ECD", "complete"], chunksize=500_000):
                yield c["ECD"].to_numpy(float)[c["complete"].astype(bool).to_numpy() | (kind == "all")]

        st = pooled_statistics(chunks)
        if not st["n"]:
            continue
        mine = per_image[per_image["particles_kind"] == kind]
        q = st["quantiles"]
        out.append({"particles_kind": kind, "images": int(n_images), "particles": st["n"],
                    "unit": str(per_image["unit"].iloc[0]), "ECD_mean": st["mean"], "ECD_D10": q[0.1],
                    "ECD_D50": q[0.5], "ECD_D90": q[0.9],
                    "ECD_median_of_image_medians": float(np.nanmedian(mine["ECD_median"]))
                    if mine["ECD_median"].notna().any() else math.nan, "statistics": st})
    first = per_image[per_image["particles_kind"] == out[0]["particles_kind"]] if out else pd.DataFrame()
    return out, first.reset_index(drop=True)


def _append_csvs(path, out_dir, done):
    """``particles.csv``: the parts' particle tables appended, one header (constant memory)."""
    header = None
    with open(path, "w", encoding="utf-8", newline="") as fh:
        for stem, _ in done:
            src_path = out_dir / "parts" / f"{stem}.csv"
            with open(src_path, encoding="utf-8", newline="") as src:
                first = src.readline()
                if header is None:
                    header = first
                    fh.write(first)
                if first == header:
                    shutil.copyfileobj(src, fh)
                else:  # columns in another order (an older part): put them in this file's order
                    pd.read_csv(src_path).reindex(columns=header.strip().split(",")).to_csv(
                        fh, header=False, index=False)


def _plots(res, out_dir, shown, complete_only) -> dict:
    """The four summary plots of the images shown; caption -> path."""
    t = pd.concat([pd.read_csv(out_dir / p["csv"]) for p in shown], ignore_index=True)
    names = [p["image"] for p in shown]
    units = {p["meta"]["unit"] for p in shown}
    unit = units.pop() if len(units) == 1 else ""  # mixed calibrations: no unit on the axes
    if complete_only:
        t = t[t["complete"].astype(bool)]
    which = " (complete particles only)" if complete_only else ""
    plots, plots_dir = {}, out_dir / "plots"
    for fname, plot in (("area_violin.png", lambda f: rep.plot_area_violin(t, f, names, unit)),
                        ("feret_angle_kde.png", lambda f: rep.plot_feret_angle_kde(t, f, names)),
                        ("correlation.png", lambda f: rep.plot_correlation(t, f, names)),
                        ("ecd_distribution.png", lambda f: rep.plot_ecd_distribution(t, f, names, unit))):
        plots[PLOTS[fname] + which] = res.files[fname] = plot(plots_dir / fname)
    return plots
