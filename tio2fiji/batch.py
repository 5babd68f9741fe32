"""Running one analysis step over many files.

These functions pair masks with their SEM images (for calibration and the data bar), keep going
when one file fails, and collect the failures for the caller to report.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError, Tio2FijiError
from .io import mask_for_image, read_mask_or_labels, read_pixel_size, read_sem

log = logging.getLogger(__name__)

_MASK_SUFFIX = re.compile(r"(_m|_cm|_mask|_masks|_labels|_label|_seg)$", re.IGNORECASE)
IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")


@dataclass
class MaskInput:
    """A mask (bool) or label image (int) ready to analyse: the analysed area only, calibrated."""

    name: str
    mask: np.ndarray
    pixel_size_m: float | None
    calibration_source: str
    image_path: Path | None = None
    data_bar_rows: int = 0


@dataclass
class BatchResult:
    """Per-file results of a batch step and the files that failed, with their errors."""

    tables: list = field(default_factory=list)
    inputs: list = field(default_factory=list)
    failures: list = field(default_factory=list)  # (path, message)


def find_image_for_mask(mask_path: Path, images_dir: Path) -> Path | None:
    """The SEM image in ``images_dir`` whose name is the mask's without a mask suffix (``_m``...)."""
    stem = _MASK_SUFFIX.sub("", Path(mask_path).stem)
    for suffix in IMAGE_SUFFIXES:
        for cand in (images_dir / f"{stem}{suffix}", images_dir / f"{stem}{suffix.upper()}"):
            if cand.is_file():
                return cand
    return None


def load_mask_input(mask_path, images_dir=None, pixel_size_m=None, threshold=None) -> MaskInput:
    """Read a mask and find its calibration and data bar.

    The pixel size comes from, in order: ``pixel_size_m``; the mask file's own metadata; the paired
    SEM image in ``images_dir`` (same name without ``_m``/``_mask``/...). When a paired image has a
    data bar and the mask covers the whole frame, only the analysed area is kept.
    """
    mask_path = Path(mask_path)
    mask = read_mask_or_labels(mask_path, threshold=threshold)
    ps, source = read_pixel_size(mask_path)
    image_path, bar = None, 0
    if images_dir is not None:
        image_path = find_image_for_mask(mask_path, Path(images_dir))
        if image_path is None:
            raise InputError(
                f"{mask_path}: no SEM image with the same name in {images_dir} (looked for "
                f"{_MASK_SUFFIX.sub('', mask_path.stem)}.tif/.png/...). Give --pixel-size instead, "
                f"or put the image there."
            )
        sem = read_sem(image_path)
        mask = mask_for_image(mask, sem, mask_name=str(mask_path))
        bar = sem.data_bar_rows
        if ps is None:
            ps, source = sem.pixel_size_m, f"{sem.pixel_size_source} of {image_path.name}"
    if pixel_size_m is not None:
        ps, source = float(pixel_size_m), "given"
    return MaskInput(name=mask_path.name, mask=mask, pixel_size_m=ps, calibration_source=source,
                     image_path=image_path, data_bar_rows=bar)


def run_over_masks(mask_paths, step, images_dir=None, pixel_size_m=None, threshold=None,
                   progress=None) -> BatchResult:
    """Apply ``step(item) -> DataFrame`` to every mask; one failing file does not stop the others.

    ``item`` is the :class:`MaskInput` of :func:`load_mask_input`. ``progress(done, total, name)``
    is called after each file.
    """
    result = BatchResult()
    total = len(mask_paths)
    for i, path in enumerate(mask_paths, 1):
        try:
            item = load_mask_input(path, images_dir=images_dir, pixel_size_m=pixel_size_m,
                                   threshold=threshold)
            result.tables.append(step(item))
            result.inputs.append(item)
        except Tio2FijiError as exc:
            log.debug("%s failed: %s", path, exc)
            result.failures.append((str(path), str(exc)))
        if progress is not None:
            progress(i, total, Path(path).name)
    return result


def measure_files(mask_paths, backend="native", images_dir=None, pixel_size_m=None, threshold=None,
                  connectivity=8, include_holes=False, exclude_edges=False, progress=None) -> BatchResult:
    """Measure every particle of every mask (see :func:`run_over_masks`).

    Parameters
    ----------
    mask_paths : sequence of path
    backend : {"native", "imagej"}
    images_dir, pixel_size_m, threshold
        See :func:`load_mask_input`.
    connectivity, include_holes, exclude_edges
        Passed to the measurement (ImageJ's Analyze Particles options).
    progress : callable, optional
        Called as ``progress(done, total, name)`` after each file.

    Returns
    -------
    BatchResult
        ``tables`` holds one DataFrame per measured file, ``failures`` (path, message) pairs.
    """
    if backend == "native":
        from .particles import measure as _measure
    elif backend == "imagej":
        from .imagej import measure_imagej as _measure
    else:
        raise InputError(f"unknown backend {backend!r}: use 'native' or 'imagej'.")

    def step(item):
        if backend == "imagej" and item.mask.dtype != bool:
            raise InputError(f"{item.name}: a label image; the imagej backend measures binary masks "
                             f"(ImageJ would merge touching labels). Use --backend native.")
        return _measure(item.mask, pixel_size=item.pixel_size_m, connectivity=connectivity,
                        include_holes=include_holes, exclude_edges=exclude_edges, image_name=item.name)

    return run_over_masks(mask_paths, step, images_dir=images_dir, pixel_size_m=pixel_size_m,
                          threshold=threshold, progress=progress)


def distribution_files(mask_paths, methods=("clark-evans",), backend="native", images_dir=None,
                       pixel_size_m=None, threshold=None, progress=None, **options) -> BatchResult:
    """Spatial-distribution tests (:func:`tio2fiji.distribution.test_distribution`) per mask.

    Each mask is reduced to its analysed area first (see :func:`load_mask_input`), so the window of
    the tests is the micrograph without its data bar. ``options`` go to ``test_distribution``.
    ``tables`` holds one DataFrame per file with one row per method.
    """
    from .distribution import distribution_table
    from .distribution import test_distribution as _test

    def step(item):
        return distribution_table([_test(item.mask, method=m, pixel_size=item.pixel_size_m, image=item.name,
                                   backend=backend, **options) for m in methods])

    return run_over_masks(mask_paths, step, images_dir=images_dir, pixel_size_m=pixel_size_m,
                          threshold=threshold, progress=progress)


def concat_tables(tables) -> pd.DataFrame:
    """Concatenate per-image tables, keeping the columns of an empty table."""
    tables = list(tables)
    if not tables:
        return pd.DataFrame()
    non_empty = [t for t in tables if len(t)]
    return pd.concat(non_empty, ignore_index=True) if non_empty else tables[0].iloc[0:0].copy()


def segment_files(image_paths, out_dir, model="default", separate="auto", threshold=None,
                  mode="blend", overlap=64, batch_size=4, data_bar_rows=None, rois=False,
                  probability=False, progress=None) -> BatchResult:
    """Segment SEM images and write each one's particles.

    For every image ``<stem>``: ``<stem>_mask.tif`` (0/255, particles separated by background
    lines), ``<stem>_labels.tif`` (uint16/32 label image, ImageJ calibration),
    ``<stem>_scores.csv`` (label, area in pixels, score), optionally ``<stem>_rois.zip`` (ImageJ
    ROI set) and ``<stem>_prob.tif`` (float32 probability map). All cover the analysed area (the
    data bar removed), all written atomically.

    Parameters
    ----------
    image_paths : sequence of path
    out_dir : path
    model : str, path or torch.nn.Module
        ``"default"``, a model file or checkpoint (U-Net or Mask R-CNN), or a loaded network.
    separate, threshold, mode, overlap, batch_size, data_bar_rows
        As :func:`tio2fiji.predict.segment`.
    rois, probability : bool
        Also write the ROI zip / the probability map.
    progress : callable, optional
        ``progress(done, total, name)`` after each image.

    Returns
    -------
    BatchResult
        ``tables``: one DataFrame per image (``image, label, area_px, score``); ``inputs``: the
        written paths per image (dict); ``failures``: (path, message).
    """
    import tifffile

    from .io import _atomic_write, write_csv, write_labels, write_mask
    from .predict import load_model, segment

    out_dir = Path(out_dir)
    if isinstance(model, (str, Path)):
        model = load_model(model)
    result = BatchResult()
    paths = [Path(p) for p in image_paths]
    for k, path in enumerate(paths, 1):
        try:
            sem = read_sem(path, data_bar_rows=data_bar_rows)
            seg = segment(model, sem, threshold=threshold, mode=mode, overlap=overlap,
                          batch_size=batch_size, separate=separate)
            stem = path.stem
            written = {"mask": write_mask(out_dir / f"{stem}_mask.tif", seg.labels > 0, sem.pixel_size_m),
                       "labels": write_labels(out_dir / f"{stem}_labels.tif", seg.labels, sem.pixel_size_m)}
            n = int(seg.labels.max())
            area = np.bincount(seg.labels.ravel(), minlength=n + 1)[1:]
            table = pd.DataFrame({"image": stem, "label": np.arange(1, n + 1), "area_px": area,
                                  "score": seg.scores})
            written["scores"] = write_csv(out_dir / f"{stem}_scores.csv", table)
            if rois:
                from .rois import write_roi_zip

                written["rois"] = write_roi_zip(seg.labels, out_dir / f"{stem}_rois.zip")
            if probability:
                written["probability"] = _atomic_write(
                    out_dir / f"{stem}_prob.tif",
                    lambda p: tifffile.imwrite(p, seg.probability.astype(np.float32), imagej=True))
            result.tables.append(table)
            result.inputs.append(written)
        except Tio2FijiError as exc:
            result.failures.append((path, str(exc)))
        if progress is not None:
            progress(k, len(paths), path.name)
    return result
