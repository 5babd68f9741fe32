"""SEM images: :func:`read_sem` gives the gray pixels, the calibration and the data bar.

* **Calibration** comes from the image's own metadata (:mod:`._calibration`).
* **Data bar**: the microscope's info bar at the bottom is found from the image content (see
  :func:`detect_data_bar`) unless the caller gives its height; the analysed area excludes it.
* **16-bit images** keep their full precision; :func:`tio2fiji.transforms.normalize_for_network` is
  the one place that scales any image to the networks' ``[0, 1]`` input range.
* **Float images** are the 8-bit, 16-bit or ``[0, 1]`` signal by one explicit rule
  (:func:`._pixels.float_signal`): integer values 0-255 are read as ``uint8``, 0-65535 as
  ``uint16``, values within ``[0, 1]`` stay a ``[0, 1]`` signal; any other float image is refused,
  never min-max stretched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..checks import warn_result
from ..errors import InputError
from ._annotations import MAX_ANNOTATION_FRACTION, detect_annotations
from ._calibration import GIVEN, given_source, pixel_size_problem
from ._files import check_path
from ._pixels import _check_2d, _read_raw, float_signal, gray_level


@dataclass
class SemImage:
    """A gray SEM image with what its metadata says about it.

    Attributes
    ----------
    data : ndarray
        The full 2-D gray image (data bar included), in its original integer precision; a float
        file as the signal it holds (``uint8``, ``uint16``, or floats within ``[0, 1]``:
        :func:`._pixels.float_signal`).
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
    calibration_where : str
        Where in the file the pixel size was found (tag or entry, and the reader), "" when none.
    magnification, beam_energy_kv : float or None
        As the vendor metadata records them (None when it does not).
    annotation_mask : ndarray of bool or None
        Pixels of the analysed area that are annotations, not specimen (burned-in scale bar or
        text, palette overlay colours: :func:`tio2fiji.io.detect_annotations`); None when there
        are none. The analysis leaves them out and drops the particles they touch.
    annotation_source : str
        What they are (``""`` when none).
    """

    data: np.ndarray
    path: Path | None = None
    pixel_size_m: float | None = None
    pixel_size_source: str = "none: no calibration in metadata, lengths in pixels"
    data_bar_rows: int = 0
    data_bar_source: str = "none found"
    original_dtype: np.dtype = field(default_factory=lambda: np.dtype(np.uint8))
    notes: list = field(default_factory=list)
    calibration_where: str = ""
    magnification: float | None = None
    beam_energy_kv: float | None = None
    annotation_mask: np.ndarray | None = None
    annotation_source: str = ""

    @property
    def analysed(self) -> np.ndarray:
        """The image without the data bar: the area that is segmented and measured."""
        return analysed_area(self.data, self.data_bar_rows)

    @property
    def analysed_pixels(self) -> int:
        """Pixels of the analysed area that are specimen (annotations excluded)."""
        h, w = self.analysed.shape[:2]
        return int(h * w - (0 if self.annotation_mask is None else np.count_nonzero(self.annotation_mask)))

    @property
    def calibrated(self) -> bool:
        return self.pixel_size_m is not None

    @property
    def unit(self) -> str:
        """Length unit of measurements made on this image (``"nm"`` or ``"pixel"``)."""
        return "nm" if self.calibrated else "pixel"


# Data-bar rule: tolerance of the panel's flat background (fraction of the image's range; JPEG
# ringing around the text stays within it), the contrast that makes a pixel text ("ink"), and the
# share of ink a panel of text has (a uniform or clipped black bottom has none).
_BAR_TOLERANCE = 0.03
_INK_CONTRAST = 0.25
_INK_RANGE = (0.002, 0.4)
_EDGE_FRACTION = 0.95
_TOP_ROW_INK = 0.01
#: Annotations this close to the bottom of the analysed area are the rest of a data bar cut too low.
_EDGE_ROWS = 3
#: A detected data bar taller than this fraction of the frame is taken for image content.
MAX_BAR_FRACTION = 0.15


def _background_fraction(image: np.ndarray, first: int, tol: float) -> np.ndarray:
    """Per row from ``first`` on, the fraction of pixels within ``tol`` of the image's darkest value."""
    lo = float(image.min())
    frac = np.zeros(image.shape[0])
    frac[first:] = (image[first:] <= lo + tol).mean(axis=1)
    return frac


def _lowest_flat_block(frac: np.ndarray, start: int, min_fraction: float) -> tuple[int, int] | None:
    """Top and bottom row of the lowest block of flat rows at or below ``start`` (text lines between
    them leave gaps of up to 3 rows)."""
    rows = np.flatnonzero(frac[start:] >= min_fraction) + start
    if rows.size < 4:
        return None
    bottom = top = int(rows[-1])
    for r in rows[::-1][1:]:
        if top - r > 3:
            break
        top = int(r)
    return top, bottom


def _is_text_panel(image: np.ndarray, frac: np.ndarray, top: int, bottom: int, min_fraction: float) -> bool:
    """A data bar's panel: a sharp top edge (all-background rows right under an image row, no
    ink crossing it) and text (some, but not much, high-contrast ink inside)."""
    # a JPEG block (8 rows) that straddles the edge blurs it
    if frac[top:top + 8].max() < _EDGE_FRACTION or (top > 0 and frac[top - 1] >= min_fraction):
        return False
    lo, hi = float(image.min()), float(image.max())
    ink = image[top:bottom + 1] > lo + _INK_CONTRAST * (hi - lo)
    per_row = ink.mean(axis=1)
    # the top row carries no text (a few pixels of a frame line at the borders are allowed)
    if per_row[0] >= _TOP_ROW_INK or int((per_row >= _INK_RANGE[0]).sum()) < 2:
        return False
    return _INK_RANGE[0] <= float(ink.mean()) <= _INK_RANGE[1]


def detect_data_bar(image: np.ndarray, zeiss: bool = False, min_fraction: float = 0.6,
                    search_fraction: float = 0.25) -> int:
    """Height in rows of the microscope's data bar at the bottom of ``image``, 0 if there is none.

    The bar is a panel under the micrograph whose rows are mostly one flat value (its background,
    the image's darkest value, or for a light panel with dark text its brightest, within 3 % of the
    image's range, and at least one gray level (:func:`._pixels.gray_level`: 1/255 for a float
    ``[0, 1]`` signal), so that JPEG noise does not break it), with text in it. We look for the
    lowest block of such rows within the bottom ``search_fraction`` of the image, allowing a few
    image-like rows below it (some microscopes draw the panel inset in its band), and accept it
    only with the structure of a data bar: a sharp top edge (all-background rows right under an
    image row, no ink crossing it) and text (high-contrast ink in at least two rows, 0.2-40 % of
    the panel). A uniform, black or clipped bottom
    without text is not a bar. The rows from the panel's top to the bottom edge are returned.

    Zeiss SmartSEM reserves a data zone of one twelfth of the frame height (64 of 768 rows) and draws
    its dark panel inset inside that zone, leaving a few scan lines above and below. With
    ``zeiss=True`` and the panel inside that zone, the whole zone is returned; this is also the
    height that BAM's reference masks exclude. Without the tag (a JPEG of a Zeiss image) the same
    inset layout (image rows under the panel, the panel filling most of the zone) gives the zone.

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
    image = np.asarray(image)
    if image.ndim != 2 or image.shape[0] < 8 or image.shape[1] < 8:
        return 0
    lo, hi = float(image.min()), float(image.max())
    if not hi > lo:  # also NaN
        return 0
    level = gray_level(image)
    dark = _dark_panel_bar(image, zeiss, min_fraction, search_fraction, level)
    if dark:
        return dark
    # a light panel with dark text (Zeiss SmartSEM's white bar): the same rule on the negative
    negative = (hi + lo) - image.astype(np.float64)
    return _dark_panel_bar(negative, zeiss, min_fraction, search_fraction, level)


def _dark_panel_bar(image: np.ndarray, zeiss: bool, min_fraction: float, search_fraction: float,
                    level: float) -> int:
    """:func:`detect_data_bar` for a panel of the image's darkest value (``level``: one gray level)."""
    h = image.shape[0]
    lo, hi = float(image.min()), float(image.max())
    start = h - max(1, int(h * search_fraction))
    frac = _background_fraction(image, max(0, start - 1), max(level, _BAR_TOLERANCE * (hi - lo)))
    block = _lowest_flat_block(frac, start, min_fraction)
    if block is None:
        return 0
    top, bottom = block
    gap = h - 1 - bottom
    if bottom - top + 1 < 4 or gap > max(4, h // 100):
        return 0
    if not _is_text_panel(image, frac, top, bottom, min_fraction):
        return 0
    height, zone = h - top, h // 12
    if height <= zone and (zeiss or (gap >= 1 and height >= 0.75 * zone)):
        return zone
    if height > MAX_BAR_FRACTION * h:  # no info bar is this tall (Zeiss: 1/12): image content
        warn_result(f"a data-bar-like band of {height} rows ({height / h:.0%} of the frame) at the "
                    f"bottom is taller than any data bar ({MAX_BAR_FRACTION:.0%}); it is analysed "
                    f"as image (give --data-bar-rows if it is a bar).")
        return 0
    return int(height)


def detect_overlay_bar(image: np.ndarray, overlay_values, zeiss: bool = False, min_fraction: float = 0.5,
                       search_fraction: float = 0.25) -> int:
    """Height of a data bar drawn in a palette image's overlay colours, 0 if there is none.

    Zeiss SmartSEM draws some data bars (e.g. a light panel on 512-pixel images) with the colour-map
    entries that are not gray levels (``overlay_values``, :func:`._pixels._palette_to_gray`), so the
    panel is not the image's darkest flat value that :func:`detect_data_bar` looks for. Here the bar
    is the lowest block of rows in the bottom ``search_fraction`` in which at least
    ``min_fraction`` of the pixels are overlay entries, reaching the bottom within a few rows; with
    ``zeiss`` a panel inside the reserved zone (one twelfth of the height) gives the zone, and one
    that starts a row or two above it its own height.

    Parameters
    ----------
    image : ndarray
        2-D raw palette indices.
    overlay_values : array-like
        The indices that are overlay colours.
    zeiss : bool
        The image has a ``CZ_SEM`` tag.
    min_fraction, search_fraction : float

    Returns
    -------
    int
    """
    overlay_values = np.asarray(overlay_values)
    image = np.asarray(image)
    if overlay_values.size == 0 or image.ndim != 2 or image.shape[0] < 8:
        return 0
    h = image.shape[0]
    start = h - max(1, int(h * search_fraction))
    frac = np.isin(image[start:], overlay_values).mean(axis=1)
    rows = np.flatnonzero(frac >= min_fraction) + start
    if rows.size == 0 or h - 1 - rows[-1] > max(4, h // 100):
        return 0
    top = int(rows[-1])
    while top - 1 >= start and frac[top - 1 - start] >= min_fraction:
        top -= 1
    height = h - top
    if zeiss and height <= h // 12:
        return h // 12
    return height if height <= MAX_BAR_FRACTION * h else 0


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
        TIFF (8/16-bit gray, 32-bit float, palette, or gray-valued RGB), PNG, JPEG or BMP file;
        a float image is read by the rule of :func:`._pixels.float_signal` (integers 0-255: the
        8-bit signal, 0-65535: the 16-bit signal, within ``[0, 1]``: a ``[0, 1]`` signal).
    data_bar_rows : int, optional
        Height of the data bar; None detects it from the image content (:func:`detect_data_bar`).
    pixel_size_m : float, optional
        Pixel size in metres, overriding the metadata (``pixel_size_source``:
        :func:`tio2fiji.io.given_source`, what it replaced; a note names the file's value).
    page : int, optional
        Page of a multi-page TIFF to read. Without it, a stack of several full-resolution pages is
        refused rather than silently reduced to its first page.

    Returns
    -------
    SemImage

    Raises
    ------
    InputError
        Missing, empty, truncated or non-image files, zero-size images, true-colour images, stacks,
        float images outside the float rule;
        a microscope tag whose pixel size is broken (0, negative, NaN, infinite, absurd) unless
        ``pixel_size_m`` is given.
    """
    path = check_path(path)
    notes: list[str] = []
    arr, meta, original_dtype, off_ramp = _read_raw(path, page, notes)
    arr = float_signal(_check_2d(arr, path), path, notes)

    if pixel_size_m is not None:
        problem = pixel_size_problem(pixel_size_m)
        if problem:
            raise InputError(f"{path}: the given pixel size {pixel_size_m!r} is not valid ({problem}); "
                             f"give it in metres (7.3 nm is 7.3e-9).")
        ps, source = float(pixel_size_m), given_source(pixel_size_m, meta["calibration"][0],
                                                     broken=meta.get("calibration_error") is not None)
        file_ps, file_source = meta["calibration"]
        notes.append(f"pixel size {ps * 1e9:.6g} nm from --pixel-size; the file's calibration "
                     + (f"{file_ps * 1e9:.6g} nm ({file_source}) not used" if file_ps is not None
                        else f"none ({file_source.removeprefix('none: ')})"))
    elif meta.get("calibration_error") is not None:
        raise meta["calibration_error"]
    else:
        ps, source = meta["calibration"]

    if data_bar_rows is None:
        bar = detect_data_bar(arr, zeiss=meta["zeiss"])
        bar_source = "detected" if bar else "none found"
        overlay = detect_overlay_bar(arr, off_ramp if off_ramp is not None else (), zeiss=meta["zeiss"])
        if overlay > bar:
            bar, bar_source = overlay, "detected (drawn in the palette's overlay colours)"
        hint = meta.get("bar_hint")
        if hint is not None:
            found = f"; the content gives {bar}" if bar and bar != hint[0] else ""
            bar, bar_source = hint[0], f"{hint[1]}{found}"
    else:
        bar = int(data_bar_rows)
        if not 0 <= bar < arr.shape[0]:
            raise InputError(f"{path}: data bar of {bar} rows does not fit an image {arr.shape[0]} rows high.")
        bar_source = "given"
    annotations, what = detect_annotations(analysed_area(arr, bar), overlay_values=off_ramp)
    if what:
        share = float(annotations.mean())
        if share > MAX_ANNOTATION_FRACTION:
            raise InputError(f"{path}: {100 * share:.0f} % of the analysed area is annotation ({what}), "
                             f"not specimen. Check the data-bar height (--data-bar-rows) or export the "
                             f"image without its annotations.")
        rows = np.flatnonzero(annotations.any(axis=1))
        # overlay text cut through at the bottom: the panel goes on above the rows taken as data bar
        if what.startswith("palette") and rows[-1] >= annotations.shape[0] - 1 - _EDGE_ROWS:
            raise InputError(f"{path}: annotations ({what}) reach the bottom edge of the analysed area "
                             f"(rows {rows[0]}-{rows[-1]}): the data bar is taller than the {bar} rows "
                             f"{'given' if data_bar_rows is not None else 'found'}. Check --data-bar-rows.")
        notes.append(f"annotations: {int(annotations.sum())} px ({100 * share:.2f} %) of the analysed area "
                     f"left out ({what}); particles touching them are dropped")
    reading = meta.get("reading")
    notes.extend(reading.notes if reading is not None else ())
    return SemImage(data=arr, path=path, pixel_size_m=ps, pixel_size_source=source,
                    data_bar_rows=bar, data_bar_source=bar_source,
                    original_dtype=np.dtype(original_dtype), notes=notes,
                    calibration_where=GIVEN if pixel_size_m is not None else "" if reading is None else reading.where,
                    magnification=getattr(reading, "magnification", None),
                    beam_energy_kv=getattr(reading, "beam_energy_kv", None),
                    annotation_mask=annotations if what else None, annotation_source=what)
