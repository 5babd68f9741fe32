"""The one per-file runner: every command that works on many files goes through :func:`run_files`.

It gives each input a unique name and output stem (:func:`unique_names`), keeps going when one file
fails (one failure rule: a :class:`~tio2fiji.errors.Tio2FijiError` is recorded with its message, any
other exception with its type, and logged with its traceback), reports progress as
``progress(done, total, name)``, and builds the run's metadata JSON (:func:`run_metadata`: options,
inputs, software versions, failures). ``measure``, ``distribution``, ``segment`` and ``analyze`` all
use it; an output that cannot be written (:class:`~tio2fiji.errors.OutputError`) stops the batch,
and a run into an ``out_dir`` goes through :func:`run_folder` (lock, ``run_manifest.json``, the
earlier run's files replaced). Measured tables get their ``complete_score`` and ``complete`` columns from
:func:`tio2fiji.particles.add_complete_columns`.
"""

from __future__ import annotations

import logging
import platform
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile

from .. import __version__
from ..checks import check_option, check_options, plausibility_warnings, warn_result
from ..distribution import distribution_table, test_distribution
from ..errors import InputError, OutputError, Tio2FijiError
from ..imagej import BACKENDS, imagej_version, measure_imagej
from ..instances import CONNECTIVITY, connected_components
from ..io import (
    MASK_SUFFIX,
    RunFolder,
    atomic_write,
    check_output_dir,
    choose_calibration,
    find_image_for_mask,
    given_source,
    mask_for_image,
    read_mask_or_labels,
    read_pixel_size,
    read_sem,
    write_csv,
    write_json,
    write_labels,
    write_mask,
)
from ..models import resolve_device
from ..models.checkpoint import load_model
from ..models.settings import as_model
from ..particles import (
    add_complete_columns,
    complete_classifier,
    measure,
    mixed_units,
    parse_size,
    write_roi_zip,
)
from ..predict import segment

__all__ = ["BatchResult", "MaskInput", "run_files", "unique_names", "failure_message",
           "run_metadata", "run_versions", "software_versions", "load_mask_input", "measure_files",
           "distribution_files", "segment_files", "concat_tables", "run_folder", "segment_outputs"]

log = logging.getLogger(__name__)

#: What the JSON side files say about units.
UNITS_NOTE = ("lengths in the unit of each image (nm when calibrated, else pixel); areas in unit^2; "
              "FeretX/FeretY in pixels, as ImageJ")


@dataclass
class MaskInput:
    """A mask (bool) or label image (int) ready to analyse: the analysed area only, calibrated."""

    name: str
    mask: np.ndarray
    pixel_size_m: float | None
    calibration_source: str
    image_path: Path | None = None
    data_bar_rows: int = 0
    warnings: list = field(default_factory=list)
    size: dict | None = None  # the size filter as applied (SizeFilter.describe)


@dataclass
class BatchResult:
    """What :func:`run_files` collected.

    Attributes
    ----------
    tables : list of pandas.DataFrame
        One per file that succeeded, in input order.
    inputs : list
        What each successful step returned beside its table (e.g. a :class:`MaskInput` or the
        written paths), in the same order.
    failures : list of (str, str)
        ``(path, message)`` of the files that failed.
    files : dict
        Name -> path of the run-level files written (CSV, JSON).
    """

    tables: list = field(default_factory=list)
    inputs: list = field(default_factory=list)
    failures: list = field(default_factory=list)
    files: dict = field(default_factory=dict)


# packages whose versions the report and the JSON side files record (distribution names)
_PACKAGES = ("numpy", "pandas", "scipy", "scikit-image", "numba", "tifffile", "matplotlib", "torch",
             "torchvision", "segmentation-models-pytorch", "JPype1", "scyjava")


def software_versions(packages=_PACKAGES) -> dict:
    """Versions of tio2fiji, Python and the packages that produce the numbers.

    Read from the installed distributions' metadata, so nothing heavy (torch) is imported.

    Parameters
    ----------
    packages : sequence of str
        Distribution names; ones that are not installed are left out.

    Returns
    -------
    dict
        ``{"tio2fiji": ..., "python": ..., "numpy": ..., ...}``.
    """
    out = {"tio2fiji": __version__, "python": platform.python_version()}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out




def unique_names(paths) -> list:
    """Image names for the tables and output-file stems, both unique within one run.

    The name is the file name; files of the same name in different folders are told apart by
    the shortest path ending that differs (``a/x.tif``, ``b/x.tif``; ``p/a/x.tif``,
    ``q/a/x.tif``), and their output stems get ``_2``, ``_3``, ... (a suffix no other input's stem
    has, compared without case), so that no output of one input overwrites another's.

    Parameters
    ----------
    paths : sequence of Path

    Returns
    -------
    list of (str, str)
        ``(name, stem)`` per path, in order.
    """
    paths = [Path(p) for p in paths]
    return list(zip(_distinct_names(paths), _distinct_stems(paths)))


def _distinct_names(paths) -> list:
    """File names, lengthened by as many parent folders as it takes to tell them apart."""
    names = [p.name for p in paths]
    depth = 1
    while True:
        count = Counter(names)
        dup = {n for n, k in count.items() if k > 1}
        if not dup or all(depth >= len(p.parts) for n, p in zip(names, paths) if n in dup):
            break
        depth += 1
        names = [str(Path(*p.parts[-depth:])) if n in dup else n for n, p in zip(names, paths)]
    seen: Counter = Counter()
    for j, n in enumerate(names):  # the same file given twice
        seen[n] += 1
        if seen[n] > 1:
            names[j] = f"{n} #{seen[n]}"
    return names


def _distinct_stems(paths) -> list:
    """Output stems: the file's stem, else ``<stem>_2``, ``_3``, ... not used by any other input.

    Compared without case, so that no two stems name one file on a case-insensitive disk.
    """
    taken, stems = set(), [None] * len(paths)
    for j, p in enumerate(paths):  # a file's own stem first: x_2.tif keeps x_2
        if p.stem.casefold() not in taken:
            taken.add(p.stem.casefold())
            stems[j] = p.stem
    for j, p in enumerate(paths):
        k = 1
        while stems[j] is None:
            k += 1
            cand = f"{p.stem}_{k}"
            if cand.casefold() not in taken:
                taken.add(cand.casefold())
                stems[j] = cand
    return stems


def failure_message(path, exc: BaseException) -> str:
    """The message recorded for a file that failed (the one failure rule).

    tio2fiji's own errors already name the file and say what to do; anything else is unexpected:
    its type and text are kept and the traceback is logged at WARNING.
    """
    if isinstance(exc, Tio2FijiError):  # a message from deep inside may not know the file
        text = str(exc)
        return text if str(path) in text or Path(path).name in text else f"{path}: {text}"
    log.warning("%s failed unexpectedly", path, exc_info=exc)
    return f"{path}: {type(exc).__name__}: {exc}"


def run_files(paths, step, progress=None) -> BatchResult:
    """Apply ``step`` to every file; one failing file does not stop the others.

    Parameters
    ----------
    paths : sequence of path
    step : callable
        ``step(path, name, stem) -> (table, info)`` with the unique ``name`` and output ``stem`` of
        :func:`unique_names`; ``table`` goes to ``tables``, ``info`` to ``inputs``.
    progress : callable, optional
        ``progress(done, total, name)`` after each file (done or failed).

    Returns
    -------
    BatchResult

    Raises
    ------
    OutputError
        An output cannot be written (disk full, read-only, ...): the batch stops, since every
        other file would fail the same way.
    """
    paths = [Path(p) for p in paths]
    result = BatchResult()
    for i, (path, (name, stem)) in enumerate(zip(paths, unique_names(paths)), 1):
        try:
            table, info = step(path, name, stem)
            result.tables.append(table)
            result.inputs.append(info)
        except OutputError:  # the output folder, not this file, is at fault: stop the batch
            raise
        except Exception as exc:  # one file must not stop a batch; the message says what failed
            result.failures.append((str(path), failure_message(path, exc)))
        if progress is not None:
            progress(i, len(paths), path.name)
    return result


def run_versions(backend=None) -> dict:
    """:func:`software_versions`, plus the running ImageJ's version for the ``"imagej"`` backend."""
    versions = software_versions()
    if backend == "imagej":
        versions["imagej"] = imagej_version()
    return versions


def run_metadata(failures=(), backend=None, versions=None, **fields) -> dict:
    """The run's metadata JSON: ``fields`` (options, inputs, ...), then versions and failures.

    ``versions`` defaults to :func:`run_versions` of ``backend``; ``backend`` also goes first in
    the document when given.
    """
    doc = dict(fields)
    if backend is not None:
        doc = {"backend": backend, **doc}
    doc["versions"] = run_versions(backend) if versions is None else versions
    doc["failures"] = [{"file": str(p), "error": m} for p, m in failures]
    return doc


def load_mask_input(mask_path, images_dir=None, pixel_size_m=None, threshold=None) -> MaskInput:
    """Read a mask and find its calibration and data bar.

    The pixel size is ``pixel_size_m`` when given (``calibration_source``:
    :func:`tio2fiji.io.given_source`, the files' value it replaced); else the stronger of the mask file's own
    metadata and the paired SEM image's in ``images_dir`` (same name without ``_m``/``_mask``/...):
    :func:`tio2fiji.io.choose_calibration`, so the microscope's tag on the image beats anything on
    the mask. When a paired image has a data bar and the mask covers the whole frame, only the
    analysed area is kept.
    """
    mask_path = Path(mask_path)
    threshold = check_option("gray_threshold", threshold, "threshold")
    pixel_size_m = check_option("pixel_size_m", pixel_size_m)
    mask = read_mask_or_labels(mask_path, threshold=threshold)
    try:
        ps, source = read_pixel_size(mask_path)
        mask_error = None
    except InputError as exc:  # a broken microscope tag on the mask: fatal only if nothing else calibrates
        ps, source = read_pixel_size(mask_path, strict=False)
        mask_error = exc
    image_path, bar = None, 0
    if images_dir is not None:
        image_path = find_image_for_mask(mask_path, Path(images_dir))
        if image_path is None:
            raise InputError(
                f"{mask_path}: no SEM image with the same name in {images_dir} (looked for "
                f"{MASK_SUFFIX.sub('', mask_path.stem)}.tif/.png/...). Give --pixel-size instead, "
                f"or put the image there."
            )
        sem = read_sem(image_path, pixel_size_m=pixel_size_m)
        mask = mask_for_image(mask, sem, mask_name=str(mask_path))
        bar = sem.data_bar_rows
        ps, source = choose_calibration((sem.pixel_size_m, sem.pixel_size_source), (ps, source),
                                        image_path.name, mask_path.name)
    if pixel_size_m is not None:  # the user's value overrides the files' (given_source names which)
        source = sem.pixel_size_source if image_path is not None else \
            given_source(pixel_size_m, ps, broken=ps is None and mask_error is not None)
        ps = float(pixel_size_m)
    if mask_error is not None and ps is None:
        raise mask_error
    return MaskInput(name=mask_path.name, mask=mask, pixel_size_m=ps, calibration_source=source,
                     image_path=image_path, data_bar_rows=bar)


def run_folder(out_dir, command, planned, inputs=()):
    """The :class:`tio2fiji.io.RunFolder` of a run into ``out_dir``; nothing when it is None."""
    if out_dir is None:
        return nullcontext()
    return RunFolder(out_dir, command, planned=planned, inputs=[Path(p) for p in inputs])


def segment_outputs(stems, rois=False, probability=False) -> list:
    """The files :func:`segment_files` may write for images of these output stems."""
    kinds = ["mask.tif", "labels.tif", "scores.csv"] + ["rois.zip"] * bool(rois) \
        + ["prob.tif"] * bool(probability)
    return [f"{s}_{k}" for s in stems for k in kinds] + ["segment.json"]


def _check_backend(backend):
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}: use 'native' or 'imagej'.")


def _mask_step(images_dir, pixel_size_m, threshold, measure_one, connectivity=CONNECTIVITY):
    def step(path, name, stem):
        item = load_mask_input(path, images_dir=images_dir, pixel_size_m=pixel_size_m,
                               threshold=threshold)
        item.name = name
        labels = item.mask if item.mask.dtype != bool else connected_components(item.mask, connectivity)
        item.warnings += plausibility_warnings(np.count_nonzero(item.mask), np.bincount(labels.ravel())[1:],
                                               item.mask.shape[1], item.mask.shape[0], name)
        return measure_one(item), item
    return step


def _image_meta(res, **extra):
    return [{"name": it.name, **{k: f(it, t) for k, f in extra.items()},
             "pixel_size_m": it.pixel_size_m, "calibration_source": it.calibration_source,
             "data_bar_rows": it.data_bar_rows, "warnings": list(it.warnings)}
            for it, t in zip(res.inputs, res.tables)]


def measure_files(mask_paths, out_dir=None, backend="native", images_dir=None, pixel_size_m=None,
                  threshold=None, connectivity=CONNECTIVITY, include_holes=False, exclude_edges=False,
                  complete_only=False, progress=None, size=None) -> BatchResult:
    """Measure every particle of every mask as ImageJ's *Analyze Particles* does.

    Every particle also gets ``complete_score`` and ``complete`` (:func:`add_complete_columns`,
    the bundled classifier of :mod:`tio2fiji.particles._complete`), scored on the particles as measured (the
    mask's labels with the same connectivity and holes).

    Parameters
    ----------
    mask_paths : sequence of path
        Masks or label images.
    out_dir : path, optional
        Gets ``particles.csv`` (all particles, with ``complete_score`` and ``complete``) and
        ``particles.json`` (options, the classifier, unit, calibration source and particle and
        complete counts per image, versions, failures) when at least one file succeeded. Every
        row says its unit (``unit``: nm or pixel); when the files are in different units a
        :class:`~tio2fiji.checks.ResultWarning` says so (``warning:`` on the command line) and
        the images in pixels carry it in ``particles.json`` (:func:`tio2fiji.particles.mixed_units`).
    backend : {"native", "imagej"}
    images_dir, pixel_size_m, threshold
        See :func:`load_mask_input`.
    connectivity, include_holes, exclude_edges
        Passed to the measurement (ImageJ's Analyze Particles options).
    complete_only : bool
        Keep only the complete particles in the tables and ``particles.csv`` (recorded in
        ``particles.json`` as ``options.complete_only``; the per-image ``particles`` count is then
        that of complete particles, and each row keeps the particle number it has among all).
    progress : callable, optional
        ``progress(done, total, name)`` after each file.
    size : str, optional
        ImageJ's size filter (:func:`tio2fiji.particles.parse_size`), in ``particles.json``.

    Returns
    -------
    BatchResult
        ``tables`` holds one DataFrame per measured file, ``inputs`` its :class:`MaskInput`.

    Raises
    ------
    InputError
        Unknown backend, or the complete-particle classifier cannot be read (nothing is measured).
    """
    _check_backend(backend)
    size = parse_size(size)  # before anything is read
    clf, clf_desc = complete_classifier()

    def measure_one(item):
        if backend == "imagej":
            if item.mask.dtype != bool:
                raise InputError(f"{item.name}: a label image; the imagej backend measures binary masks "
                                 f"(ImageJ would merge touching labels). Use --backend native.")
            fn = measure_imagej
        else:
            fn = measure
        item.size = size.describe(item.pixel_size_m) if size is not None else None
        table = fn(item.mask, pixel_size_m=item.pixel_size_m, connectivity=connectivity, size=size,
                   include_holes=include_holes, exclude_edges=exclude_edges, image_name=item.name)
        bounds = size.pixel_bounds(item.pixel_size_m) if size is not None else None
        table = add_complete_columns(table, item.mask, clf, connectivity, include_holes, exclude_edges, bounds)[0]
        if complete_only:  # ImageJ's particle numbers stay, so rows can be found in the mask
            table = table[table["complete"]].reset_index(drop=True)
        return table

    mask_paths = [Path(p) for p in mask_paths]
    with run_folder(out_dir, "measure", ["particles.csv", "particles.json"], mask_paths):
        res = run_files(mask_paths, _mask_step(images_dir, pixel_size_m, threshold, measure_one,
                                               int(connectivity)), progress)
        _write_measure(res, out_dir, backend, connectivity, include_holes, exclude_edges,
                       complete_only, clf_desc, size)
    return res


def _unit(item) -> str:  # the unit of a MaskInput's lengths (its rows' ``unit`` column)
    return "nm" if item.pixel_size_m else "pixel"


def _write_measure(res, out_dir, backend, connectivity, include_holes, exclude_edges, complete_only,
                   clf_desc, size=None):
    """``particles.csv`` and ``particles.json`` of :func:`measure_files`."""
    mixed = mixed_units(_unit(it) for it in res.inputs)
    if mixed:
        warn_result(mixed)
        for it in res.inputs:
            if _unit(it) == "pixel":
                it.warnings.append(mixed)
    if out_dir is not None and res.tables:
        out_dir = Path(out_dir)
        res.files["particles.csv"] = write_csv(out_dir / "particles.csv", concat_tables(res.tables))
        options = {"connectivity": int(connectivity),
                   "include_holes": bool(include_holes) or int(connectivity) == 4,
                   "exclude_edges": bool(exclude_edges), "complete_only": bool(complete_only),
                   "size": None if size is None else size.text}
        images = _image_meta(res, unit=lambda it, t: _unit(it), size=lambda it, t: it.size,
                             particles=lambda it, t: len(t),
                             complete_particles=lambda it, t: int(t["complete"].sum()))
        res.files["particles.json"] = write_json(out_dir / "particles.json", run_metadata(
            res.failures, backend=backend, options=options, complete_classifier=clf_desc,
            images=images, units=UNITS_NOTE))


def distribution_files(mask_paths, out_dir=None, methods=("clark-evans",), backend="native",
                       images_dir=None, pixel_size_m=None, threshold=None, progress=None,
                       connectivity=CONNECTIVITY, **options) -> BatchResult:
    """Spatial-distribution tests (:func:`tio2fiji.distribution.test_distribution`) per mask.

    Each mask is reduced to its analysed area first (see :func:`load_mask_input`), so the window of
    the tests is the micrograph without its data bar. ``connectivity`` (4 or 8, default 4 as
    :func:`measure_files`) makes a binary mask's particles for centroid points; it and
    ``options`` go to ``test_distribution`` and are recorded in ``distribution.json``.
    ``tables`` holds one DataFrame per file with one row per method. With ``out_dir``,
    ``distribution.csv`` and ``distribution.json`` are written there.
    """
    _check_backend(backend)
    methods = tuple(methods)
    check_options(**{k: v for k, v in options.items() if k in ("alpha", "n_sim", "seed")})
    if connectivity not in (4, 8):
        raise InputError(f"connectivity must be 4 or 8, not {connectivity!r}.")
    connectivity = int(connectivity)

    def test_one(item):
        return distribution_table([test_distribution(item.mask, method=m, pixel_size_m=item.pixel_size_m,
                                                     image=item.name, backend=backend,
                                                     connectivity=connectivity, **options)
                                   for m in methods])

    mask_paths = [Path(p) for p in mask_paths]
    with run_folder(out_dir, "distribution", ["distribution.csv", "distribution.json"], mask_paths):
        res = run_files(mask_paths, _mask_step(images_dir, pixel_size_m, threshold, test_one,
                                               connectivity), progress)
        if out_dir is not None and res.tables:
            out_dir = Path(out_dir)
            res.files["distribution.csv"] = write_csv(out_dir / "distribution.csv",
                                                      concat_tables(res.tables))
            res.files["distribution.json"] = write_json(out_dir / "distribution.json", run_metadata(
                res.failures, backend=backend, methods=list(methods), connectivity=connectivity,
                **options,
                images=_image_meta(res)))
    return res


def concat_tables(tables) -> pd.DataFrame:
    """Concatenate per-image tables, keeping the columns of an empty table."""
    tables = list(tables)
    if not tables:
        return pd.DataFrame()
    non_empty = [t for t in tables if len(t)]
    return pd.concat(non_empty, ignore_index=True) if non_empty else tables[0].iloc[0:0].copy()


def segment_files(image_paths, out_dir, model="default", separate="auto", threshold=None,
                  mode="blend", overlap=64, batch_size=4, data_bar_rows=None,
                  connectivity=CONNECTIVITY, rois=False, probability=False, progress=None,
                  device=None, tta: bool = False, scale: str = "model") -> BatchResult:
    """Segment SEM images and write each one's particles.

    For every image (output stem ``<stem>``, unique within the run, see :func:`unique_names`):
    ``<stem>_mask.tif`` (0/255: the particles, ``labels > 0``, touching particles separated by
    one-pixel background lines), ``<stem>_labels.tif`` (uint16/32 label image, ImageJ
    calibration), ``<stem>_scores.csv`` (label, area in pixels, score), optionally
    ``<stem>_rois.zip`` (ImageJ ROI set) and ``<stem>_prob.tif`` (float32 probability map); and
    ``segment.json`` (options, model, inputs, versions, failures). All cover the analysed area
    (the data bar removed), all written atomically.

    Parameters
    ----------
    image_paths : sequence of path
    out_dir : path
    model : str, path or torch.nn.Module
        ``"default"``, a model file or checkpoint (U-Net or Mask R-CNN), or a loaded network.
    separate, threshold, mode, overlap, batch_size, data_bar_rows, connectivity, tta, scale
        As :func:`tio2fiji.predict.segment`.
    rois, probability : bool
        Also write the ROI zip / the probability map.
    progress : callable, optional
        ``progress(done, total, name)`` after each image.
    device : str, optional
        Where a model given by name or file runs (:func:`tio2fiji.models.resolve_device`:
        ``"auto"``/None = the first CUDA GPU when there is one, ``"cpu"``, ``"cuda[:N]"``).

    Returns
    -------
    BatchResult
        ``tables``: one DataFrame per image (``image, label, area_px, score``); ``inputs``: the
        written paths per image (dict); ``failures``: (path, message).
    """
    check_options(threshold=threshold, overlap=overlap, batch_size=batch_size, data_bar_rows=data_bar_rows)
    out_dir = check_output_dir(out_dir, keep=False)  # before the model is loaded or anything computed
    image_paths = [Path(p) for p in image_paths]
    net = load_model(model, device=resolve_device(device)) if isinstance(model, (str, Path)) else as_model(model)

    def step(path, name, stem):
        sem = read_sem(path, data_bar_rows=data_bar_rows)
        seg = segment(net, sem, threshold=threshold, mode=mode, overlap=overlap,
                      batch_size=batch_size, separate=separate, connectivity=connectivity, tta=tta,
                      scale=scale)
        written = {"mask": write_mask(out_dir / f"{stem}_mask.tif", seg.labels > 0, sem.pixel_size_m),
                   "labels": write_labels(out_dir / f"{stem}_labels.tif", seg.labels, sem.pixel_size_m)}
        n = int(seg.labels.max())
        area = np.bincount(seg.labels.ravel(), minlength=n + 1)[1:]
        table = pd.DataFrame({"image": stem, "label": np.arange(1, n + 1), "area_px": area,
                              "score": seg.scores})
        written["scores"] = write_csv(out_dir / f"{stem}_scores.csv", table)
        if rois:
            written["rois"] = write_roi_zip(seg.labels, out_dir / f"{stem}_rois.zip")
        if probability:
            written["probability"] = atomic_write(
                out_dir / f"{stem}_prob.tif",
                lambda p: tifffile.imwrite(p, seg.probability.astype(np.float32), imagej=True))
        info = {"image": name, "stem": stem, "path": str(path), "pixel_size_m": sem.pixel_size_m,
                "pixel_size_source": sem.pixel_size_source, "data_bar_rows": int(sem.data_bar_rows),
                "particles": n, "segmentation": dict(seg.info),
                "warnings": plausibility_warnings(np.count_nonzero(seg.mask), area, *seg.labels.shape[::-1],
                                                  name),
                "files": {k: str(v) for k, v in written.items()}}
        return table, info

    options = {"model": str(model) if isinstance(model, (str, Path)) else type(net.net).__name__,
               "separate": separate, "threshold": threshold, "mode": mode, "overlap": overlap,
               "connectivity": connectivity, "data_bar_rows": data_bar_rows, "tta": bool(tta), "scale": scale}
    planned = segment_outputs([s for _, s in unique_names(image_paths)], rois, probability)
    with RunFolder(out_dir, "segment", planned=planned, inputs=image_paths):
        res = run_files(image_paths, step, progress)
        res.files["segment.json"] = write_json(out_dir / "segment.json", run_metadata(
            res.failures, options=options, images=res.inputs))
    return res
