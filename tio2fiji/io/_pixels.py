"""Reading the pixels of an image file: TIFF pages, palettes, RGB, PNG/JPEG/BMP.

**Palette images**: the BAM Zeiss files are 8-bit palette TIFFs whose colour map is the identity gray
ramp except 27 overlay entries (indices 9, 18, ..., 243) coloured for the data bar's text. The raw
index *is* the detector value. Mapping through the colour map instead would turn those overlay
entries into saturated colours, i.e. put fake intensities into the data; so we read raw indices and
check that the colour map is a gray ramp wherever the analysed area uses it.

**Float images** (what ImageJ's Image > Type > 32-bit writes) hold the same detector signal as an
integer image, and one rule (:func:`float_signal`, applied by :func:`tio2fiji.io.read_sem`) says
which, so that a float twin is analysed exactly as its 8- or 16-bit original:

* values all within ``[0, 1]``: a ``[0, 1]`` signal (1 = full scale, the 8-bit 255), kept as it
  is; the networks take it unchanged and one gray level is 1/255 for the data-bar and annotation
  rules (:func:`gray_level`);
* otherwise values that are all integers from 0 to 255: the 8-bit signal, read as ``uint8``;
  integers up to 65535: the 16-bit signal, read as ``uint16`` (ImageJ's 32-bit conversion keeps
  the values);
* anything else (negative values, fractions above 1, integers above 65535) has no known detector
  range: an :class:`~tio2fiji.errors.InputError` (one line), never a silent min-max stretch.

**Masks** are read by their pixel values, as ImageJ reads them (:func:`_read_raw` with
``values=True``): a palette or a min-is-white photometric only changes how a mask is displayed
(ImageJ's "Invert LUT", or "Make Binary" with black background off, writes 255 = particle shown
black), never which pixels are particle.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from ..errors import InputError
from ._calibration import _NO_META, CalibrationReading, read_calibration_details, vendor_file_calibration
from ._files import OTHER_SUFFIXES, TIFF_SUFFIXES, VENDOR_FILE_SUFFIXES, is_tiff


def _select_page(tif: tifffile.TiffFile, path: Path, page: int | None, notes: list):
    """Pick the page to read; refuse ambiguous stacks instead of guessing."""
    pages = tif.pages
    n = len(pages)
    if n == 0:
        raise InputError(f"{path}: TIFF file has no image pages.")
    if page is not None:
        if not 0 <= page < n:
            raise InputError(f"{path}: page {page} requested but the file has {n} page(s) (0..{n - 1}).")
        if n > 1:
            notes.append(f"page {page} of {n} used (as requested)")
        return pages[page]
    if n == 1:
        return pages[0]
    # Thumbnails/previews are flagged as reduced-resolution subfiles; they are not a stack.
    full = [i for i, p in enumerate(pages) if not (int(getattr(p, "subfiletype", 0) or 0) & 1)]
    if len(full) == 1:
        notes.append(f"page {full[0]} used; the file's {n - 1} other page(s) are reduced-resolution previews")
        return pages[full[0]]
    raise InputError(
        f"{path}: multi-page TIFF with {n} full-resolution pages; tio2fiji analyses one 2-D image. "
        f"Save the page you want as its own file (`tio2fiji info --page K` shows page K; in Python "
        f"pass page=K)."
    )


def _read_page(page, path: Path) -> np.ndarray:
    try:
        arr = page.asarray()
    except Exception as exc:  # tifffile raises many types for broken files
        raise InputError(
            f"{path}: the TIFF is corrupt or truncated, its pixel data cannot be read ({exc}). "
            f"Re-export the image from the microscope software or ImageJ."
        ) from exc
    return arr


def _palette_to_gray(raw: np.ndarray, colormap: np.ndarray | None, path: Path, notes: list):
    """Return the detector values of a palette image and the indices that are not gray levels.

    See the module docstring: where the colour map is the identity gray ramp the raw index is the
    detector value. Entries off the ramp (the data bar's coloured overlay) are returned so that the
    caller can check, once the data bar is known, that the analysed area never uses them.
    """
    if colormap is None:
        raise InputError(f"{path}: palette image without a colour map; cannot interpret its values.")
    cmap = np.asarray(colormap, dtype=np.int64)
    if cmap.ndim != 2 or cmap.shape[0] != 3:
        raise InputError(f"{path}: palette colour map has an unexpected shape {cmap.shape}.")
    levels = cmap.shape[1]
    ramp = np.arange(levels, dtype=np.int64) * (65535 // (levels - 1))
    on_ramp = (cmap[0] == ramp) & (cmap[1] == ramp) & (cmap[2] == ramp)
    if levels == 256:  # ImageJ writes its 8-bit LUTs as value << 8 (255 -> 65280)
        on_ramp |= (cmap[0] == ramp - ramp // 257) & (cmap[1] == cmap[0]) & (cmap[2] == cmap[0])
    off_ramp = np.flatnonzero(~on_ramp)
    if off_ramp.size <= levels // 4:
        if off_ramp.size:
            notes.append(f"palette: gray ramp with {off_ramp.size} overlay entries; raw detector values used")
        return raw, off_ramp
    gray = (cmap[0] == cmap[1]) & (cmap[1] == cmap[2])
    if gray.all():
        # A gray but non-identity map (e.g. a contrast curve): its gray value is what was intended.
        notes.append("palette is gray but not an identity ramp; values mapped through the colour map")
        # 8-bit maps: value << 8 (ImageJ) and value * 257 (the TIFF scale) both give value
        lut = (cmap[0] >> 8 if levels == 256 else cmap[0] * (levels - 1) // 65535).astype(raw.dtype)
        return lut[raw], np.array([], dtype=np.int64)
    raise InputError(
        f"{path}: palette (colour-map) image whose colour map is neither a gray ramp nor gray, so its "
        f"values are not detector intensities. Export the image as 8-bit grayscale."
    )


def _rgb_to_gray(arr: np.ndarray, path: Path, notes: list) -> np.ndarray:
    rgb = arr[..., :3]
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]):
        notes.append("RGB file with identical channels read as gray")
        return np.ascontiguousarray(rgb[..., 0])
    raise InputError(
        f"{path}: colour RGB image (its red, green and blue channels differ). tio2fiji needs the "
        f"gray detector signal of an SEM image; export the original grayscale image, or, if the "
        f"colour carries no data, convert it with ImageJ's Image > Type > 8-bit."
    )




def gray_level(image: np.ndarray) -> float:
    """One gray level of ``image``'s signal (see the module docstring): 1 for integer images and
    floats beyond 1, 1/255 for a float ``[0, 1]`` signal. The rules that allow a level of noise
    (a data bar's flat panel) use it, so that they hold for a float twin."""
    img = np.asarray(image)
    if np.issubdtype(img.dtype, np.floating) and img.size and float(img.min()) >= 0.0 \
            and float(img.max()) <= 1.0:
        return 1.0 / 255.0
    return 1.0


def float_signal(arr: np.ndarray, path, notes: list) -> np.ndarray:
    """The detector signal a float image holds, by the rule of the module docstring.

    Integer arrays are returned as they are; a float ``[0, 1]`` signal as it is (a note says so);
    integer-valued floats as ``uint8`` (0-255) or ``uint16`` (0-65535).

    Raises
    ------
    InputError
        Floats that are neither within ``[0, 1]`` nor integers from 0 to 65535.
    """
    if not np.issubdtype(arr.dtype, np.floating):
        return arr
    lo, hi = float(arr.min()), float(arr.max())
    if lo >= 0.0 and hi <= 1.0:
        notes.append(f"{arr.dtype} image with values in [0, 1]: read as a [0, 1] signal (1 = 8-bit 255)")
        return arr
    if lo >= 0.0 and hi <= 65535.0 and np.array_equal(arr, np.round(arr)):
        target = np.uint8 if hi <= 255.0 else np.uint16
        notes.append(f"{arr.dtype} image with integer values {lo:g}-{hi:g}: read as the "
                     f"{8 if target is np.uint8 else 16}-bit signal")
        return arr.astype(target)
    what = "negative values" if lo < 0.0 else ("values above 65535" if hi > 65535.0
                                               else "fractional values above 1")
    raise InputError(
        f"{path}: {arr.dtype} image with values from {lo:g} to {hi:g} ({what}): neither a [0, 1] "
        f"signal nor integers 0-65535, so its detector range is unknown and tio2fiji does not "
        f"stretch it. Convert it to 8- or 16-bit first (ImageJ: Image > Type > 8-bit).")


def _page_calibration(pg, path: Path) -> dict:
    """The page's calibration, and the error of a broken microscope tag (raised only by
    :func:`read_sem` without a given pixel size: a mask does not need its calibration)."""
    def of(r):
        return {"calibration": (r.pixel_size_m, r.source), "reading": r}

    try:
        return {**of(read_calibration_details(pg, name=str(path), path=path)), "calibration_error": None}
    except InputError as exc:
        return {**of(read_calibration_details(pg, name=str(path), strict=False, path=path)),
                "calibration_error": exc}
    except Exception as exc:  # tifffile raises many types for broken tags
        err = InputError(f"{path}: the TIFF's calibration metadata cannot be read ({exc}); give the "
                         f"pixel size yourself (measure/distribution: --pixel-size; Python: pixel_size_m=).")
        return {**of(CalibrationReading(None, f"none: calibration metadata unreadable ({exc})")),
                "calibration_error": err}


def _fei_bar_hint(tif, page):
    """FEI/Thermo records the scanned rows (``[Image] ResolutionY``); the rows below them are the
    data bar it appends: ``(rows, why)``, or None."""
    meta = getattr(tif, "fei_metadata", None) if "fei" in tif.flags else None
    image = meta.get("Image") if isinstance(meta, dict) else None
    try:
        scanned = int(image["ResolutionY"])
    except (TypeError, KeyError, ValueError):
        return None
    height = int(page.shape[0])
    bar = height - scanned
    if not 0 < bar <= 0.15 * height:
        return None
    return bar, f"FEI/Thermo metadata: [Image] ResolutionY {scanned} of {height} rows"


def _read_vendor_file(path: Path, notes: list):
    """A ``.dm3``/``.dm4``/Velox ``.emd`` image: pixels and calibration from rosettasciio."""
    try:
        reading, ax = vendor_file_calibration(path)
        meta = {"calibration": (reading.pixel_size_m, reading.source), "reading": reading,
                "calibration_error": None, "zeiss": False}
    except InputError as exc:
        if "cannot read it" in str(exc) or "holds" in str(exc):
            raise
        reading, ax = vendor_file_calibration(path, strict=False)
        meta = {"calibration": (reading.pixel_size_m, reading.source), "reading": reading,
                "calibration_error": exc, "zeiss": False}
    arr = np.asarray(ax.data)
    notes.append("pixels read with rosettasciio")
    return arr, meta, arr.dtype, None


def _read_raw(path: Path, page: int | None, notes: list, values: bool = False):
    """Read the gray pixel values.

    Returns the array, the metadata read while the file is open (``calibration``: (pixel size,
    source), ``zeiss``: bool), the stored dtype, and the palette indices that are not gray levels
    (None for non-palette images). With ``values`` (masks) a palette or min-is-white TIFF gives its
    stored pixel values, as ImageJ reads them, not what its colour map displays.
    """
    if path.suffix.lower() in VENDOR_FILE_SUFFIXES:
        return _read_vendor_file(path, notes)
    if path.suffix.lower() in TIFF_SUFFIXES or is_tiff(path):
        try:
            tif = tifffile.TiffFile(path)
        except Exception as exc:
            raise InputError(
                f"{path}: not a readable TIFF file ({exc}). It may be truncated or not an image."
            ) from exc
        with tif:
            pg = _select_page(tif, path, page, notes)
            arr = _read_page(pg, path)
            photometric = int(pg.photometric) if pg.photometric is not None else None
            original_dtype = arr.dtype
            off_ramp = None
            if values and (photometric in (0, 3)) and arr.ndim == 2:
                notes.append("pixel values read (the colour map or min-is-white only changes the display)")
            elif photometric == 3:  # palette
                arr, off_ramp = _palette_to_gray(arr, pg.colormap, path, notes)
            elif arr.ndim == 3 and arr.shape[-1] in (3, 4):
                arr = _rgb_to_gray(arr, path, notes)
            elif photometric == 0 and np.issubdtype(arr.dtype, np.integer):  # min-is-white
                arr = (np.iinfo(arr.dtype).max - arr).astype(arr.dtype)
                notes.append("min-is-white TIFF inverted to min-is-black")
            meta = dict(_page_calibration(pg, path), zeiss="CZ_SEM" in pg.tags,
                        bar_hint=_fei_bar_hint(tif, pg))
            return arr, meta, original_dtype, off_ramp
    if path.suffix.lower() in OTHER_SUFFIXES:
        try:
            with Image.open(path) as im:
                im.load()
                if im.mode == "P" and not values:
                    pal = np.asarray(im.getpalette(), dtype=np.int64).reshape(-1, 3).T * 257
                    raw = np.asarray(im)
                    gray, off_ramp = _palette_to_gray(raw, pal, path, notes)
                    return gray, _NO_META, raw.dtype, off_ramp
                arr = np.asarray(im)
        except (UnidentifiedImageError, OSError) as exc:
            raise InputError(f"{path}: not a readable image ({exc}).") from exc
        original_dtype = arr.dtype
        if arr.ndim == 3 and arr.shape[-1] in (3, 4):
            arr = _rgb_to_gray(arr, path, notes)
        return arr, _NO_META, original_dtype, None
    raise InputError(
        f"{path}: not an image tio2fiji can read (expected TIFF, PNG, JPEG, BMP, DM3/DM4 or Velox EMD; "
        f"the file does not start with a TIFF header)."
    )


def _check_2d(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.size == 0:
        raise InputError(f"{path}: image has zero size (array shape {arr.shape}): no pixels to analyse.")
    arr = np.squeeze(arr) if arr.ndim > 2 and 1 in arr.shape[:-2] else arr
    if arr.ndim != 2:
        raise InputError(f"{path}: expected a 2-D gray image, got an array of shape {arr.shape}.")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise InputError(f"{path}: unsupported pixel type {arr.dtype}.")
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise InputError(f"{path}: image contains NaN or infinite values.")
    return arr
