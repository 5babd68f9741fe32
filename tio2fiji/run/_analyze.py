"""The main job: SEM images in, particle statistics, plots and an HTML report out.

:func:`analyze_images` runs, for every image (:func:`analyze_one`): :func:`tio2fiji.io.read_sem`
(calibration, data bar) → :func:`tio2fiji.predict.segment` (mask and separated particles) →
``<stem>_mask.tif`` and ``<stem>_labels.tif`` → the particle measurement
(:func:`tio2fiji.particles.measure` or the ImageJ bridge) → the spatial tests
(:func:`tio2fiji.distribution.test_distribution`), the image's summary rows and, for the images
shown in the report, the overlay and G/L envelopes. Every particle gets a complete score
(:mod:`tio2fiji.particles._complete`). Each image's results are written as it finishes, atomically, as its
*part* (``parts/<stem>.json`` and ``parts/<stem>.csv``). At the end the parts are merged, one
after another (never all particle tables in memory), into ``particles.csv``, ``distribution.csv``,
``summary.csv``, the plots, ``report.html`` (:mod:`tio2fiji.report`) and ``analysis.json`` with
the options, model, calibration sources, versions and failures. With ``complete_only`` the
statistics, plots and spatial tests use only the complete particles.

The images run one after another in this process (the default), or on Dask workers
(:mod:`tio2fiji.run._cluster`: ``workers`` local processes or a ``scheduler``'s); both run the same
:func:`analyze_one`. A rerun into the same folder keeps the parts made from the same image bytes,
model and options and redoes the rest (``force`` redoes all); an image that fails is recorded with
its error and the others go on.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import __version__
from .. import report as rep
from ..checks import check_option, check_options, plausibility_warnings
from ..distribution import METHODS, envelope_tests, envelopes, test_distribution
from ..errors import InputError, OutputError
from ..imagej import BACKENDS, measure_imagej
from ..instances import CONNECTIVITY, SEPARATE, labels_to_separated_mask
from ..io import (
    RunFolder,
    calibrate_missing,
    check_output_dir,
    file_sha256,
    read_sem,
    write_json,
    write_labels,
    write_mask,
)
from ..models import resolve_device
from ..models.checkpoint import load_model, resolve_model
from ..models.device import choose_engine
from ..models.onnx import OnnxUNet
from ..models.settings import Model, ModelSettings, as_model
from ..particles import SizeFilter, add_complete_columns, complete_classifier, measure, parse_size
from ..predict import segment
from ..report import summary_table
from ._batch import (
    UNITS_NOTE,
    failure_message,
    run_metadata,
    run_versions,
    unique_names,
)
from ._cluster import run_tasks, share, shared, start_client, worker_cache, worker_device
from ._parts import MAX_PANELS, earlier_parts, gather_images, merge_parts, panel_positions, run_outputs, write_part

__all__ = ["analyze_images", "analyze_one", "AnalysisResult", "gather_images", "warm_up", "MAX_PANELS"]


@dataclass
class AnalysisResult:
    """What :func:`analyze_images` produced.

    The tables are read from the written CSV files when first used (a run of many images never
    holds all its particles in memory).

    Attributes
    ----------
    out_dir : Path
    particles, distribution, summary : pandas.DataFrame
        The tables of ``particles.csv``, ``distribution.csv`` and ``summary.csv`` (empty when no
        image succeeded).
    images : list of dict
        Per analysed image (in input order, skipped ones included): name, path, analysed width
        and height, pixel size and its source, data-bar rows, particle count, foreground pixels,
        output files, seconds and ``warnings`` (:func:`tio2fiji.checks.plausibility_warnings`:
        e.g. a blank frame segmented as particles).
    failures : list of (str, str)
        ``(image path, message)`` of the images that failed.
    skipped : list of str
        Names of the images whose parts of an earlier run were kept (same image bytes, model and
        options), not analysed again.
    redone : list of str
        Names of this run's images whose earlier parts could not stand for them (another image,
        model or options, or ``force``): analysed again, their earlier files replaced.
    kept_other : list of str
        Images of an earlier run into the folder that are not in this run: their parts and files
        are kept (never removed unasked), and left out of this run's tables.
    removed : list of str
        The earlier run's files removed before this run wrote its own (relative paths).
    files : dict
        Name -> path of every file written (CSV, JSON, plots, report).
    report : Path or None
        ``report.html``.
    seconds : float
        Wall time of the whole run.
    """

    out_dir: Path
    images: list = field(default_factory=list)
    failures: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    redone: list = field(default_factory=list)
    kept_other: list = field(default_factory=list)
    removed: list = field(default_factory=list)
    files: dict = field(default_factory=dict)
    report: Path | None = None
    seconds: float = 0.0
    _tables: dict = field(default_factory=dict, repr=False)

    def _table(self, name) -> pd.DataFrame:
        if name not in self._tables:
            path = self.files.get(f"{name}.csv")
            table = pd.read_csv(path) if path is not None else pd.DataFrame()
            if "warnings" in table:  # an empty string is read back as NaN
                table["warnings"] = ["" if pd.isna(v) else v for v in table["warnings"]]
            self._tables[name] = table
        return self._tables[name]

    @property
    def particles(self) -> pd.DataFrame:
        return self._table("particles")

    @property
    def distribution(self) -> pd.DataFrame:
        return self._table("distribution")

    @property
    def summary(self) -> pd.DataFrame:
        return self._table("summary")

    @property
    def ok(self) -> bool:
        """True when every image was analysed."""
        return not self.failures


@dataclass(frozen=True)
class _Job:
    """Everything one image's analysis needs besides the loaded network (sent to Dask workers)."""

    out_dir: str
    model: str
    device: str | None
    backend: str
    separate: str
    connectivity: int
    methods: tuple
    points: str
    threshold: float | None
    n_boot: int
    seed: int
    n_sim: int
    envelope_sims: int
    report: bool
    complete_only: bool
    data_bar_rows: int | None
    pixel_size_m: float | None
    allow_pixels: bool
    key: str = ""  # the model's identity and the options that change numbers (resume)
    tta: bool = False
    scale: str = "model"
    size: SizeFilter | None = None  # ImageJ's size filter (parse_size)


def _model_description(model, source) -> dict:
    """What the report says about the model (a :class:`~tio2fiji.models.Model` or a bare network):
    its file, configuration, threshold and scores, from its settings."""
    model = as_model(model)
    settings, prov = model.settings, model.settings.provenance
    desc = {}
    if isinstance(source, (str, Path)):
        path = resolve_model(source)
        desc["model"] = "default (bundled)" if str(source) == "default" else str(source)
        desc["file"] = path.name
        if path.is_file():  # load_model hashed the file it read already
            desc["sha256"] = prov.file_sha256 or file_sha256(path)
    else:
        desc["model"] = type(model.net).__name__ + " (given as an object)"
    for key in ("arch", "encoder", "config", "in_channels"):
        if key in settings.config:
            desc[key] = settings.config[key]
    desc["threshold"] = settings.threshold
    for key in ("weights_dtype", "epoch", "val_iou"):
        if getattr(prov, key) is not None:
            desc[key] = getattr(prov, key)
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


def _model_identity(net, desc) -> str:
    """The model file's SHA-256, or for a network given as an object the hash of its weights."""
    if desc.get("sha256"):
        return desc["sha256"]
    h = hashlib.sha256(type(net).__name__.encode())
    for name, tensor in net.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def analyze_one(path, name, stem, job, net, clf, panel=True) -> dict:
    """Analyse one image and write its files and its part; the unit of work of every run.

    Parameters
    ----------
    path : Path
    name, stem : str
        The image's unique name (tables) and output stem (:func:`tio2fiji.run.unique_names`).
    job : _Job
        The run's options and output folder.
    net : torch.nn.Module
        The loaded network.
    clf : dict
        The complete-particle classifier (:func:`tio2fiji.run.complete_classifier`).
    panel : bool
        Draw the image's overlay and G/L envelopes (the images shown in the report).

    Returns
    -------
    dict
        The part, as written to ``parts/<stem>.json`` (its particles in ``parts/<stem>.csv``):
        ``meta`` (the image's entry in ``analysis.json``), ``distribution`` and ``summary`` rows,
        ``image_sha256``, ``key`` (model and options), ``files`` (relative paths).
    """
    t0 = time.perf_counter()
    out_dir, plots_dir, ps = Path(job.out_dir), Path(job.out_dir) / "plots", None
    image_sha = file_sha256(path) if Path(path).is_file() else None
    # --pixel-size overrides the file's calibration (also a broken tag's), as in every command
    sem = calibrate_missing(read_sem(path, data_bar_rows=job.data_bar_rows, pixel_size_m=job.pixel_size_m),
                            pixel_size_m=job.pixel_size_m, allow_pixels=job.allow_pixels)
    seg = segment(net, sem, threshold=job.threshold, separate=job.separate, connectivity=job.connectivity,
                  tta=job.tta, scale=job.scale)
    labels = np.asarray(seg.labels)
    ps = sem.pixel_size_m
    implausible = plausibility_warnings(np.count_nonzero(seg.mask), np.bincount(labels.ravel())[1:],
                                        labels.shape[1], labels.shape[0], name)
    if seg.info.get("scale", {}).get("warning"):
        implausible.append(f"{name}: {seg.info['scale']['warning']}")
    files = {"mask": write_mask(out_dir / f"{stem}_mask.tif", labels > 0, ps),
             "labels": write_labels(out_dir / f"{stem}_labels.tif", labels, ps)}
    bounds = job.size.pixel_bounds(ps) if job.size is not None else None  # ImageJ's size filter
    measured = labels if job.backend == "native" else labels_to_separated_mask(labels, job.connectivity)
    table = (measure if job.backend == "native" else measure_imagej)(
        measured, pixel_size_m=ps, connectivity=job.connectivity, image_name=name, size=job.size)
    table, measured_labels, label_of_row = add_complete_columns(table, measured, clf, job.connectivity,
                                                                size_px=bounds)
    points_of, stats_table = labels, table
    if job.complete_only or bounds is not None:  # the measured particles (within --size) that count
        stats_table = table[table["complete"]] if job.complete_only else table
        keep = np.zeros(int(measured_labels.max(initial=0)) + 1, bool)
        keep[label_of_row[table["complete"].to_numpy(bool) | (not job.complete_only)]] = True
        points_of = np.where(keep[measured_labels], measured_labels, 0)
    rows = [test_distribution(points_of, method=m, pixel_size_m=ps, image=name, points=job.points,
                              n_sim=job.n_sim, seed=job.seed, backend=job.backend,
                              connectivity=job.connectivity) for m in job.methods]
    h, w = labels.shape
    env_tests = []  # the G/L tests of the envelope plot: its titles and the report's table
    if job.report and panel:
        files["overlay"] = rep.overlay_image(sem.analysed, labels, plots_dir / f"{stem}_overlay.png")
        env = _envelopes(stats_table, w, h, ps, job.envelope_sims, job.seed) if job.envelope_sims else None
        if env is not None:
            env_tests = envelope_tests(env, name)
            files["envelopes"] = rep.plot_envelopes_png(env, plots_dir / f"{stem}_envelopes.png",
                                                        unit=sem.unit if ps else "px", title=name)
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
        "warnings": implausible, "envelope_tests": env_tests,
        "size": job.size.describe(ps) if job.size is not None else None,
        "files": {k: str(v) for k, v in files.items()},
        "seconds": round(time.perf_counter() - t0, 2)}
    summary = summary_table(table, [meta], n_boot=job.n_boot, seed=job.seed, complete_only=job.complete_only)
    part = write_part(out_dir, stem, table, {
        "image": name, "path": str(path), "image_sha256": image_sha, "key": job.key,
        "panel": bool(job.report and panel),
        "files": {k: Path(v).relative_to(out_dir).as_posix() for k, v in files.items()},
        "meta": meta, "distribution": rows, "summary": summary.to_dict("records")})
    return part


def warm_up() -> float:
    """Analyse one small synthetic image through :func:`analyze_one` (a stand-in network), in a
    temporary folder; return the seconds it took.

    What the first image of a process loads on first use (numba's compiled kernels from their
    cache, matplotlib's figure machinery and fonts, about 1.3 s) is then loaded already: a local
    Dask cluster's fork server does it once for all the workers it forks
    (:mod:`tio2fiji._warm_worker`). The stand-in is a one-pixel convolution (particles where the
    gray level is above the middle), so every step after the network runs on the same kinds of
    arrays as with a real one.
    """
    import tempfile
    import warnings

    import tifffile
    import torch

    t0 = time.perf_counter()
    yy, xx = np.mgrid[:160, :224]
    image = np.full((160, 224), 40, np.uint8)
    for k, (r, c) in enumerate([(30, 30), (40, 100), (35, 180), (100, 50), (110, 130), (120, 190)]):
        image[(yy - r) ** 2 + (xx - c) ** 2 <= (9 + 3 * (k % 3)) ** 2] = 200
    net = torch.nn.Conv2d(1, 1, 1)
    with torch.no_grad():
        net.weight.fill_(40.0)
        net.bias.fill_(-20.0)
    net = Model(net, ModelSettings())  # the settings of a model file that stores none
    clf = complete_classifier()[0]
    with tempfile.TemporaryDirectory(prefix="tio2fiji-warm-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few simulations: the tests' untestable-p notes
        path = Path(tmp) / "warm.tif"
        tifffile.imwrite(path, image, imagej=True, resolution=(1e-9 / 5e-9, 1e-9 / 5e-9), metadata={"unit": "nm"})
        job = _Job(tmp, "", "cpu", "native", "auto", CONNECTIVITY, ("clark-evans", "monte-carlo"), "auto",
                   None, 50, 0, 19, 3, True, False, 0, None, False)
        analyze_one(path, "warm.tif", "warm", job, net, clf, panel=True)
    return time.perf_counter() - t0


def _image_task(path, name, stem, job, panel, net=None, clf=None) -> tuple:
    """One image on a worker (or in this process): ``("ok"|"failed"|"output", message)``.

    Errors are returned, not raised, so that Dask retries only a task whose worker died.
    """
    try:
        if net is None:  # on a Dask worker: the network and classifier, loaded once per worker
            dev = resolve_device(worker_device(job.device))
            net = worker_cache(("model", job.model, job.key, str(dev)), lambda: _worker_network(job, dev))
            clf = worker_cache(("classifier",), complete_classifier)[0]
        analyze_one(Path(path), name, stem, job, net, clf, panel)
        return "ok", ""
    except OutputError as exc:  # the output folder is at fault: the run stops
        return "output", str(exc)
    except Exception as exc:  # noqa: BLE001 - one image must not stop a run (the one failure rule)
        return "failed", failure_message(path, exc)


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
                   allow_pixels=False, device=None, workers=None, scheduler=None, threads=None,
                   force=False, max_panels=MAX_PANELS, tta=False, scale="model", size=None) -> AnalysisResult:
    """Segment, measure and test SEM images; write tables, plots and the HTML report.

    Parameters
    ----------
    images : sequence of path
        SEM images (anything :func:`tio2fiji.io.read_sem` reads).
    out_dir : path
        Output folder (created; checked for writing before the model is loaded; locked while the
        run writes; the files of an earlier analyze run there are replaced, except the parts this
        run can keep, and ``run_manifest.json`` lists this run's, see
        :class:`tio2fiji.io.RunFolder`). Per image ``<stem>_mask.tif`` (0/255, the measured
        particles: ``labels > 0``), ``<stem>_labels.tif``, its part ``parts/<stem>.json`` (meta,
        distribution and summary rows, the image's SHA-256, the model and options) and
        ``parts/<stem>.csv`` (its particles), and for the images shown in the report
        ``plots/<stem>_overlay.png``, ``plots/<stem>_envelopes.png``; over all images
        ``particles.csv``, ``distribution.csv``, ``summary.csv``, ``analysis.json``,
        ``plots/*.png`` and ``report.html``. ``particles.csv`` has every particle, with
        ``complete_score`` and ``complete`` (the bundled classifier of :mod:`tio2fiji.particles._complete`,
        scored on the label image that was measured). ``summary.csv`` has, per image, a row of all
        particles and a row of the complete ones (``particles_kind`` ``all`` / ``complete``,
        :func:`tio2fiji.report.summary_table`).
    model : "default", path or torch.nn.Module
        The segmentation network (:func:`tio2fiji.models.load_model`); loaded once (per worker).
        Dask workers need a name or a file.
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
        Bootstrap of the size statistics (:func:`tio2fiji.report.bootstrap_ci`); ``seed`` also
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
        Pixel size (metres) of every image: it overrides the file's calibration and burned-in bar,
        as in every command; each image's ``pixel_size_source`` says what it replaced
        (:func:`tio2fiji.io.given_source`). Without it, an image whose file has no calibration gets
        its burned-in field width or scale bar (:func:`tio2fiji.io.calibrate_missing`).
    allow_pixels : bool
        Measure an image that nothing calibrates in pixels; without it such an image fails
        (listed in ``failures``) instead of silently turning nm into pixels.
    tta : bool
        Test-time augmentation (:func:`tio2fiji.predict.segment`): 8 network passes per image.
    scale : {"model", "none"}
        ``"model"``: calibrated images are segmented at the model's pixel size and their particles
        brought back (:func:`tio2fiji.predict.segment`); each image's ``segmentation.scale`` in
        ``analysis.json`` says what was done, and images outside the model's range get a warning.
    device : str, optional
        Where the network runs (:func:`tio2fiji.models.resolve_device`; None = ``"auto"``: the
        first CUDA GPU when there is one). On Dask workers ``auto``/``cuda`` gives each worker one
        GPU in turn.
    workers : int, optional
        Run the images on a local Dask cluster of this many worker processes
        (:func:`tio2fiji.run.open_client`); default: one after another in this process.
    scheduler : str, optional
        Address or scheduler file of a running Dask scheduler whose workers run the images (they
        must see ``out_dir`` and the images at the same paths: a shared file system).
    threads : int, optional
        torch threads per Dask worker (default: cores // workers on its host).
    force : bool
        Analyse every image again; without it the parts of an earlier run into ``out_dir`` made
        from the same image bytes, model and options are kept (``AnalysisResult.skipped``). The
        parts and files of an earlier run's images that are not in this run are always kept, left
        out of this run's tables (``AnalysisResult.kept_other``, ``analysis.json``
        ``run.kept_other_images``).
    size : str, optional
        ImageJ's size filter (``"10-Infinity"``: nm² when calibrated, else pixels; ``"10-500
        pixel"``, :func:`tio2fiji.particles.parse_size`): only these particles are measured, tested
        and summarised; ``options.size`` and each image's ``size`` (its pixel bounds) record it.
    max_panels : int
        Images with their own overlay and envelope panels in the report, evenly spaced over the
        input order (all when there are no more); the report's tables and plots show these
        images, the CSV files every image.

    Returns
    -------
    AnalysisResult

    Raises
    ------
    InputError
        Bad options, a model or complete-particle classifier that cannot be loaded, a scheduler
        that cannot be reached (nothing is analysed then). Errors of single
        images are not raised; they are in ``AnalysisResult.failures``.
    """
    t_start = time.perf_counter()
    images = [Path(p) for p in images]
    methods = tuple(methods)
    _check_options(backend, separate, connectivity, methods, points)
    check_options(threshold=threshold, n_boot=n_boot, seed=seed, n_sim=n_sim, envelope_sims=envelope_sims)
    data_bar_rows = check_option("data_bar_rows", data_bar_rows)
    pixel_size_m = check_option("pixel_size_m", pixel_size_m)
    size = parse_size(size)
    if not images:
        raise InputError("no images given.")
    if workers is not None and scheduler is not None:
        raise InputError("give either workers (a local Dask cluster) or scheduler, not both.")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise InputError(f"workers must be a whole number of 1 or more, not {workers!r}.")
    dask = workers is not None or scheduler is not None
    if dask and not isinstance(model, (str, Path)):
        raise InputError("Dask workers load the model themselves: give it as a name or a file.")
    if not isinstance(max_panels, int) or max_panels < 0:
        raise InputError(f"max_panels must be a whole number of 0 or more, not {max_panels!r}.")
    out_dir = check_output_dir(out_dir, keep=False)  # before the model is loaded or anything computed
    if scheduler is None:  # also checks a GPU asked for on a local cluster
        dev = resolve_device(device)
    with ExitStack() as stack:
        # the workers start (import torch, tio2fiji) while this process loads and exports the model
        starting = stack.enter_context(start_client(workers, scheduler, device, threads,
                                                    preload=("tio2fiji._warm_worker",))) if dask else None
        clf, clf_desc = complete_classifier()
        if isinstance(model, (str, Path)):  # with Dask, this copy describes the model and is exported
            net = load_model(model, device="cpu" if dask else dev)
        else:
            net = model
        model_desc = _model_description(net, model)
        options = {"backend": backend, "separate": separate, "connectivity": connectivity,
                   "methods": list(methods), "points": points,
                   "threshold": threshold if threshold is not None else model_desc["threshold"],
                   "n_boot": n_boot, "seed": seed, "n_sim": n_sim, "envelope_sims": envelope_sims,
                   "complete_only": bool(complete_only), "data_bar_rows": data_bar_rows,
                   "pixel_size_m": pixel_size_m, "allow_pixels": bool(allow_pixels), "tta": bool(tta),
                   "scale": scale, "size": None if size is None else size.text}
        # a kept part must have been made by the same model, classifier, code and numeric options
        numbers = {k: v for k, v in options.items() if k != "envelope_sims"}
        # float16 autocast on CUDA changes the last digits: a CPU part does not stand for a GPU one
        numbers["device"] = dev.type if scheduler is None else str(device or "auto")
        key = hashlib.sha256(json.dumps({"model": _model_identity(net, model_desc), "tio2fiji": __version__,
                                         "classifier": clf_desc["sha256"], **numbers},
                                        sort_keys=True, default=str).encode()).hexdigest()
        # Dask workers may run elsewhere (another cwd): absolute paths of the folder, model and images
        where = str(out_dir.absolute()) if dask else str(out_dir)
        model_ref = "" if not dask else str(Path(model).absolute()) if Path(model).is_file() else str(model)
        job = _Job(where, model_ref, device, backend, separate, int(connectivity),
                   methods, points, threshold, n_boot, seed, n_sim, envelope_sims, bool(report),
                   bool(complete_only), data_bar_rows, pixel_size_m, bool(allow_pixels), key, bool(tta), scale,
                   size)
        client = None
        if dask:  # before the folder is touched: a scheduler that cannot be reached changes nothing
            graph = _graph_for_workers(net, workers, dev if scheduler is None else None)
            client = starting.result()[0]
            if graph is not None:
                stack.enter_context(share(client, "network", (key, graph)))
        names = unique_names(images)
        panels = panel_positions(len(images), max_panels)
        kept, redone, others = set(), [], []

        def keep(stale):  # after the folder is locked: the earlier parts this run can use or must keep
            stems, again, other, files = earlier_parts(out_dir, stale, images, names, key,
                                                       panels if report else set(), force)
            kept.update(stems)
            redone.extend(again)
            others.extend(other)
            return files

        folder = RunFolder(out_dir, "analyze", planned=run_outputs([s for _, s in names], report), inputs=images,
                           keep=keep)
        with folder:
            todo = [(str(p.absolute() if dask else p), n, s, job, i in panels)
                    for i, (p, (n, s)) in enumerate(zip(images, names)) if s not in kept]
            t_images = time.perf_counter()
            outcome = _run_all(todo, net, clf, progress, client)
            stack.close()  # the cluster, before the merge
            t_merge = time.perf_counter()
            res = AnalysisResult(out_dir=out_dir, skipped=[n for n, s in names if s in kept], redone=redone,
                                 kept_other=others, removed=list(folder.removed))
            res.failures = [(str(p), outcome[s][1]) for p, (_, s) in zip(images, names)
                            if s in outcome and outcome[s][0] != "ok"]
            done = [(s, None) for _, s in names if s in kept or outcome.get(s, ("",))[0] == "ok"]
            panel_stems = {names[i][1] for i in panels}
            versions = run_versions(backend if done else None)  # no JVM started for nothing
            res.images, shown = merge_parts(res, out_dir, done, panel_stems, report, complete_only)
            res.seconds = time.perf_counter() - t_start
            # where the time went: set-up (model, resume checks), the images (with a cluster's start), merge
            stages = {"setup": t_images - t_start, "images": t_merge - t_images,
                      "merge": time.perf_counter() - t_merge}  # parts merged, summary plots drawn
            mode = ("serial" if not dask else f"local Dask cluster, {workers} worker(s)" if workers
                    else f"Dask scheduler {scheduler}")
            meta = run_metadata(res.failures, versions=versions, options=options, model=model_desc,
                                complete_classifier=clf_desc, images=res.images, units=UNITS_NOTE,
                                seconds=round(res.seconds, 2),
                                run={"mode": mode, "images": len(images), "analysed": len(todo) - len(res.failures),
                                     "skipped": len(res.skipped), "skipped_images": res.skipped,
                                     "redone_images": res.redone, "kept_other_images": res.kept_other,
                                     "removed_from_earlier_run": len(res.removed),
                                     "failed": len(res.failures), "force": bool(force),
                                     "report_panels": [m["image"] for m in shown["metas"]],
                                     "pooled": shown["pooled"],
                                     "seconds": {k: round(v, 2) for k, v in stages.items()}})
            res.files["analysis.json"] = write_json(out_dir / "analysis.json", meta)
            if report:
                res.report = res.files["report.html"] = rep.write_report(
                    out_dir, shown["summary"], versions, distribution=shown["distribution"],
                    images=shown["metas"], plots=shown["plots"], overlays=shown["overlays"],
                    envelopes=shown["envelopes"], model=model_desc, failures=res.failures,
                    options=options, title=f"tio2fiji analysis of {len(images)} image(s)",
                    scope=shown["note"], pooled=shown["pooled"])
        return res


def _run_all(todo, net, clf, progress, client) -> dict:
    """Every image of ``todo``, here (``client`` None) or on Dask workers: stem -> (status, message)."""
    if client is None:  # the default: this process, no Dask
        steps = ((item, _image_task(*item, net=net, clf=clf), None) for item in todo)
        return _collect(steps, {}, len(todo), progress)
    return _collect(run_tasks(client, _image_task, todo), {}, len(todo), progress)


def _graph_for_workers(net, workers, device):
    """The network as an ONNX graph for CPU workers (:class:`tio2fiji.models.onnx.OnnxUNet`), or
    None: a network ONNX Runtime does not run, or a local cluster on GPUs.

    A worker given the graph runs what this process exported instead of building the network and
    exporting it again; a GPU worker (``device``, or a scheduler's worker that has one) loads the
    model file itself.
    """
    if workers is not None and device is not None and device.type != "cpu":
        return None
    engine = choose_engine(net, "cpu", "auto", False)
    if not engine.startswith("onnx"):
        return None
    return OnnxUNet.from_model(net, int8=engine == "onnx-int8")


def _worker_network(job, device):
    """A worker's network: the graph the run shared when this worker runs on the CPU and it was
    made for this run's model, else the model file loaded here."""
    sent = shared("network")
    if device.type == "cpu" and sent is not None and sent[0] == job.key:
        return sent[1]
    return load_model(job.model, device=device)


def _collect(steps, outcome, total, progress) -> dict:
    for done, (item, result, error) in enumerate(steps, 1):
        if error is not None:  # the task was given up: it killed its workers
            result = ("failed", f"{item[0]}: the Dask workers analysing it died ({type(error).__name__}: "
                                f"{error}); analyse it alone to see why (memory?).")
        if result[0] == "output":
            raise OutputError(result[1])
        outcome[item[2]] = result
        if progress is not None:
            progress(done, total, Path(item[0]).name)
    return outcome


