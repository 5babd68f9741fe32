"""SEM images: :func:`read_sem` gives the gray pixels, the calibration and the data bar.

* **Calibration** comes from the image's own metadata (:mod:`._calibration`).
* **Data bar**: the microscope's info bar at the bottom is found from the image content (see
  :func:`detect_data_bar`) unless the caller gives its height; the analysed area excludes it.
* **16-bit images** keep their full precision; :func:`tio2fiji.transforms.normalize_for_network` is
  the one place that scales any image to the networks' ``[0, 1]`` input range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ._files import check_path
from ._pixels import _check_2d, _check_palette_area, _read_raw


@dataclass
class SemImage:
    """A gray SEM image with what its metadata says about it.

    Attributes
    ----------
    data : ndarray
        The full 2-D gray image (data bar included), in its original integer precision.
    path : Path or None
        Where it was read from.
    pixel_size_m : float or None
        Pixel width in metres; None when the image carries no calibration.
    pixel_size_source : str
        Where the pixel size came from (e.g. ``"CZ_SEM"``), or why there is none.
    data_bar_rows : int
        Number of rows at the bottom taken by the microscope's data bar (0 if none).
    data_bar_source : str
        ``"detected"``, ``"given"`` or ``"none found"``.
    original_dtype : numpy.dtype
        The dtype stored in the file (before any palette or RGB reduction).
    notes : list of str
        Anything the reader decided that a user may want to know (page used, RGB reduced to gray, ...).
    """

    data: np.ndarray
    path: Path | None = None
    pixel_size_m: float | None = None
    pixel_size_source: str = "none: no calibration in metadata, lengths in pixels"
    data_bar_rows: int = 0
    data_bar_source: str = "none found"
    original_dtype: np.dtype = field(default_factory=lambda: np.dtype(np.uint8))
    notes: list = field(default_factory=list)

    @property
    def analysed(self) -> np.ndarray:
        """The image without the data bar: the area that is segmented and measured."""
        return analysed_area(self.data, self.data_bar_rows)

    @property
    def calibrated(self) -> bool:
        return self.pixel_size_m is not None

    @property
    def unit(self) -> str:
        """Length unit of measurements made on this image (``"nm"`` or ``"pixel"``)."""
        return "nm" if self.calibrated else "pixel"


def _bar_row_fraction(image: np.ndarray) -> np.ndarray:
    """Per row, the fraction of pixels at the image's darkest value (the bar's background)."""
    lo = image.min()
    return (image == lo).mean(axis=1)


def detect_data_bar(image: np.ndarray, zeiss: bool = False, min_fraction: float = 0.6,
                    search_fraction: float = 0.25) -> int:
    """Height in rows of the microscope's data bar at the bottom of ``image``, 0 if there is none.

    The bar is a panel of rows filled mostly with one flat value (its background, the image's
    darkest value) under the micrograph. We look for the lowest block of such rows within the bottom
    ``search_fraction`` of the image, allowing a few image-like rows below it (some microscopes draw
    the panel inset in its band), and return the rows from the panel's top to the bottom edge.

    Zeiss SmartSEM reserves a data zone of one twelfth of the frame height (64 of 768 rows) and draws
    its dark panel inset inside that zone, leaving a few scan lines above and below. With
    ``zeiss=True`` and the panel inside that zone, the whole zone is returned; this is also the
    height that BAM's reference masks exclude.

    Parameters
    ----------
    image : ndarray
        2-D gray image.
    zeiss : bool
        The image comes from a Zeiss microscope (it has a ``CZ_SEM`` tag).
    min_fraction : float
        Fraction of a row's pixels that must hold the panel's flat value.
    search_fraction : float
        Only the bottom part of the image, of this fraction of its height, is searched.

    Returns
    -------
    int
    """
    h = image.shape[0]
    if h < 8:
        return 0
    frac = _bar_row_fraction(image)
    start = h - max(1, int(h * search_fraction))
    flat = frac >= min_fraction
    flat[:start] = False
    rows = np.flatnonzero(flat)
    if rows.size < 4:
        return 0
    # lowest contiguous block of flat rows (gaps of up to 2 rows are text lines)
    bottom = rows[-1]
    top = bottom
    for r in rows[::-1][1:]:
        if top - r <= 3:
            top = r
        else:
            break
    if bottom - top + 1 < 4 or h - 1 - bottom > max(4, h // 100):
        return 0
    height = h - top
    if zeiss:
        zone = h // 12
        if height <= zone:
            return zone
    return int(height)


def analysed_area(image: np.ndarray, data_bar_rows: int) -> np.ndarray:
    """The part of ``image`` above its data bar (a view, not a copy)."""
    if data_bar_rows <= 0:
        return image
    return image[: image.shape[0] - data_bar_rows]


def read_sem(path, data_bar_rows: int | None = None, pixel_size_m: float | None = None,
             page: int | None = None) -> SemImage:
    """Read an SEM image with its calibration and data-bar height.

    Parameters
    ----------
    path : str or Path
        TIFF (8/16-bit gray, palette, or gray-valued RGB), PNG, JPEG or BMP file.
    data_bar_rows : int, optional
        Height of the data bar; None detects it from the image content (:func:`detect_data_bar`).
    pixel_size_m : float, optional
        Pixel size in metres, overriding the metadata.
    page : int, optional
        Page of a multi-page TIFF to read. Without it, a stack of several full-resolution pages is
        refused rather than silently reduced to its first page.

    Returns
    -------
    SemImage

    Raises
    ------
    InputError
        Missing, empty, truncated or non-image files, zero-size images, true-colour images, stacks.
    """
    path = check_path(path)
    notes: list[str] = []
    arr, meta, original_dtype, off_ramp = _read_raw(path, page, notes)
    arr = _check_2d(arr, path)

    if pixel_size_m is not None:
        if not (pixel_size_m > 0 and math.isfinite(pixel_size_m)):
            raise InputError(f"{path}: pixel size must be a positive number of metres, got {pixel_size_m}.")
        ps, source = float(pixel_size_m), "given"
    else:
        ps, source = meta["calibration"]

    if data_bar_rows is None:
        bar = detect_data_bar(arr, zeiss=meta["zeiss"])
        bar_source = "detected" if bar else "none found"
    else:
        bar = int(data_bar_rows)
        if not 0 <= bar < arr.shape[0]:
            raise InputError(f"{path}: data bar of {bar} rows does not fit an image {arr.shape[0]} rows high.")
        bar_source = "given"
    _check_palette_area(analysed_area(arr, bar), off_ramp, path)
    return SemImage(data=arr, path=path, pixel_size_m=ps, pixel_size_source=source,
                    data_bar_rows=bar, data_bar_source=bar_source,
                    original_dtype=np.dtype(original_dtype), notes=notes)
