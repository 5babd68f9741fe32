"""Masks and label images: reading (binary masks, label images), cropping to an image's analysed
area, and writing ImageJ-readable TIFFs with the calibration.

Masks and label images are read by their **pixel values**, as ImageJ reads them, never through a
colour map or a min-is-white photometric: those only change the display. ImageJ's "Invert LUT",
and "Make Binary"/"Convert to Mask" with black background off, save particles as 255 shown black
(a palette TIFF whose map runs from white to black); ImageJ 1.53t's Analyze Particles takes the 255
pixels of such a file as particles with either black-background setting, and so does tio2fiji
(255, the non-zero value, is particle).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

from ..errors import InputError
from ._files import atomic_write, check_path
from ._pixels import _check_2d, _read_raw
from ._sem import SemImage, analysed_area


def as_binary_mask(array, name: str = "mask", hint: str = "") -> np.ndarray:
    """A bool mask from a 2-D bool or 0/k array; label or gray arrays are an :class:`InputError`.

    ``hint`` is appended to the error message (what to do instead).
    """
    arr = np.asarray(array)
    if arr.ndim != 2 or 0 in arr.shape:
        raise InputError(f"{name}: expected a non-empty 2-D mask, got shape {arr.shape}.")
    if arr.dtype == bool:
        return arr
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise InputError(f"{name}: expected a numeric or bool mask, got dtype {arr.dtype}.")
    fg = arr != 0
    values = arr[fg]
    if values.size and (values.min() != values.max() or not np.isfinite(values[0])):
        shown = np.unique(values)
        text = ", ".join(str(v) for v in shown[:5]) + (", ..." if shown.size > 5 else "")
        raise InputError(f"{name}: expected a binary mask (0 and one foreground value), but the "
                         f"foreground has {shown.size} values ({text}).{' ' + hint if hint else ''}")
    return fg


def read_mask(path, threshold: float | None = None, kind: str = "auto", page: int | None = None) -> np.ndarray:
    """Read a binary mask as a boolean array (True = particle), by its pixel values (a colour map,
    e.g. ImageJ's inverting LUT, is ignored: see the module docstring).

    Parameters
    ----------
    path : str or Path
    threshold : float, optional
        For gray masks: pixels ``> threshold`` are particle. Without it a gray mask is an error.
    kind : {"auto", "binary", "labels"}
        ``"auto"`` accepts two-valued images (0/255, 0/1, bool, 0/k) and label images (integer
        types wider than 8 bits with more than two values); ``"labels"`` takes any integer image as
        labels (foreground = non-zero).
    page : int, optional
        Page of a multi-page TIFF.

    Returns
    -------
    ndarray of bool

    Raises
    ------
    InputError
        If the mask is not binary (and no threshold is given), or unreadable.
    """
    path = check_path(path)
    notes: list[str] = []
    arr = _read_raw(path, page, notes, values=True)[0]
    arr = _check_2d(arr, path)
    return mask_from_array(arr, threshold=threshold, kind=kind, name=str(path))


def mask_from_array(arr: np.ndarray, threshold: float | None = None, kind: str = "auto",
                    name: str = "mask") -> np.ndarray:
    """Turn a 2-D array into a boolean mask with the rules of :func:`read_mask`."""
    if kind not in ("auto", "binary", "labels"):
        raise ValueError(f"kind must be 'auto', 'binary' or 'labels', not {kind!r}")
    arr = np.asarray(arr)
    if arr.dtype == bool:
        return arr.copy()
    if threshold is not None:
        return arr > threshold
    if kind == "labels":
        if not np.issubdtype(arr.dtype, np.integer):
            raise InputError(f"{name}: label images must have an integer type, not {arr.dtype}.")
        return arr != 0
    values = np.unique(arr)
    if values.size == 1:
        # all one value: empty (0) or full; a full frame is not a plausible particle mask
        if values[0] == 0:
            return np.zeros(arr.shape, bool)
        raise InputError(f"{name}: every pixel has the value {values[0]}: this is not a particle mask.")
    if values.size == 2 and values[0] == 0:
        return arr == values[1]
    if (kind == "auto" and np.issubdtype(arr.dtype, np.integer) and arr.dtype.itemsize > 1
            and values[0] >= 0):
        return arr != 0
    shown = ", ".join(str(v) for v in values[:5]) + (", ..." if values.size > 5 else "")
    raise InputError(
        f"{name}: mask is not binary: {values.size} distinct values ({shown}). Expected 0 and one "
        f"foreground value (e.g. 0/255). Is this the SEM image instead of its mask? For a gray "
        f"mask give a threshold (--threshold T keeps pixels > T); save a label image with an unsigned "
        f"integer type (uint16 or uint32), not {arr.dtype}."
    )


def mask_or_labels(array, name: str = "mask") -> tuple[str, np.ndarray]:
    """Decide whether an array is a binary mask or a label image: the one rule of tio2fiji.

    * ``bool``: a mask.
    * ``uint8``: a mask whose non-zero pixels (one value, or 1 and 255) are particle; any other
      uint8 array is an error (an 8-bit gray image must be thresholded first; label images use a
      wider integer type).
    * wider integers, non-negative: at most one non-zero value = a mask (0/1, 0/255, ...);
      several non-zero values = a label image (each value one particle, 0 = background).
    * floats: only a finite 0/1 array is accepted (a mask).

    Parameters
    ----------
    array : array_like, 2-D
    name : str
        Named in error messages (e.g. the file).

    Returns
    -------
    kind : {"mask", "labels"}
    data : ndarray
        bool for a mask; the integer array as given for labels.

    Raises
    ------
    InputError
        Not 2-D, negative values, a non-binary uint8 or float array, an unsupported dtype.
    """
    arr = np.asarray(array)
    if arr.ndim != 2:
        raise InputError(f"{name}: a mask or label image must be 2-D, got shape {arr.shape}.")
    if arr.dtype == bool:
        return "mask", arr
    if np.issubdtype(arr.dtype, np.floating):
        if np.isfinite(arr).all() and np.isin(arr, (0.0, 1.0)).all():
            return "mask", arr != 0
        raise InputError(f"{name}: a {arr.dtype} array is neither a binary 0/1 mask nor a label "
                         f"image; pass a bool mask or an integer label image.")
    if not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"{name}: unsupported dtype {arr.dtype} for a mask or label image.")
    if arr.size == 0:
        return "mask", arr != 0
    if arr.min() < 0:
        raise InputError(f"{name}: a label image must not hold negative values (minimum {arr.min()}).")
    if arr.dtype == np.uint8:
        values = np.flatnonzero(np.bincount(arr.ravel(), minlength=256))
        nonzero = [int(v) for v in values if v]
        if len(nonzero) > 1 and not set(nonzero) <= {1, 255}:
            raise InputError(
                f"{name}: the uint8 mask is not binary: it holds several values (e.g. "
                f"{nonzero[:5]}); threshold it, or pass a label image as uint16/int32.")
        return "mask", arr != 0
    fg = arr[arr != 0]
    if fg.size == 0 or fg.min() == fg.max():
        return "mask", arr != 0
    return "labels", arr


def read_mask_or_labels(path, threshold: float | None = None, page: int | None = None) -> np.ndarray:
    """Read a mask file as a bool mask, or as int labels when it is a label image.

    Label images (see :func:`mask_or_labels`: integer types wider than 8 bits with several non-zero
    values) keep their labels so that touching particles stay apart; everything else follows
    :func:`read_mask`.
    """
    path = check_path(path)
    arr = _check_2d(_read_raw(path, page, [], values=True)[0], path)
    if (threshold is None and np.issubdtype(arr.dtype, np.integer) and arr.dtype.itemsize > 1
            and arr.min() >= 0):
        kind, data = mask_or_labels(arr, name=str(path))
        if kind == "labels":
            return data.astype(np.int64 if data.max() > np.iinfo(np.int32).max else np.int32)
    # masks (and gray images with a threshold) get read_mask's messages, which name the file
    return mask_from_array(arr, threshold=threshold, name=str(path))


def read_labels(path, page: int | None = None) -> np.ndarray:
    """Read a label image (0 = background, each particle one positive integer) as int32/int64."""
    path = check_path(path)
    notes: list[str] = []
    arr = _read_raw(path, page, notes, values=True)[0]
    arr = _check_2d(arr, path)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.array_equal(arr, np.round(arr)) and arr.min() >= 0:
            arr = arr.astype(np.int64)
        else:
            raise InputError(f"{path}: a label image needs non-negative integer values, got {arr.dtype}.")
    if arr.min() < 0:
        raise InputError(f"{path}: label image has negative values.")
    return arr.astype(np.int64 if arr.max() > np.iinfo(np.int32).max else np.int32)


def check_same_shape(image: np.ndarray, mask: np.ndarray, image_name: str, mask_name: str) -> None:
    """Raise a clear error when an image and its mask differ in size."""
    if image.shape != mask.shape:
        raise InputError(
            f"{mask_name}: mask is {mask.shape[1]}x{mask.shape[0]} pixels but its image {image_name} "
            f"is {image.shape[1]}x{image.shape[0]}. Masks must cover the same pixels as the image "
            f"(with or without the data bar)."
        )


def mask_for_image(mask: np.ndarray, sem: SemImage, mask_name: str = "mask") -> np.ndarray:
    """Crop ``mask`` to ``sem``'s analysed area.

    A mask may cover the whole frame (data bar included) or only the analysed area; anything else
    is a size mismatch.
    """
    full, area = sem.data.shape, sem.analysed.shape
    if mask.shape == area:
        return mask
    if mask.shape == full:
        return analysed_area(mask, sem.data_bar_rows)
    raise InputError(
        f"{mask_name}: mask is {mask.shape[1]}x{mask.shape[0]} pixels but the image "
        f"{sem.path} is {full[1]}x{full[0]} ({area[1]}x{area[0]} without its "
        f"{sem.data_bar_rows}-row data bar). Check that the mask belongs to this image."
    )


def _imagej_resolution(pixel_size_m: float | None):
    if pixel_size_m is None:
        return {}
    per_nm = 1.0 / (pixel_size_m * 1e9)
    return {"resolution": (per_nm, per_nm), "metadata": {"unit": "nm"}}


def write_mask(path, mask: np.ndarray, pixel_size_m: float | None = None) -> Path:
    """Write a boolean mask as an 8-bit 0/255 ImageJ TIFF (255 = particle), atomically."""
    data = np.asarray(mask).astype(bool).astype(np.uint8) * 255
    kw = _imagej_resolution(pixel_size_m)
    return atomic_write(path, lambda p: tifffile.imwrite(p, data, imagej=True, **kw))


def write_labels(path, labels: np.ndarray, pixel_size_m: float | None = None) -> Path:
    """Write a label image as uint16 (or uint32 when there are more than 65535 labels) TIFF.

    uint16 files carry ImageJ metadata (unit, resolution). ImageJ has no 32-bit integer type; it
    opens the uint32 files as 32-bit float, which is exact up to 16,777,216 labels.
    """
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise InputError(f"{path}: label image must be 2-D, got shape {lab.shape}.")
    if lab.size and lab.min() < 0:
        raise InputError(f"{path}: label image has negative values.")
    top = int(lab.max()) if lab.size else 0
    if top < 2 ** 16:
        data = lab.astype(np.uint16)
        kw = _imagej_resolution(pixel_size_m)
        return atomic_write(path, lambda p: tifffile.imwrite(p, data, imagej=True, **kw))
    data = lab.astype(np.uint32)
    kw = {}
    if pixel_size_m is not None:
        per_cm = 0.01 / pixel_size_m
        kw = {"resolution": (per_cm, per_cm), "resolutionunit": "CENTIMETER"}
    return atomic_write(path, lambda p: tifffile.imwrite(p, data, **kw))
