"""Calibration: the physical pixel size from a file's own metadata, and lengths with units.

Read in this order, the first that gives a value wins: Zeiss ``CZ_SEM`` tag, FEI/Thermo
``FEI_HELIOS``/``FEI_SFEG`` tags (``[Scan] PixelWidth``), ImageJ's ``ImageDescription`` (``unit=``
with the X resolution), TIFF X resolution with a length unit (inch/cm). Every value must pass the
one plausibility rule, :func:`pixel_size_problem`: a microscope tag that fails it is an error (broken
metadata), an ImageJ or TIFF resolution that fails it (a print/screen dpi) is ignored and the
source says why. Without any, lengths stay in pixels and the source says so.
"""

from __future__ import annotations

import math
import re

import tifffile

from ..errors import InputError
from ._files import TIFF_SUFFIXES, check_path, is_tiff

_NO_META = {"calibration": (None, "none: format has no calibration metadata, lengths in pixels"),
            "calibration_error": None, "zeiss": False}
_LENGTH_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zA-Zµμ]+)\s*$")

# Units accepted in ImageJ descriptions and their size in metres.
_UNIT_METRES = {
    "m": 1.0, "meter": 1.0, "metre": 1.0,
    "cm": 1e-2, "mm": 1e-3,
    "um": 1e-6, "µm": 1e-6, "μm": 1e-6, "micron": 1e-6, "microns": 1e-6, "\\u00b5m": 1e-6,
    "nm": 1e-9, "nanometer": 1e-9, "nanometre": 1e-9,
    "pm": 1e-12, "a": 1e-10, "å": 1e-10, "angstrom": 1e-10,
}


# The one plausibility rule for a pixel size (metres). SEM pixels of nanoparticle images are ~1-100 nm;
# a whole SEM field at the lowest magnification is ~1 cm, i.e. ~10 um pixels. A calibration outside
# PIXEL_SIZE_RANGE_M is broken metadata or a wrong unit. A bare TIFF resolution (inch/cm units, the
# weakest evidence) must also claim a pixel of at most RESOLUTION_MAX_PIXEL_M: print and screen
# resolutions (72-1200 dpi = 353-21 um, even 9600 dpi = 2.6 um) never pass it.
PIXEL_SIZE_RANGE_M = (1e-12, 1e-3)
RESOLUTION_MAX_PIXEL_M = 1e-6
RESOLUTION_SOURCE = "TIFF XResolution"
MICROSCOPE_SOURCES = ("CZ_SEM", "FEI_HELIOS", "FEI_SFEG")
_REMEDY = ("fix or remove the tag, or give the pixel size yourself (measure/distribution: --pixel-size "
           "7.3nm; Python: pixel_size_m=)")
# ImageJ units that it copies from a TIFF resolution unit: such calibrations get the resolution rule.
_IMAGEJ_RESOLUTION_UNITS = {"cm", "m", "meter", "metre"}


def _format_length(value: float) -> str:
    for unit, scale in (("mm", 1e-3), ("µm", 1e-6), ("nm", 1e-9)):
        if abs(value) >= scale:
            return f"{value / scale:.4g} {unit}"
    return f"{value:.4g} m"


def pixel_size_problem(pixel_size_m, source: str = "given") -> str | None:
    """Why ``pixel_size_m`` is not a plausible SEM calibration, or None when it is.

    The rule of tio2fiji: a pixel size is a finite number of metres within
    :data:`PIXEL_SIZE_RANGE_M` (1 pm to 1 mm); one from a bare TIFF resolution (``source``
    ``"TIFF XResolution"``) must also be at most :data:`RESOLUTION_MAX_PIXEL_M` (1 µm), which no
    print or screen resolution is.

    Parameters
    ----------
    pixel_size_m : float
    source : str
        Where the value comes from (as in :func:`read_calibration`).

    Returns
    -------
    str or None
    """
    try:
        value = float(pixel_size_m)
    except (TypeError, ValueError, OverflowError):
        return f"{pixel_size_m!r} is not a number"
    if not (math.isfinite(value) and value > 0):
        return f"{value:g} m is not a positive finite length"
    lo, hi = PIXEL_SIZE_RANGE_M
    if not lo <= value <= hi:
        return f"{value:g} m per pixel is outside the range of any SEM calibration (1 pm to 1 mm)"
    if source == RESOLUTION_SOURCE and value > RESOLUTION_MAX_PIXEL_M:
        return (f"{_format_length(value)} pixels are a print/screen resolution, not an SEM calibration "
                f"(a TIFF resolution is used only for pixels up to 1 µm)")
    return None


def calibration_rank(source: str) -> int:
    """How strong a calibration source is: given 4, microscope tag 3, ImageJ 2, TIFF resolution 1, none 0."""
    if source == "given":
        return 4
    if source in MICROSCOPE_SOURCES:
        return 3
    return {"ImageJ": 2, RESOLUTION_SOURCE: 1}.get(source, 0)


def choose_calibration(image_cal, mask_cal, image_name: str, mask_name: str) -> tuple[float | None, str]:
    """The calibration of a mask measured beside its SEM image: the stronger source wins.

    Sources are ordered by :func:`calibration_rank` (the microscope's tag on the image beats
    anything on the mask; ImageJ beats a TIFF resolution); on a tie the image wins. The returned
    source names the file it came from, and a different calibration that was not used.

    Parameters
    ----------
    image_cal, mask_cal : tuple of (float or None, str)
        ``(pixel_size_m, source)`` of the image and of the mask, as :func:`read_calibration` gives.
    image_name, mask_name : str

    Returns
    -------
    pixel_size_m : float or None
    source : str
    """
    (ips, isrc), (mps, msrc) = image_cal, mask_cal
    if calibration_rank(msrc) > calibration_rank(isrc):
        ps, source, (ops, osrc, oname) = mps, f"{msrc} of {mask_name}", (ips, isrc, image_name)
    else:
        ps, source, (ops, osrc, oname) = ips, f"{isrc} of {image_name}", (mps, msrc, mask_name)
    if ps is not None and ops is not None and not math.isclose(ps, ops, rel_tol=1e-3):
        source += f" ({osrc} of {oname}: {_format_length(ops)}, not used)"
    return ps, source


def _as_number(value):
    if isinstance(value, bool):
        return value
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return value


def _broken_tag(name: str, tag: str, value, problem: str) -> InputError:
    shown = f"{value:g} m" if isinstance(value, float) else repr(value)
    return InputError(f"{name}: the microscope's {tag} tag gives the pixel size as {shown}, which "
                      f"is not a valid calibration ({problem}); {_REMEDY}.")


def _pick_microscope_value(candidates, name: str, tag: str) -> float | None:
    """The first valid of a tag's pixel-size entries; an error when it has some but none is valid."""
    if not candidates:
        return None
    for value in candidates:
        if isinstance(value, float) and pixel_size_problem(value, tag) is None:
            return value
    raise _broken_tag(name, tag, candidates[0], pixel_size_problem(candidates[0], tag))


def _zeiss_pixel_size(tags, name: str) -> float | None:
    tag = tags.get("CZ_SEM") if hasattr(tags, "get") else None
    value = tag.value if tag is not None else None
    if not isinstance(value, dict):
        return None
    candidates = []
    # The unnamed tuple's 4th entry is the pixel size in metres, stored unrounded
    # (ap_pixel_size is the same value rounded to 3 decimals in nm).
    head = value.get("")
    if isinstance(head, (tuple, list)) and len(head) > 3:
        candidates.append(_as_number(head[3]))
    for key in ("ap_image_pixel_size", "ap_pixel_size"):
        entry = value.get(key)
        if isinstance(entry, (tuple, list)) and len(entry) >= 2:
            unit = str(entry[2]).strip() if len(entry) >= 3 else ""
            number = _as_number(entry[1])
            if unit in _UNIT_METRES and isinstance(number, float):
                candidates.append(number * _UNIT_METRES[unit])
            else:
                candidates.append(f"{entry[1]} {unit}".strip())
    return _pick_microscope_value(candidates, name, "CZ_SEM")


def _fei_pixel_size(tags, name: str) -> tuple[float, str] | None:
    for tag_name in MICROSCOPE_SOURCES[1:]:
        tag = tags.get(tag_name) if hasattr(tags, "get") else None
        if tag is None:
            continue
        value = tag.value
        if isinstance(value, (str, bytes)):
            value = _parse_ini(value.decode("latin-1") if isinstance(value, bytes) else value)
        if not isinstance(value, dict):
            continue
        scan = value.get("Scan") or value.get("scan") or {}
        ps = scan.get("PixelWidth") if isinstance(scan, dict) else None
        if ps is not None:
            return _pick_microscope_value([_as_number(ps)], name, tag_name), tag_name
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
    try:
        num, den = tag.value
        ppu = float(num) / float(den)
    except (AttributeError, TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None
    return ppu if math.isfinite(ppu) and ppu > 0 else None


def _imagej_pixel_size(page) -> tuple[float | None, str | None]:
    desc = page.tags.get("ImageDescription")
    if desc is None or not isinstance(desc.value, str) or not desc.value.startswith("ImageJ="):
        return None, None
    m = re.search(r"^unit=(.+)$", desc.value, flags=re.MULTILINE)
    if not m:
        return None, None
    unit = m.group(1).strip().lower()
    ppu = _resolution_pixels_per_unit(page)
    if unit not in _UNIT_METRES or not ppu:
        return None, None
    ps = _UNIT_METRES[unit] / ppu
    # ImageJ copies a TIFF resolution's unit (cm) into its own: that is a print resolution again
    rule = RESOLUTION_SOURCE if unit in _IMAGEJ_RESOLUTION_UNITS else "ImageJ"
    problem = pixel_size_problem(ps, rule)
    if problem:
        return None, f"ImageJ calibration {ppu:g} pixels per {unit} ignored: {problem}"
    return ps, None


def _tiff_resolution_pixel_size(page) -> tuple[float | None, str | None]:
    unit_tag = page.tags.get("ResolutionUnit")
    try:
        unit = int(unit_tag.value) if unit_tag is not None else 2  # TIFF default: inch
    except (TypeError, ValueError):
        return None, None
    metres = {2: 0.0254, 3: 0.01}.get(unit)
    ppu = _resolution_pixels_per_unit(page) if metres else None
    if not ppu:
        return None, None
    ps = metres / ppu
    problem = pixel_size_problem(ps, RESOLUTION_SOURCE)
    if problem:
        return None, (f"TIFF resolution {ppu:g} pixels per {'inch' if unit == 2 else 'cm'} ignored: "
                      f"{problem}")
    return ps, None


def read_calibration(page, name: str | None = None, strict: bool = True) -> tuple[float | None, str]:
    """Pixel size in metres from a TIFF page's metadata, with its source.

    The strongest source wins: the microscope's own tag (Zeiss ``CZ_SEM``, FEI ``FEI_HELIOS`` /
    ``FEI_SFEG``), then ImageJ's calibration (``unit=`` in the description), then a bare TIFF
    resolution in inch/cm. Every value must pass :func:`pixel_size_problem`; an ImageJ
    calibration or TIFF resolution that does not is ignored and the source says why.

    Parameters
    ----------
    page : tifffile.TiffPage
    name : str, optional
        The file, for error messages.
    strict : bool
        A microscope tag with a broken pixel size (0, negative, NaN, infinite, absurd) is an
        :class:`InputError`; with ``strict=False`` it is ignored and the source says why.

    Returns
    -------
    pixel_size_m : float or None
    source : str
        ``"CZ_SEM"``, ``"FEI_HELIOS"``, ``"FEI_SFEG"``, ``"ImageJ"``, ``"TIFF XResolution"``, or a
        sentence saying why there is no calibration.

    Raises
    ------
    InputError
        ``strict`` and a microscope tag whose pixel size is not valid.
    """
    name = name or "TIFF page"
    tags = page.tags
    try:
        ps = _zeiss_pixel_size(tags, name)
        if ps is not None:
            return ps, "CZ_SEM"
        fei = _fei_pixel_size(tags, name)
        if fei is not None:
            return fei
    except InputError as exc:
        if strict:
            raise
        return None, f"none: {str(exc)[len(name) + 2:].split('; ')[0]}"
    ps, why_ij = _imagej_pixel_size(page)
    if ps is not None:
        return ps, "ImageJ"
    ps, why = _tiff_resolution_pixel_size(page)
    if ps is not None:
        return ps, RESOLUTION_SOURCE
    reasons = "; ".join(w for w in (why_ij, why) if w)
    reason = "none: no calibration in metadata, lengths in pixels"
    return None, reason + (f" ({reasons})" if reasons else "")


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
    problem = pixel_size_problem(value)
    if problem:
        raise InputError(f"pixel size {text!r}: {problem}; give the pixel width, e.g. 7.34375nm.")
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
    if value > PIXEL_SIZE_RANGE_M[1]:
        raise InputError(f"pixel_size_m is in metres; {value} m per pixel is implausible "
                         f"(7.3 nm is 7.3e-9).")
    return value * 1e9


def read_pixel_size(path, strict: bool = True) -> tuple[float | None, str]:
    """Pixel size (metres) and its source from a file's metadata, without reading its pixels.

    ``strict`` as in :func:`read_calibration`: a broken microscope tag is an :class:`InputError`.
    """
    path = check_path(path)
    if not (path.suffix.lower() in TIFF_SUFFIXES or is_tiff(path)):
        return _NO_META["calibration"]
    try:
        tif = tifffile.TiffFile(path)
    except Exception as exc:
        raise InputError(f"{path}: not a readable TIFF file ({exc}).") from exc
    with tif:
        if not len(tif.pages):
            raise InputError(f"{path}: TIFF file has no image pages.")
        try:
            return read_calibration(tif.pages[0], name=str(path), strict=strict)
        except InputError:
            raise
        except Exception as exc:  # tifffile raises many types for broken tags
            raise InputError(f"{path}: the TIFF's metadata cannot be read ({exc}).") from exc
