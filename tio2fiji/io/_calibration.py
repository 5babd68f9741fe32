"""Calibration: the physical pixel size from a file's own metadata, and lengths with units.

Read in this order: Zeiss ``CZ_SEM`` tag, FEI/Thermo ``FEI_HELIOS``/``FEI_SFEG`` tags (``[Scan]
PixelWidth``), ImageJ's ``ImageDescription`` (``unit=`` with the X resolution), TIFF X/Y resolution
with a length unit. Without any, lengths stay in pixels and the source says so.
"""

from __future__ import annotations

import math
import re

import tifffile

from ..errors import InputError
from ._files import TIFF_SUFFIXES, check_path, is_tiff

_NO_META = {"calibration": (None, "none: format has no calibration metadata, lengths in pixels"),
            "zeiss": False}
_LENGTH_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zA-Zµμ]+)\s*$")

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


def pixel_size_nm(pixel_size_m) -> float | None:
    """Check a pixel size given in metres and return it in nanometres (None stays None).

    Raises
    ------
    InputError
        Not a number, not positive and finite, or larger than 1 mm (surely not metres).
    """
    if pixel_size_m is None:
        return None
    try:
        value = float(pixel_size_m)
    except (TypeError, ValueError) as err:
        raise InputError(f"pixel_size_m must be a number of metres, got {pixel_size_m!r}.") from err
    if not (value > 0 and math.isfinite(value)):
        raise InputError(f"pixel_size_m must be a positive number of metres, got {pixel_size_m!r}.")
    if value > 1e-3:
        raise InputError(f"pixel_size_m is in metres; {value} m per pixel is implausible "
                         f"(7.3 nm is 7.3e-9).")
    return value * 1e9


def read_pixel_size(path) -> tuple[float | None, str]:
    """Pixel size (metres) and its source from a file's metadata, without reading its pixels."""
    path = check_path(path)
    if not (path.suffix.lower() in TIFF_SUFFIXES or is_tiff(path)):
        return _NO_META["calibration"]
    try:
        with tifffile.TiffFile(path) as tif:
            return read_calibration(tif.pages[0])
    except Exception as exc:
        raise InputError(f"{path}: not a readable TIFF file ({exc}).") from exc
