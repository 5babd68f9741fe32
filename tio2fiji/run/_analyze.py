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
import math
import time
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from .. import report as rep
from ..checks import plausibility_warnings
from ..distribution import envelope_tests, envelopes, test_distribution
from ..errors import InputError, OutputError
from ..imagej import measure_imagej
from ..instances import labels_to_separated_mask
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
from ._options import AnalysisOptions
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
    options: AnalysisOptions  # checked; on Dask workers ``model`` names what they load
    key: str = ""  # the model's identity and the options that change numbers (resume)

    @property
    def size(self) -> SizeFilter | None:
        """ImageJ's size filter (:func:`tio2fiji.particles.parse_size` of ``options.size``)."""
        return parse_size(self.options.size)


def _job(opts, out_dir, key) -> _Job:
    """The run's job; on Dask workers, which may run elsewhere (another cwd), with absolute paths
    of the folder and the model file."""
    if not opts.dask:
        return _Job(out_dir=str(out_dir), options=opts, key=key)
    model = str(Path(opts.model).absolute()) if Path(opts.model).is_file() else str(opts.model)
    return _Job(out_dir=str(out_dir.absolute()), options=replace(opts, model=model), key=key)


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
        The run's options (:class:`tio2fiji.run.AnalysisOptions`), output folder and resume key.
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
    t0, o, size = time.perf_counter(), job.options, job.size  # size: ImageJ's size filter
    out_dir, plots_dir, ps = Path(job.out_dir), Path(job.out_dir) / "plots", None
    image_sha = file_sha256(path) if Path(path).is_file() else None
    # --pixel-size overrides the file's calibration (also a broken tag's), as in every command
    sem = calibrate_missing(read_sem(path, data_bar_rows=o.data_bar_rows, pixel_size_m=o.pixel_size_m),
                            pixel_size_m=o.pixel_size_m, allow_pixels=o.allow_pixels)
    seg = segment(net, sem, threshold=o.threshold, separate=o.separate, connectivity=o.connectivity,
                  tta=o.tta, scale=o.scale)
    labels = np.asarray(seg.labels)
    ps = sem.pixel_size_m
    implausible = plausibility_warnings(np.count_nonzero(seg.mask), np.bincount(labels.ravel())[1:],
                                        labels.shape[1], labels.shape[0], name)
    if seg.info.get("scale", {}).get("warning"):
        implausible.append(f"{name}: {seg.info['scale']['warning']}")
    files = {"mask": write_mask(out_dir / f"{stem}_mask.tif", labels > 0, ps),
             "labels": write_labels(out_dir / f"{stem}_labels.tif", labels, ps)}
    bounds = size.pixel_bounds(ps) if size is not None else None
    measured = labels if o.backend == "native" else labels_to_separated_mask(labels, o.connectivity)
    table = (measure if o.backend == "native" else measure_imagej)(
        measured, pixel_size_m=ps, connectivity=o.connectivity, image_name=name, size=size)
    table, measured_labels, label_of_row = add_complete_columns(table, measured, clf, o.connectivity,
                                                                size_px=bounds)
    points_of, stats_table = labels, table
    if o.complete_only or bounds is not None:  # the measured particles (within --size) that count
        stats_table = table[table["complete"]] if o.complete_only else table
        keep = np.zeros(int(measured_labels.max(initial=0)) + 1, bool)
        keep[label_of_row[table["complete"].to_numpy(bool) | (not o.complete_only)]] = True
        points_of = np.where(keep[measured_labels], measured_labels, 0)
    rows = [test_distribution(points_of, method=m, pixel_size_m=ps, image=name, points=o.points,
                              n_sim=o.n_sim, seed=o.seed, backend=o.backend,
                              connectivity=o.connectivity) for m in o.methods]
    h, w = labels.shape
    env_tests = []  # the G/L tests of the envelope plot: its titles and the report's table
    if o.report and panel:
        files["overlay"] = rep.overlay_image(sem.analysed, labels, plots_dir / f"{stem}_overlay.png")
        env = _envelopes(stats_table, w, h, ps, o.envelope_sims, o.seed) if o.envelope_sims else None
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
        "size": size.describe(ps) if size is not None else None,
        "files": {k: str(v) for k, v in files.items()},
        "seconds": round(time.perf_counter() - t0, 2)}
    summary = summary_table(table, [meta], n_boot=o.n_boot, seed=o.seed, complete_only=o.complete_only)
    part = write_part(out_dir, stem, table, {
        "image": name, "path": str(path), "image_sha256": image_sha, "key": job.key,
        "panel": bool(o.report and panel),
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
        job = _Job(out_dir=tmp, options=AnalysisOptions(model="", device="cpu", n_boot=50, n_sim=19, envelope_sims=3,
                                                         data_bar_rows=0))
        analyze_one(path, "warm.tif", "warm", job, net, clf, panel=True)
    return time.perf_counter() - t0


def _image_task(path, name, stem, job, panel, net=None, clf=None) -> tuple:
    """One image on a worker (or in this process): ``("ok"|"failed"|"output", message)``.

    Errors are returned, not raised, so that Dask retries only a task whose worker died.
    """
    try:
        if net is None:  # on a Dask worker: the network and classifier, loaded once per worker
            dev = resolve_device(worker_device(job.options.device))
            net = worker_cache(("model", job.options.model, job.key, str(dev)), lambda: _worker_network(job, dev))
            clf = worker_cache(("classifier",), complete_classifier)[0]
        analyze_one(Path(path), name, stem, job, net, clf, panel)
        return "ok", ""
    except OutputError as exc:  # the output folder is at fault: the run stops
        return "output", str(exc)
    except Exception as exc:  # noqa: BLE001 - one image must not stop a run (the one failure rule)
        return "failed", failure_message(path, exc)


def analyze_images(images, out_dir, options=None, *, progress=None, **fields) -> AnalysisResult:
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
    options : AnalysisOptions, optional
        The run's options (:class:`tio2fiji.run.AnalysisOptions`: model, backend, tests, Dask,
        resume, ...); default: its defaults.
    progress : callable, optional
        ``progress(done, total, name)`` after each image (analysed or failed).
    **fields
        Any option of :class:`~tio2fiji.run.AnalysisOptions` by name, replacing ``options``'s
        (``analyze_images(images, out, model="default", workers=4)``).

    Returns
    -------
    AnalysisResult

    Raises
    ------
    InputError
        Bad or unknown options, a model or complete-particle classifier that cannot be loaded, a
        scheduler that cannot be reached (nothing is analysed then). Errors of single images are
        not raised; they are in ``AnalysisResult.failures``.
    """
    t_start = time.perf_counter()
    opts = AnalysisOptions.given(options, **fields).checked()
    images = [Path(p) for p in images]
    if not images:
        raise InputError("no images given.")
    out_dir = check_output_dir(out_dir, keep=False)  # before the model is loaded or anything computed
    if opts.scheduler is None:  # also checks a GPU asked for on a local cluster
        dev = resolve_device(opts.device)
    with ExitStack() as stack:
        # the workers start (import torch, tio2fiji) while this process loads and exports the model
        starting = stack.enter_context(start_client(opts.workers, opts.scheduler, opts.device, opts.threads,
                                                    preload=("tio2fiji._warm_worker",))) if opts.dask else None
        clf, clf_desc = complete_classifier()
        model = opts.model
        if isinstance(model, (str, Path)):  # with Dask, this copy describes the model and is exported
            net = load_model(model, device="cpu" if opts.dask else dev)
        else:
            net = model
        model_desc = _model_description(net, model)
        # a kept part must have been made by the same model, classifier, code and numeric options
        key = opts.resume_key(_model_identity(net, model_desc), clf_desc["sha256"], model_desc["threshold"],
                              dev.type if opts.scheduler is None else str(opts.device or "auto"))
        job, client = _job(opts, out_dir, key), None
        if opts.dask:  # before the folder is touched: a scheduler that cannot be reached changes nothing
            graph = _graph_for_workers(net, opts.workers, dev if opts.scheduler is None else None)
            client = starting.result()[0]
            if graph is not None:
                stack.enter_context(share(client, "network", (key, graph)))
        names = unique_names(images)
        panels = panel_positions(len(images), opts.max_panels)
        earlier = _Earlier(out_dir, images, names, key, panels if opts.report else set(), opts.force)
        folder = RunFolder(out_dir, "analyze", planned=run_outputs([s for _, s in names], opts.report),
                           inputs=images, keep=earlier)
        with folder:
            todo = [(str(p.absolute() if opts.dask else p), n, s, job, i in panels)
                    for i, (p, (n, s)) in enumerate(zip(images, names)) if s not in earlier.kept]
            t_images = time.perf_counter()
            outcome = _run_all(todo, net, clf, progress, client)
            stack.close()  # the cluster, before the merge
            t_merge = time.perf_counter()
            res = AnalysisResult(out_dir=out_dir, skipped=[n for n, s in names if s in earlier.kept],
                                 redone=earlier.redone, kept_other=earlier.others, removed=list(folder.removed))
            res.failures = [(str(p), outcome[s][1]) for p, (_, s) in zip(images, names)
                            if s in outcome and outcome[s][0] != "ok"]
            done = [(s, None) for _, s in names if s in earlier.kept or outcome.get(s, ("",))[0] == "ok"]
            versions = run_versions(opts.backend if done else None)  # no JVM started for nothing
            res.images, shown = merge_parts(res, out_dir, done, {names[i][1] for i in panels}, opts.report,
                                            opts.complete_only)
            res.seconds = time.perf_counter() - t_start
            # where the time went: set-up (model, resume checks), the images (with a cluster's start), merge
            stages = {"setup": t_images - t_start, "images": t_merge - t_images,
                      "merge": time.perf_counter() - t_merge}  # parts merged, summary plots drawn
            _write_run(res, shown, opts, versions, model_desc, clf_desc, stages, analysed=len(todo) - len(res.failures),
                       n_images=len(images))
        return res


class _Earlier:
    """The earlier run's parts this run keeps: ``RunFolder``'s ``keep``, called once the folder is
    locked (:func:`tio2fiji.run.earlier_parts`)."""

    def __init__(self, out_dir, images, names, key, panels, force):
        self.args = (images, names, key, panels, force)
        self.out_dir, self.kept, self.redone, self.others = out_dir, set(), [], []

    def __call__(self, stale) -> list:
        stems, self.redone, self.others, files = earlier_parts(self.out_dir, stale, *self.args)
        self.kept = set(stems)
        return files


def _write_run(res, shown, opts, versions, model_desc, clf_desc, stages, analysed, n_images):
    """``analysis.json`` and, with ``opts.report``, ``report.html``: their paths into ``res``."""
    options = opts.recorded(model_desc["threshold"])
    mode = ("serial" if not opts.dask else f"local Dask cluster, {opts.workers} worker(s)" if opts.workers
            else f"Dask scheduler {opts.scheduler}")
    meta = run_metadata(res.failures, versions=versions, options=options, model=model_desc,
                        complete_classifier=clf_desc, images=res.images, units=UNITS_NOTE,
                        seconds=round(res.seconds, 2),
                        run={"mode": mode, "images": n_images, "analysed": analysed,
                             "skipped": len(res.skipped), "skipped_images": res.skipped,
                             "redone_images": res.redone, "kept_other_images": res.kept_other,
                             "removed_from_earlier_run": len(res.removed),
                             "failed": len(res.failures), "force": opts.force,
                             "report_panels": [m["image"] for m in shown["metas"]],
                             "pooled": shown["pooled"],
                             "seconds": {k: round(v, 2) for k, v in stages.items()}})
    res.files["analysis.json"] = write_json(res.out_dir / "analysis.json", meta)
    if opts.report:
        res.report = res.files["report.html"] = rep.write_report(
            res.out_dir, shown["summary"], versions, distribution=shown["distribution"],
            images=shown["metas"], plots=shown["plots"], overlays=shown["overlays"],
            envelopes=shown["envelopes"], model=model_desc, failures=res.failures,
            options=options, title=f"tio2fiji analysis of {n_images} image(s)",
            scope=shown["note"], pooled=shown["pooled"])


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
    return load_model(job.options.model, device=device)


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


