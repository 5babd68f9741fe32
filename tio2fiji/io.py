"""Reading SEM images and masks, and writing masks and label images.

The rules that decide which numbers reach the analysis live here:

* **Calibration** (physical pixel size) is read from the image's own metadata, in this order:
  Zeiss ``CZ_SEM`` tag, FEI/Thermo ``FEI_HELIOS``/``FEI_SFEG`` tags (``[Scan] PixelWidth``),
  ImageJ's ``ImageDescription`` (``unit=`` with the X resolution), TIFF X/Y resolution with a length
  unit. Without any, lengths stay in pixels and :attr:`SemImage.pixel_size_source` says so.
* **Palette images**: the BAM Zeiss files are 8-bit palette TIFFs whose colour map is the identity gray
  ramp except 27 overlay entries (indices 9, 18, ..., 243) coloured for the data bar's text. The raw
  index *is* the detector value. Mapping through the colour map instead would turn those overlay
  entries into saturated colours, i.e. put fake intensities into the data; so we read raw indices and
  check that the colour map is a gray ramp wherever the analysed area uses it.
* **Data bar**: the microscope's info bar at the bottom is found from the image content (see
  :func:`detect_data_bar`) unless the caller gives its height; the analysed area excludes it.
* **16-bit images** keep their full precision; :func:`normalize_for_network` is the one place that
  scales any image to the network's ``[0, 1]`` input range.
"""

from __future__ import annotations

import logging
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile

from .errors import InputError

log = logging.getLogger(__name__)

TIFF_SUFFIXES = (".tif", ".tiff")
OTHER_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")

# Units accepted in ImageJ descriptions and their size in metres.
_UNIT_METRES = {
    "m": 1.0, "meter": 1.0, "metre": 1.0,
    "cm": 1e-2, "mm": 1e-3,
    "um": 1e-6, "µm": 1e-6, "μm": 1e-6, "micron": 1e-6, "microns": 1e-6, "\\u00b5m": 1e-6,
    "nm": 1e-9, "nanometer": 1e-9, "nanometre": 1e-9,
    "pm": 1e-12, "a": 1e-10, "å": 1e-10, "angstrom": 1e-10,
}
# A TIFF resolution implying pixels larger than this is a screen/print default (72 dpi = 0.35 mm),
# not an SEM calibration.
_MAX_PLAUSIBLE_PIXEL_M = 1e-4


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


# --------------------------------------------------------------------------------------------------
# low-level file access


def _check_path(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found. Check the path (it is relative to {Path.cwd()}).")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not an image file.")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty (0 bytes).")
    return path


def _is_tiff(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(4)
    return head in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


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
        f"Choose one with page=K (command line: --page K), or save the slice you want as its own file."
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
    off_ramp = np.flatnonzero(~on_ramp)
    if off_ramp.size <= levels // 4:
        if off_ramp.size:
            notes.append(f"palette: gray ramp with {off_ramp.size} overlay entries; raw detector values used")
        return raw, off_ramp
    gray = (cmap[0] == cmap[1]) & (cmap[1] == cmap[2])
    if gray.all():
        # A gray but non-identity map (e.g. a contrast curve): its gray value is what was intended.
        notes.append("palette is gray but not an identity ramp; values mapped through the colour map")
        lut = (cmap[0] * (levels - 1) // 65535).astype(raw.dtype)
        return lut[raw], np.array([], dtype=np.int64)
    raise InputError(
        f"{path}: palette (colour-map) image whose colour map is neither a gray ramp nor gray, so its "
        f"values are not detector intensities. Export the image as 8-bit grayscale."
    )


def _check_palette_area(area: np.ndarray, off_ramp: np.ndarray, path: Path) -> None:
    if off_ramp is None or off_ramp.size == 0:
        return
    bad = np.isin(area, off_ramp)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise InputError(
            f"{path}: the analysed area uses coloured palette entries (e.g. index {int(area[r, c])} at "
            f"row {r}, column {c}; {int(bad.sum())} pixels), which are overlay colours, not detector "
            f"values. Check the data-bar height (--data-bar-rows) or export the image as 8-bit gray."
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


# --------------------------------------------------------------------------------------------------
# calibration


def _zeiss_pixel_size(tags) -> float | None:
    tag = tags.get("CZ_SEM") if hasattr(tags, "get") else None
    if tag is None:
        return None
    value = tag.value
    if not isinstance(value, dict):
        return None
    # The unnamed tuple's 4th entry is the pixel size in metres, stored unrounded
    # (ap_pixel_size is the same value rounded to 3 decimals in nm).
    head = value.get("")
    if isinstance(head, (tuple, list)) and len(head) > 3:
        try:
            ps = float(head[3])
            if 0 < ps < 1:
                return ps
        except (TypeError, ValueError):
            pass
    for key in ("ap_image_pixel_size", "ap_pixel_size"):
        entry = value.get(key)
        if isinstance(entry, (tuple, list)) and len(entry) >= 3:
            unit = str(entry[2]).strip()
            if unit in _UNIT_METRES:
                return float(entry[1]) * _UNIT_METRES[unit]
    return None


def _fei_pixel_size(tags) -> tuple[float, str] | None:
    for name in ("FEI_HELIOS", "FEI_SFEG"):
        tag = tags.get(name) if hasattr(tags, "get") else None
        if tag is None:
            continue
        value = tag.value
        if isinstance(value, str):
            value = _parse_ini(value)
        if not isinstance(value, dict):
            continue
        scan = value.get("Scan") or value.get("scan") or {}
        ps = scan.get("PixelWidth") if isinstance(scan, dict) else None
        if ps is not None:
            try:
                ps = float(ps)
            except (TypeError, ValueError):
                continue
            if 0 < ps < 1:
                return ps, name
    return None


def _parse_ini(text: str) -> dict:
    out, section = {}, None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = out.setdefault(line[1:-1], {})
        elif "=" in line and section is not None:
            k, v = line.split("=", 1)
            section[k.strip()] = v.strip()
    return out


def _resolution_pixels_per_unit(page) -> float | None:
    tag = page.tags.get("XResolution")
    if tag is None:
        return None
    num, den = tag.value
    if not num or not den:
        return None
    return num / den


def _imagej_pixel_size(page) -> float | None:
    desc = page.tags.get("ImageDescription")
    if desc is None or not isinstance(desc.value, str) or not desc.value.startswith("ImageJ="):
        return None
    m = re.search(r"^unit=(.+)$", desc.value, flags=re.MULTILINE)
    if not m:
        return None
    unit = m.group(1).strip().lower()
    if unit not in _UNIT_METRES:
        return None
    ppu = _resolution_pixels_per_unit(page)
    if not ppu:
        return None
    return _UNIT_METRES[unit] / ppu


def _tiff_resolution_pixel_size(page) -> tuple[float | None, str | None]:
    unit_tag = page.tags.get("ResolutionUnit")
    unit = int(unit_tag.value) if unit_tag is not None else 2  # TIFF default: inch
    metres = {2: 0.0254, 3: 0.01}.get(unit)
    if metres is None:
        return None, None
    ppu = _resolution_pixels_per_unit(page)
    if not ppu:
        return None, None
    ps = metres / ppu
    if ps > _MAX_PLAUSIBLE_PIXEL_M:
        return None, (f"TIFF resolution {ppu:g} pixels per {'inch' if unit == 2 else 'cm'} ignored: "
                      f"a print/screen default, not an SEM calibration")
    return ps, "TIFF XResolution"


def read_calibration(page) -> tuple[float | None, str]:
    """Pixel size in metres from a TIFF page's metadata, with its source.

    Parameters
    ----------
    page : tifffile.TiffPage

    Returns
    -------
    pixel_size_m : float or None
    source : str
        ``"CZ_SEM"``, ``"FEI_HELIOS"``, ``"FEI_SFEG"``, ``"ImageJ"``, ``"TIFF XResolution"``, or a
        sentence saying why there is no calibration.
    """
    tags = page.tags
    ps = _zeiss_pixel_size(tags)
    if ps is not None:
        return ps, "CZ_SEM"
    fei = _fei_pixel_size(tags)
    if fei is not None:
        return fei
    ps = _imagej_pixel_size(page)
    if ps is not None:
        return ps, "ImageJ"
    ps, why = _tiff_resolution_pixel_size(page)
    if ps is not None:
        return ps, why
    reason = "none: no calibration in metadata, lengths in pixels"
    if why:
        reason += f" ({why})"
    return None, reason


# --------------------------------------------------------------------------------------------------
# data bar


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


# --------------------------------------------------------------------------------------------------
# public readers


_NO_META = {"calibration": (None, "none: format has no calibration metadata, lengths in pixels"),
            "zeiss": False}


def _read_raw(path: Path, page: int | None, notes: list):
    """Read the gray pixel values.

    Returns the array, the metadata read while the file is open (``calibration``: (pixel size,
    source), ``zeiss``: bool), the stored dtype, and the palette indices that are not gray levels
    (None for non-palette images).
    """
    if path.suffix.lower() in TIFF_SUFFIXES or _is_tiff(path):
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
            if photometric == 3:  # palette
                arr, off_ramp = _palette_to_gray(arr, pg.colormap, path, notes)
            elif arr.ndim == 3 and arr.shape[-1] in (3, 4):
                arr = _rgb_to_gray(arr, path, notes)
            elif photometric == 0 and np.issubdtype(arr.dtype, np.integer):  # min-is-white
                arr = (np.iinfo(arr.dtype).max - arr).astype(arr.dtype)
                notes.append("min-is-white TIFF inverted to min-is-black")
            meta = {"calibration": read_calibration(pg), "zeiss": "CZ_SEM" in pg.tags}
            return arr, meta, original_dtype, off_ramp
    if path.suffix.lower() in OTHER_SUFFIXES:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                im.load()
                if im.mode == "P":
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
        f"{path}: not an image tio2fiji can read (expected TIFF, PNG, JPEG or BMP; "
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
    path = _check_path(path)
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


def normalize_for_network(image: np.ndarray, bits: int | None = None) -> np.ndarray:
    """Scale a gray image to float32 in ``[0, 1]``: the networks' input convention.

    This is the only place where intensities are rescaled; measurements never use its output.

    * uint8: divided by 255 (as in training).
    * other unsigned integers: divided by ``2**bits - 1``. ``bits`` defaults to the smallest of
      8, 10, 12, 14, 16 that holds the image's maximum, so 12-bit detector data stored in 16-bit
      containers are not squeezed into the bottom sixteenth of the range.
    * floats already in ``[0, 1]`` are kept; other floats are min-max scaled.
    """
    img = np.asarray(image)
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    if np.issubdtype(img.dtype, np.unsignedinteger) or np.issubdtype(img.dtype, np.signedinteger):
        if np.issubdtype(img.dtype, np.signedinteger) and img.min() < 0:
            raise InputError("signed image with negative values: cannot be a detector signal.")
        if bits is None:
            top = int(img.max())
            bits = next((b for b in (8, 10, 12, 14, 16, 32) if top < 2 ** b), 64)
        return (img.astype(np.float64) / (2 ** bits - 1)).astype(np.float32)
    img = img.astype(np.float32)
    lo, hi = float(img.min()), float(img.max())
    if lo >= 0.0 and hi <= 1.0:
        return img
    if hi == lo:
        return np.zeros_like(img)
    return (img - lo) / (hi - lo)


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


def pixel_size_nm(pixel_size) -> float | None:
    """Check a pixel size given in metres and return it in nanometres (None stays None).

    Raises
    ------
    InputError
        Not a number, not positive and finite, or larger than 1 mm (surely not metres).
    """
    if pixel_size is None:
        return None
    try:
        value = float(pixel_size)
    except (TypeError, ValueError) as err:
        raise InputError(f"pixel_size must be a number of metres, got {pixel_size!r}.") from err
    if not (value > 0 and math.isfinite(value)):
        raise InputError(f"pixel_size must be a positive number of metres, got {pixel_size!r}.")
    if value > 1e-3:
        raise InputError(f"pixel_size is in metres; {value} m per pixel is implausible "
                         f"(7.3 nm is 7.3e-9).")
    return value * 1e9


def read_mask(path, threshold: float | None = None, kind: str = "auto", page: int | None = None) -> np.ndarray:
    """Read a binary mask as a boolean array (True = particle).

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
    path = _check_path(path)
    notes: list[str] = []
    arr = _read_raw(path, page, notes)[0]
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
        f"mask give a threshold (--threshold T keeps pixels > T); label images must be 16- or 32-bit."
    )


def read_mask_or_labels(path, threshold: float | None = None, page: int | None = None) -> np.ndarray:
    """Read a mask file as a bool mask, or as int labels when it is a label image.

    Label images (integer types wider than 8 bits with more than two values) keep their labels so
    that touching particles stay apart; everything else follows :func:`read_mask`.
    """
    path = _check_path(path)
    arr = _check_2d(_read_raw(path, page, [])[0], path)
    if (threshold is None and np.issubdtype(arr.dtype, np.integer) and arr.dtype.itemsize > 1
            and arr.min() >= 0 and np.unique(arr[arr > 0]).size > 1):
        return arr.astype(np.int64 if arr.max() > np.iinfo(np.int32).max else np.int32)
    return mask_from_array(arr, threshold=threshold, name=str(path))


def read_labels(path, page: int | None = None) -> np.ndarray:
    """Read a label image (0 = background, each particle one positive integer) as int32/int64."""
    path = _check_path(path)
    notes: list[str] = []
    arr = _read_raw(path, page, notes)[0]
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


# --------------------------------------------------------------------------------------------------
# writers


def _atomic_write(path: Path, write) -> Path:
    """Write through ``write(tmp_path)`` to a temporary file next to ``path``, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    # mkstemp makes the file private (0600); give it the permissions a plain open() would
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _imagej_resolution(pixel_size_m: float | None):
    if pixel_size_m is None:
        return {}
    per_nm = 1.0 / (pixel_size_m * 1e9)
    return {"resolution": (per_nm, per_nm), "metadata": {"unit": "nm"}}


def write_mask(path, mask: np.ndarray, pixel_size_m: float | None = None) -> Path:
    """Write a boolean mask as an 8-bit 0/255 ImageJ TIFF (255 = particle), atomically."""
    data = np.asarray(mask).astype(bool).astype(np.uint8) * 255
    kw = _imagej_resolution(pixel_size_m)
    return _atomic_write(path, lambda p: tifffile.imwrite(p, data, imagej=True, **kw))


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
        return _atomic_write(path, lambda p: tifffile.imwrite(p, data, imagej=True, **kw))
    data = lab.astype(np.uint32)
    kw = {}
    if pixel_size_m is not None:
        per_cm = 0.01 / pixel_size_m
        kw = {"resolution": (per_cm, per_cm), "resolutionunit": "CENTIMETER"}
    return _atomic_write(path, lambda p: tifffile.imwrite(p, data, **kw))


def write_csv(path, table, **kwargs) -> Path:
    """Write a pandas DataFrame as CSV through a temporary file and a rename."""
    kwargs.setdefault("index", False)
    return _atomic_write(path, lambda p: table.to_csv(p, **kwargs))


def write_json(path, obj) -> Path:
    """Write a JSON document through a temporary file and a rename."""
    import json

    def _write(p):
        with open(p, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=2, default=str)
            fh.write("\n")

    return _atomic_write(path, _write)


_LENGTH_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zA-Zµμ]+)\s*$")


def parse_length(text: str) -> float:
    """Parse a length with its unit (``"7.34375nm"``, ``"0.5 um"``) into metres."""
    m = _LENGTH_RE.match(str(text))
    if not m or m.group(2).lower() not in _UNIT_METRES:
        raise InputError(
            f"pixel size {text!r}: give a number with a length unit, e.g. 7.34375nm or 0.0073um "
            f"(units: nm, um, µm, mm, m)."
        )
    value = float(m.group(1)) * _UNIT_METRES[m.group(2).lower()]
    if value <= 0:
        raise InputError(f"pixel size {text!r} must be positive.")
    return value


def read_pixel_size(path) -> tuple[float | None, str]:
    """Pixel size (metres) and its source from a file's metadata, without reading its pixels."""
    path = _check_path(path)
    if not (path.suffix.lower() in TIFF_SUFFIXES or _is_tiff(path)):
        return _NO_META["calibration"]
    try:
        with tifffile.TiffFile(path) as tif:
            return read_calibration(tif.pages[0])
    except Exception as exc:
        raise InputError(f"{path}: not a readable TIFF file ({exc}).") from exc
