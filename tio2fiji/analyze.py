"""The main job: SEM images in, particle statistics, plots and an HTML report out.

:func:`analyze_images` runs, for every image: :func:`tio2fiji.io.read_sem` (calibration, data
bar) → :func:`tio2fiji.predict.segment` (mask and separated particles) → ``<stem>_mask.tif`` and
``<stem>_labels.tif`` → the particle measurement (:func:`tio2fiji.particles.measure` or the ImageJ
bridge) → the spatial tests (:func:`tio2fiji.distribution.test_distribution`) and G/L envelopes →
the overlay. Every particle gets a complete score (:mod:`tio2fiji.complete`). Then, over all
images, it writes ``particles.csv``, ``distribution.csv``, ``summary.csv``, the plots and
``report.html`` (:mod:`tio2fiji.report`), and ``analysis.json`` with the options, model,
calibration sources, versions and failures. With ``complete_only`` the statistics, plots and spatial
tests use only the complete particles.

An image that fails is recorded with its error and the others go on.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import report as rep
from .batch import (
    UNITS_NOTE,
    add_complete_columns,
    complete_classifier,
    concat_tables,
    run_files,
    run_metadata,
    run_versions,
    unique_names,
)
from .checks import check_option, check_options, plausibility_warnings
from .distribution import METHODS, distribution_table, envelopes, test_distribution
from .errors import InputError
from .imagej import BACKENDS, measure_imagej
from .instances import CONNECTIVITY, SEPARATE, labels_to_separated_mask
from .io import (
    RunFolder,
    calibrate_missing,
    check_output_dir,
    file_sha256,
    read_sem,
    write_csv,
    write_json,
    write_labels,
    write_mask,
)
from .models.checkpoint import load_model, model_threshold, resolve_model
from .particles import measure
from .predict import segment
from .summary import summary_table

__all__ = ["analyze_images", "AnalysisResult"]
_PLOTS = {"area_violin.png": "Particle area per image (thesis Fig. 34)",
          "feret_angle_kde.png": "Kernel density of the Feret angle per image (thesis Fig. 35)",
          "correlation.png": "Correlation matrices of Area, Solidity, Circularity, Compactness, "
                             "Roundness and Feret angle (thesis Fig. 36)",
          "ecd_distribution.png": "Particle size: equivalent circle diameter (ECD)"}


@dataclass
class AnalysisResult:
    """What :func:`analyze_images` produced.

    Attributes
    ----------
    out_dir : Path
    particles, distribution, summary : pandas.DataFrame
        The tables written to ``particles.csv``, ``distribution.csv`` and ``summary.csv`` (empty
        when no image succeeded).
    images : list of dict
        Per analysed image: name, path, analysed width and height, pixel size and its source,
        data-bar rows, particle count, foreground pixels, output files, seconds and ``warnings``
        (:func:`tio2fiji.checks.plausibility_warnings`: e.g. a blank frame segmented as particles).
    failures : list of (str, str)
        ``(image path, message)`` of the images that failed.
    files : dict
        Name -> path of every file written (CSV, JSON, plots, report).
    report : Path or None
        ``report.html``.
    seconds : float
        Wall time of the whole run.
    """

    out_dir: Path
    particles: pd.DataFrame = field(default_factory=pd.DataFrame)
    distribution: pd.DataFrame = field(default_factory=pd.DataFrame)
    summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    images: list = field(default_factory=list)
    failures: list = field(default_factory=list)
    files: dict = field(default_factory=dict)
    report: Path | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when every image was analysed."""
        return not self.failures


def _model_description(model, source) -> dict:
    """What the report says about the model: its file, configuration, threshold and scores."""
    info = getattr(model, "tio2fiji_info", None) or {}
    desc = {}
    if isinstance(source, (str, Path)):
        path = resolve_model(source)
        desc["model"] = "default (bundled)" if str(source) == "default" else str(source)
        desc["file"] = path.name
        if path.is_file():
            desc["sha256"] = file_sha256(path)
    else:
        desc["model"] = type(model).__name__ + " (given as an object)"
    cfg = info.get("model_config") or {}
    for key in ("arch", "encoder", "config", "in_channels"):
        if key in cfg:
            desc[key] = cfg[key]
    desc["threshold"] = model_threshold(model)
    for key in ("weights_dtype", "epoch", "val_iou"):
        if info.get(key) is not None:
            desc[key] = info[key]
    return desc


def _envelope_points(table, window):
    """Particle centroids as (x, y) in the table's unit, inside the window."""
    pts = table[["X", "Y"]].to_numpy(np.float64)
    inside = (pts[:, 0] >= 0) & (pts[:, 0] <= window[0]) & (pts[:, 1] >= 0) & (pts[:, 1] <= window[1])
    return pts[inside]


def _envelopes(table, width, height, pixel_size_m, n_sim, seed):
    """G and L envelopes of the particle centroids (CSR); None with fewer than 3 particles.

    L is evaluated up to 10 times the nearest-neighbour distance expected under CSR (at most a
    quarter of the shorter side): beyond that it says little about particle interactions, and
    its cost, the number of point pairs within r, grows with r².
    """
    scale = pixel_size_m * 1e9 if pixel_size_m is not None else 1.0
    window = (width * scale, height * scale)
    pts = _envelope_points(table, window)
    if len(pts) < 3:
        return None
    spacing = 0.5 * math.sqrt(window[0] * window[1] / len(pts))
    r_l = np.linspace(0.0, min(0.25 * min(window), 10.0 * spacing), 101)
    return envelopes(pts, window, r_l=r_l, n_sim=n_sim, null="csr", seed=seed)


def _outputs(images, report) -> list:
    """Every file :func:`analyze_images` may write into its folder (relative paths)."""
    stems = [stem for _, stem in unique_names(images)]
    out = [f"{s}_{k}" for s in stems for k in ("mask.tif", "labels.tif")]
    if report:
        out += [f"plots/{s}_{k}" for s in stems for k in ("overlay.png", "envelopes.png")]
        out += [f"plots/{name}" for name in _PLOTS] + ["report.html"]
    return out + ["particles.csv", "distribution.csv", "summary.csv", "analysis.json"]


def _check_options(backend, separate, connectivity, methods, points):
    if backend not in BACKENDS:
        raise InputError(f"backend must be 'native' or 'imagej', not {backend!r}.")
    if separate not in SEPARATE:
        raise InputError(f"separate must be one of {', '.join(SEPARATE)}, not {separate!r}.")
    if connectivity not in (4, 8):
        raise InputError(f"connectivity must be 4 or 8, not {connectivity!r}.")
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise InputError(f"unknown distribution method(s) {', '.join(map(str, bad))}: "
                         f"use {', '.join(METHODS)}.")
    if points not in ("auto", "uep", "centroid"):
        raise InputError(f"points must be 'auto', 'uep' or 'centroid', not {points!r}.")


def analyze_images(images, out_dir, model="default", backend="native", separate="auto",
                   connectivity=CONNECTIVITY, methods=("clark-evans", "monte-carlo"), points="auto",
                   threshold=None, n_boot=1000, seed=0, n_sim=199, envelope_sims=39, report=True,
                   complete_only=False, progress=None, data_bar_rows=None, pixel_size_m=None,
                   allow_pixels=False) -> AnalysisResult:
    """Segment, measure and test SEM images; write tables, plots and the HTML report.

    Parameters
    ----------
    images : sequence of path
        SEM images (anything :func:`tio2fiji.io.read_sem` reads).
    out_dir : path
        Output folder (created; checked for writing before the model is loaded; locked while the
        run writes; the files of an earlier analyze run there are replaced, and
        ``run_manifest.json`` lists this run's, see :class:`tio2fiji.io.RunFolder`). Per image
        ``<stem>_mask.tif`` (0/255, the measured particles:
        ``labels > 0``), ``<stem>_labels.tif``
        and ``plots/<stem>_overlay.png``, ``plots/<stem>_envelopes.png``; over all images
        ``particles.csv``, ``distribution.csv``, ``summary.csv``, ``analysis.json``,
        ``plots/*.png`` and ``report.html``. ``particles.csv`` has every particle, with
        ``complete_score`` and ``complete`` (the bundled classifier of :mod:`tio2fiji.complete`,
        scored on the label image that was measured). ``summary.csv`` has, per image, a row of all
        particles and a row of the complete ones (``particles_kind`` ``all`` / ``complete``,
        :func:`tio2fiji.summary.summary_table`).
    model : "default", path or torch.nn.Module
        The segmentation network (:func:`tio2fiji.models.load_model`); loaded once.
    backend : {"native", "imagej"}
        Who measures the particles. ImageJ measures binary masks, so touching particles are cut
        apart by one pixel first (:func:`tio2fiji.instances.labels_to_separated_mask`).
    separate : {"auto", "none", "watershed"}
        How :func:`tio2fiji.predict.segment` turns the mask into particles: ``"watershed"`` splits
        touching particles, ``"none"`` keeps connected components, ``"auto"`` is watershed for a
        U-Net and the network's own instances for Mask R-CNN.
    connectivity : {4, 8}
        Particle connectivity of the connected components (``separate="none"``) and of the
        measurement's outline tracing (4: particles apart unless they share a side, as in the BAM
        masks).
    methods : sequence of {"clark-evans", "monte-carlo", "biovoxxel"}
        Spatial-distribution tests, one ``distribution.csv`` row each per image.
    points : {"auto", "uep", "centroid"}
        Points of the tests (``"auto"``: centroids of the separated particles).
    threshold : float, optional
        Probability threshold (default: the model's).
    n_boot, seed
        Bootstrap of the size statistics (:func:`tio2fiji.summary.bootstrap_ci`); ``seed`` also
        seeds the Monte Carlo test and the envelopes.
    n_sim : int
        Simulations of the Monte Carlo test.
    envelope_sims : int
        Simulations of the G/L envelopes (0: no envelopes).
    report : bool
        Write the plots and ``report.html``.
    complete_only : bool
        Use only the complete particles for ``summary.csv`` (its ``complete`` rows only), the
        plots, the G/L envelopes and ``distribution.csv`` (the points of the complete particles);
        ``particles.csv`` keeps every particle. Recorded as ``options.complete_only`` in
        ``analysis.json`` and said in the report.
    progress : callable, optional
        ``progress(done, total, name)`` after each image (analysed or failed).
    data_bar_rows : int, optional
        Height of the data bar of every image (0: none); detected per image when None
        (:func:`tio2fiji.io.detect_data_bar`). Recorded as ``options.data_bar_rows``.
    pixel_size_m : float, optional
        Pixel size (metres) of the images whose file gives none, neither in its metadata nor in its
        burned-in field width or scale bar (:func:`tio2fiji.io.calibrate_missing`).
    allow_pixels : bool
        Measure an image that nothing calibrates in pixels; without it such an image fails
        (listed in ``failures``) instead of silently turning nm into pixels.

    Returns
    -------
    AnalysisResult

    Raises
    ------
    InputError
        Bad options, a model or complete-particle classifier that cannot be loaded (nothing is
        analysed then). Errors of single
        images are not raised; they are in ``AnalysisResult.failures``.
    """
    t_start = time.perf_counter()
    images = [Path(p) for p in images]
    methods = tuple(methods)
    _check_options(backend, separate, connectivity, methods, points)
    check_options(threshold=threshold, n_boot=n_boot, seed=seed, n_sim=n_sim, envelope_sims=envelope_sims)
    data_bar_rows = check_option("data_bar_rows", data_bar_rows)
    pixel_size_m = check_option("pixel_size_m", pixel_size_m)
    if not images:
        raise InputError("no images given.")
    out_dir = check_output_dir(out_dir, keep=False)  # before the model is loaded or anything computed
    plots_dir = out_dir / "plots"
    clf, clf_desc = complete_classifier()
    net = load_model(model) if isinstance(model, (str, Path)) else model
    model_desc = _model_description(net, model)
    # the run folder: locked, the earlier run's files removed on entry; on exit (also on an error)
    # the manifest lists what this run wrote
    folder = RunFolder(out_dir, "analyze", planned=_outputs(images, report), inputs=images)

    def analyze_one(path, name, stem):
        t0 = time.perf_counter()
        sem = calibrate_missing(read_sem(path, data_bar_rows=data_bar_rows), pixel_size_m=pixel_size_m,
                                allow_pixels=allow_pixels)
        seg = segment(net, sem, threshold=threshold, separate=separate, connectivity=connectivity)
        labels = np.asarray(seg.labels)
        ps = sem.pixel_size_m
        implausible = plausibility_warnings(np.count_nonzero(seg.mask), np.bincount(labels.ravel())[1:],
                                            labels.shape[1], labels.shape[0], name)
        files = {"mask": write_mask(out_dir / f"{stem}_mask.tif", labels > 0, ps),
                 "labels": write_labels(out_dir / f"{stem}_labels.tif", labels, ps)}
        if backend == "native":
            measured = labels
            table = measure(labels, pixel_size_m=ps, connectivity=connectivity, image_name=name)
        else:
            measured = labels_to_separated_mask(labels, connectivity)
            table = measure_imagej(measured, pixel_size_m=ps, connectivity=connectivity, image_name=name)
        table, measured_labels, label_of_row = add_complete_columns(table, measured, clf, connectivity)
        points_of, stats_table = labels, table
        if complete_only:  # the particles of the measured label image that are complete
            keep = np.zeros(int(measured_labels.max(initial=0)) + 1, bool)
            keep[label_of_row[table["complete"].to_numpy(bool)]] = True
            points_of = np.where(keep[measured_labels], measured_labels, 0)
            stats_table = table[table["complete"]]
        rows = [test_distribution(points_of, method=m, pixel_size_m=ps, image=name, points=points,
                                  n_sim=n_sim, seed=seed, backend=backend) for m in methods]
        h, w = labels.shape
        overlay = env_png = None
        if report:
            overlay = files["overlay"] = rep.overlay_image(sem.analysed, labels,
                                                           plots_dir / f"{stem}_overlay.png")
            env = _envelopes(stats_table, w, h, ps, envelope_sims, seed) if envelope_sims else None
            if env is not None:
                env_png = files["envelopes"] = rep.plot_envelopes_png(
                    env, plots_dir / f"{stem}_envelopes.png", unit=sem.unit if ps else "px", title=name)
        meta = {
            "image": name, "path": str(path), "width": int(w), "height": int(h),
            "pixel_size_m": ps, "pixel_size_source": sem.pixel_size_source, "unit": sem.unit,
            "calibration_where": sem.calibration_where, "notes": list(sem.notes),
            "data_bar_rows": int(sem.data_bar_rows), "analysed_px": sem.analysed_pixels,
            "annotations": seg.info.get("annotations"), "particles": int(len(table)),
            "complete_particles": int(table["complete"].sum()),
            # coverage counts the thresholded probability: the one-pixel cuts between touching
            # particles (background in the mask file) count as particle area
            "foreground_px": int(np.count_nonzero(seg.mask)), "threshold": seg.threshold,
            "separation": seg.info.get("separate"), "segmentation": dict(seg.info),
            "warnings": implausible,
            "files": {k: str(v) for k, v in files.items()},
            "seconds": round(time.perf_counter() - t0, 2)}
        return table, (meta, rows, overlay, env_png)

    with folder:
        done = run_files(images, analyze_one, progress)
        res = AnalysisResult(out_dir=out_dir, failures=done.failures)
        tables = done.tables
        res.images = [meta for meta, _, _, _ in done.inputs]
        dist_rows = [row for _, rows, _, _ in done.inputs for row in rows]
        overlays = {m["image"]: o for m, _, o, _ in done.inputs if o is not None}
        envs = {m["image"]: e for m, _, _, e in done.inputs if e is not None}

        options = {"backend": backend, "separate": separate, "connectivity": connectivity,
                   "methods": list(methods), "points": points,
                   "threshold": threshold if threshold is not None else model_desc["threshold"],
                   "n_boot": n_boot, "seed": seed, "n_sim": n_sim, "envelope_sims": envelope_sims,
                   "complete_only": bool(complete_only), "data_bar_rows": data_bar_rows,
                   "pixel_size_m": pixel_size_m, "allow_pixels": bool(allow_pixels)}
        versions = run_versions(backend if res.images else None)  # no JVM started for nothing
        if tables:
            res.particles = concat_tables(tables)
            res.distribution = distribution_table(dist_rows) if dist_rows else pd.DataFrame()
            res.summary = summary_table(res.particles, res.images, n_boot=n_boot, seed=seed,
                                        complete_only=complete_only)
            res.files["particles.csv"] = write_csv(out_dir / "particles.csv", res.particles)
            if len(res.distribution):
                res.files["distribution.csv"] = write_csv(out_dir / "distribution.csv", res.distribution)
            res.files["summary.csv"] = write_csv(out_dir / "summary.csv", res.summary)
        plots = {}
        if report and tables:
            names = [m["image"] for m in res.images]
            units = {m["unit"] for m in res.images}
            unit = units.pop() if len(units) == 1 else ""  # mixed calibrations: no unit on the axes
            t = res.particles[res.particles["complete"]] if complete_only else res.particles
            which = " (complete particles only)" if complete_only else ""
            for fname, plot in (("area_violin.png", lambda f: rep.plot_area_violin(t, f, names, unit)),
                                ("feret_angle_kde.png", lambda f: rep.plot_feret_angle_kde(t, f, names)),
                                ("correlation.png", lambda f: rep.plot_correlation(t, f, names)),
                                ("ecd_distribution.png", lambda f: rep.plot_ecd_distribution(t, f, names, unit))):
                plots[_PLOTS[fname] + which] = res.files[fname] = plot(plots_dir / fname)
        res.seconds = time.perf_counter() - t_start
        meta = run_metadata(res.failures, versions=versions, options=options, model=model_desc,
                            complete_classifier=clf_desc, images=res.images, units=UNITS_NOTE,
                            seconds=round(res.seconds, 2))
        res.files["analysis.json"] = write_json(out_dir / "analysis.json", meta)
        if report:
            res.report = res.files["report.html"] = rep.write_report(
                out_dir, res.summary, versions, distribution=res.distribution, images=res.images,
                plots=plots, overlays=overlays, envelopes=envs, model=model_desc, failures=res.failures,
                options=options, title=f"tio2fiji analysis of {len(images)} image(s)")
    return res
