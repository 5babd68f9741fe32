"""Calibration: the physical pixel size from a file's own metadata, and lengths with units.

The vendors' conventions are rosettasciio's (:mod:`._vendor`): Zeiss ``CZ_SEM``, FEI/Thermo
``FEI_HELIOS``/``FEI_SFEG``, JEOL SightX, DigitalMicrograph, TVIPS, Olympus SIS, and the
``.dm3``/``.dm4``/Velox ``.emd`` formats. tio2fiji's own rules stay on top of it: the two axes must be
lengths (not a diffraction pattern's reciprocal space, not time or wavelength), the pixels square,
and every value must pass the one plausibility rule, :func:`pixel_size_problem`.

**Square pixels**, one rule for every source (a vendor's tags, ImageJ's ``unit=`` with the X and
Y resolutions, a bare TIFF resolution): tio2fiji measures with one pixel size, so a file whose
pixel height differs from its width by more than 0.1 % gives no calibration; its source starts
``"none: "`` and contains :data:`NOT_SQUARE` (``tio2fiji info`` prints it). Nothing squares it
silently: :func:`tio2fiji.io.calibrate_missing` does not read a burned-in scale bar instead (one
axis only), ``analyze`` refuses the image in one line unless the user gives ``--pixel-size`` or
``--allow-pixels``, and ``measure`` reports lengths in pixels with that source. A microscope tag
whose value fails it is an error (broken metadata). Without a vendor convention: ImageJ's
``ImageDescription`` (``unit=`` with the X resolution; any length unit), then a bare TIFF X
resolution with a length unit (inch/cm), which must not be a print/screen dpi. Without any, lengths
stay in pixels and the source says why.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import tifffile

from ..errors import InputError
from ._files import TIFF_SUFFIXES, check_path, is_tiff
from ._vendor import VENDOR_SUFFIXES, read_vendor_axes, tiff_vendor

_NO_META = {"calibration": (None, "none: format has no calibration metadata, lengths in pixels"),
            "calibration_error": None, "zeiss": False}
_LENGTH_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(\S*)\s*$")

#: The units of a pixel size the user types (``--pixel-size``, :func:`parse_length`), exactly as
#: written here, and their size in metres.
LENGTH_UNITS = {"nm": 1e-9, "um": 1e-6, "µm": 1e-6, "mm": 1e-3, "m": 1.0}
# "µm" typed with the Greek mu (U+03BC) instead of the micro sign (U+00B5): the same glyph
_LENGTH_UNIT_METRES = {**LENGTH_UNITS, "\u03bcm": 1e-6}

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
#: Calibrations set by the instrument's own software (rank 3, a broken value is an error).
MICROSCOPE_SOURCES = ("CZ_SEM", "FEI_HELIOS", "FEI_SFEG", "JEOL SightX", "DigitalMicrograph", "TVIPS",
                      "Olympus SIS", "Velox EMD")
_REMEDY = ("fix or remove the tag, or give the pixel size yourself (--pixel-size 7.3nm; Python: "
           "pixel_size_m=)")
#: The source of a pixel size the user gave (``--pixel-size``, ``pixel_size_m=``): it overrides the
#: file's calibration in every command (:func:`given_source` says what it replaced).
GIVEN = "--pixel-size"
# ImageJ units that it copies from a TIFF resolution unit: such calibrations get the resolution rule.
_IMAGEJ_RESOLUTION_UNITS = {"cm", "m", "meter", "metre"}
#: In the source of a file whose pixels are not square (see the module docstring).
NOT_SQUARE = "pixels are not square"
_SQUARE_RTOL = 1e-3


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


def given_source(given_pixel_size_m, file_pixel_size_m=None, broken: bool = False) -> str:
    """The source of a pixel size the user gave, saying what it replaced.

    One rule for every command: the user's ``--pixel-size`` (``pixel_size_m=``) overrides the
    file's calibration, and the outputs say so: ``"--pixel-size (overrides the file's 7.34375 nm)"``,
    ``"--pixel-size (equal to the file's 7.34375 nm)"``, ``"--pixel-size (the file's metadata has
    none)"`` or, ``broken``, ``"--pixel-size (the file's calibration is not valid)"``.
    """
    if file_pixel_size_m is None:
        return f"{GIVEN} (the file's calibration is not valid)" if broken else f"{GIVEN} (the file's metadata has none)"
    file_nm = f"{float(file_pixel_size_m) * 1e9:.6g} nm"
    if math.isclose(float(given_pixel_size_m), float(file_pixel_size_m), rel_tol=1e-9):
        return f"{GIVEN} (equal to the file's {file_nm})"
    return f"{GIVEN} (overrides the file's {file_nm})"


def calibration_rank(source: str) -> int:
    """How strong a calibration source is: given 4, microscope tag 3, ImageJ or a burned-in field
    width / scale bar 2, TIFF resolution 1, none 0."""
    if source == "given" or source.startswith(GIVEN):
        return 4
    if source in MICROSCOPE_SOURCES:
        return 3
    if source.startswith("burned-in ") or source.startswith("given"):
        return 2 if source.startswith("burned-in ") else 4
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


def _not_square(what: str, x_m: float, y_m: float | None, **extra) -> CalibrationReading | None:
    """The reading of a file whose pixels are ``x_m`` wide and ``y_m`` high, when they are not
    square (None when they are, or the height is unknown)."""
    if y_m is None or math.isclose(x_m, y_m, rel_tol=_SQUARE_RTOL):
        return None
    return CalibrationReading(None, f"none: the {what} {NOT_SQUARE} ({_format_length(x_m)} wide, "
                                    f"{_format_length(y_m)} high); tio2fiji measures with one pixel "
                                    f"size: resample the image to square pixels, or give the pixel "
                                    f"size yourself (--pixel-size)", **extra)


def _resolution_pixels_per_unit(page, tag_name: str = "XResolution") -> float | None:
    tag = page.tags.get(tag_name)
    try:
        num, den = tag.value
        ppu = float(num) / float(den)
    except (AttributeError, TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None
    return ppu if math.isfinite(ppu) and ppu > 0 else None


def _height_m(page, unit_m: float) -> float | None:
    """The pixel height from the YResolution tag (``unit_m`` metres per resolution unit); None
    when the tag is missing or unreadable (the pixels are then taken as square)."""
    ppu = _resolution_pixels_per_unit(page, "YResolution")
    return unit_m / ppu if ppu else None


def _imagej_pixel_size(page) -> tuple[float | None, str | None, float | None]:
    """ImageJ's pixel width and height in metres (``unit=``/``yunit=`` with the X and Y
    resolutions), or why its calibration is ignored: ``(width, why, height)``."""
    desc = page.tags.get("ImageDescription")
    if desc is None or not isinstance(desc.value, str) or not desc.value.startswith("ImageJ="):
        return None, None, None
    m = re.search(r"^unit=(.+)$", desc.value, flags=re.MULTILINE)
    if not m:
        return None, None, None
    unit = m.group(1).strip().lower()
    ppu = _resolution_pixels_per_unit(page)
    if unit not in _UNIT_METRES or not ppu:
        return None, None, None
    ps = _UNIT_METRES[unit] / ppu
    # ImageJ copies a TIFF resolution's unit (cm) into its own: that is a print resolution again
    rule = RESOLUTION_SOURCE if unit in _IMAGEJ_RESOLUTION_UNITS else "ImageJ"
    problem = pixel_size_problem(ps, rule)
    if problem:
        return None, f"ImageJ calibration {ppu:g} pixels per {unit} ignored: {problem}", None
    ym = re.search(r"^yunit=(.+)$", desc.value, flags=re.MULTILINE)
    yunit = ym.group(1).strip().lower() if ym else unit
    return ps, None, _height_m(page, _UNIT_METRES[yunit]) if yunit in _UNIT_METRES else None


def _tiff_resolution_pixel_size(page) -> tuple[float | None, str | None, float | None]:
    """A bare TIFF resolution's pixel width and height in metres, or why it is ignored:
    ``(width, why, height)``."""
    unit_tag = page.tags.get("ResolutionUnit")
    try:
        unit = int(unit_tag.value) if unit_tag is not None else 2  # TIFF default: inch
    except (TypeError, ValueError):
        return None, None, None
    metres = {2: 0.0254, 3: 0.01}.get(unit)
    ppu = _resolution_pixels_per_unit(page) if metres else None
    if not ppu:
        return None, None, None
    ps = metres / ppu
    problem = pixel_size_problem(ps, RESOLUTION_SOURCE)
    if problem:
        return None, (f"TIFF resolution {ppu:g} pixels per {'inch' if unit == 2 else 'cm'} ignored: "
                      f"{problem}"), None
    return ps, None, _height_m(page, metres)


@dataclass(frozen=True)
class CalibrationReading:
    """A file's calibration with where it was found (what ``tio2fiji info`` prints).

    Attributes
    ----------
    pixel_size_m : float or None
    source : str
        ``"CZ_SEM"``, ``"FEI_HELIOS"``, ``"FEI_SFEG"``, ``"JEOL SightX"``, ``"DigitalMicrograph"``,
        ``"TVIPS"``, ``"Olympus SIS"``, ``"Velox EMD"``, ``"ImageJ"``, ``"TIFF XResolution"``, or a
        sentence starting with ``"none:"`` saying why there is no calibration.
    where : str
        The tag or entry, and the reader (e.g. ``"Zeiss CZ_SEM tag, its pixel size x 1024 / the
        image's width in pixels (rosettasciio)"``).
    magnification, beam_energy_kv : float or None
        As the vendor metadata records them.
    notes : tuple of str
        Cross-checks and what the reader said.
    """

    pixel_size_m: float | None
    source: str
    where: str = ""
    magnification: float | None = None
    beam_energy_kv: float | None = None
    notes: tuple = ()


def _axis_metres(scale: float, units) -> float | None:
    if units is None:
        return None
    unit = str(units).strip().lower().replace(" ", "")
    if unit not in _UNIT_METRES:
        return None
    return float(scale) * _UNIT_METRES[unit]


def _zeiss_width_check(page, ps: float) -> str | None:
    """Zeiss prints the field width ("Width", 4 digits): width / columns must agree with the tag."""
    tag = page.tags.get("CZ_SEM")
    entry = tag.value.get("ap_width") if tag is not None and isinstance(tag.value, dict) else None
    if not (isinstance(entry, (tuple, list)) and len(entry) >= 3):
        return None
    metres = _axis_metres(_as_number(entry[1]) if isinstance(_as_number(entry[1]), float) else 0.0, entry[2])
    if not metres:
        return None
    cols = int(page.shape[-1])
    ratio = ps * cols / metres
    verdict = "agrees" if abs(ratio - 1) < 5e-3 else f"DISAGREES by {ratio - 1:+.2%}"
    return (f"Zeiss field width {entry[1]} {entry[2]} / {cols} columns = {_format_length(metres / cols)} "
            f"{verdict} with the pixel size")


def _zeiss_entries(page) -> list:
    """The CZ_SEM named entries that give the pixel size of the stored image, in metres (or the
    raw text where it is not a length): "Image Pixel Size" as it is, "Pixel Size" (which refers to
    a frame 1024 pixels wide, as the unnamed entry does) scaled to the image's width, and the field
    "Width" over the columns."""
    tag = page.tags.get("CZ_SEM")
    value = tag.value if tag is not None else None
    if not isinstance(value, dict):
        return []
    cols = int(page.shape[-1])
    out = []
    for key, factor in (("ap_image_pixel_size", 1.0), ("ap_pixel_size", 1024 / cols), ("ap_width", 1 / cols)):
        entry = value.get(key)
        if isinstance(entry, (tuple, list)) and len(entry) >= 2:
            number = _as_number(entry[1])
            metres = _axis_metres(number, entry[2]) if len(entry) >= 3 and isinstance(number, float) else None
            out.append((f"{entry[0]} {entry[1]} {entry[2] if len(entry) >= 3 else ''}".strip(),
                        metres * factor if metres is not None else None))
    return out


def _fei_entry(page):
    """FEI/Thermo ``[Scan] PixelWidth`` as the tag holds it (number or text), or None."""
    tif = page.parent
    meta = getattr(tif, "fei_metadata", None) if tif is not None else None
    scan = meta.get("Scan") if isinstance(meta, dict) else None
    if not isinstance(scan, dict) or "PixelWidth" not in scan:
        return None
    return _as_number(scan["PixelWidth"])


def _rescue(ax, page, name: str, strict: bool, problem: str | None):
    """rosettasciio's value is missing or broken: what the vendor's own entries say instead.

    A valid entry is used (and says so); a broken one is an error under ``strict`` (broken
    metadata must not become pixels silently); no entry at all gives None."""
    vendor = ax.vendor
    entries = []
    if vendor == "CZ_SEM":
        entries = _zeiss_entries(page)
    elif vendor in ("FEI_HELIOS", "FEI_SFEG"):
        raw = _fei_entry(page)
        if raw is not None:
            entries = [(f"[Scan] PixelWidth = {raw}", raw if isinstance(raw, float) else None)]
    for text, metres in entries:
        if metres is not None and pixel_size_problem(metres, vendor) is None:
            why = f"rosettasciio's value {problem}" if problem else "rosettasciio found none"
            return CalibrationReading(metres, vendor, where=f"{vendor} entry {text!r} ({why})",
                                      magnification=ax.magnification, beam_energy_kv=ax.beam_energy_kv)
    if entries and strict:
        text, metres = entries[0]
        raise _broken_tag(name, vendor, metres if metres is not None else text,
                          pixel_size_problem(metres, vendor) if metres is not None else "not a length")
    return None


def _from_axes(ax, page, name: str, strict: bool) -> CalibrationReading:
    """tio2fiji's rules on rosettasciio's reading of a vendor's calibration."""
    vendor, where = ax.vendor, f"{ax.where} (rosettasciio)"
    extra = {"where": where, "magnification": ax.magnification, "beam_energy_kv": ax.beam_energy_kv}
    x_m = _axis_metres(ax.x_scale, ax.x_units)
    problem = pixel_size_problem(x_m, vendor) if x_m is not None else None
    if page is not None and (x_m is None or problem):
        rescued = _rescue(ax, page, name, strict, problem)
        if rescued is not None:
            return rescued
    units = (ax.x_units, ax.y_units)
    if any(u is not None and "/" in str(u) for u in units):
        return CalibrationReading(None, f"none: the {vendor} calibration is in reciprocal space "
                                        f"({ax.x_scale:.4g} {ax.x_units} per pixel: a diffraction "
                                        f"pattern), not lengths", **extra)
    x_m, y_m = _axis_metres(ax.x_scale, ax.x_units), _axis_metres(ax.y_scale, ax.y_units)
    if x_m is None or y_m is None:
        if units == (None, None):
            said = f" ({'; '.join(ax.log)})" if ax.log else ""
            problem = f"rosettasciio finds no pixel size in it{said}"
            if vendor in MICROSCOPE_SOURCES:
                # not an error: a navigation camera or a Ronchigram has no calibration to give
                return CalibrationReading(None, f"none: the microscope's {vendor} tag holds no "
                                                f"pixel size ({problem}), lengths in pixels", **extra)
            return CalibrationReading(None, f"none: {vendor} metadata without a pixel size, lengths "
                                            f"in pixels", **extra)
        return CalibrationReading(None, f"none: the {vendor} image axes are not lengths "
                                        f"({ax.x_scale:.4g} {ax.x_units} by {ax.y_scale:.4g} "
                                        f"{ax.y_units} per pixel), lengths in pixels", **extra)
    problem = pixel_size_problem(x_m, vendor)
    if problem:
        if strict:
            raise _broken_tag(name, vendor, x_m, problem)
        return CalibrationReading(None, f"none: the microscope's {vendor} tag gives the pixel size as "
                                        f"{x_m:g} m, which is not a valid calibration ({problem})",
                                  **extra)
    not_square = _not_square(vendor, x_m, y_m, **extra)
    if not_square is not None:
        return not_square
    notes = list(ax.log)
    if vendor == "CZ_SEM" and page is not None:
        check = _zeiss_width_check(page, x_m)
        if check:
            notes.append(check)
    return CalibrationReading(x_m, vendor, notes=tuple(notes), **extra)


def read_calibration_details(page, name: str | None = None, strict: bool = True,
                             path=None) -> CalibrationReading:
    """A TIFF page's calibration with where it was found (see :func:`read_calibration`).

    ``path`` is the file (default: the file ``page`` was read from).
    """
    name = name or "TIFF page"
    tif = page.parent
    vendor = tiff_vendor(tif, page)
    if vendor not in (None, "ImageJ"):
        path = path or getattr(tif.filehandle, "path", None)
        try:
            ax = read_vendor_axes(path, page=page, tif=tif)
        except InputError as exc:
            if strict and vendor in MICROSCOPE_SOURCES:
                raise InputError(f"{name}: the microscope's {vendor} metadata cannot be read "
                                 f"({str(exc).split(': ', 1)[-1]}); {_REMEDY}.") from exc
            ax = None
        if ax is not None:
            reading = _from_axes(ax, page, name, strict)
            if reading.pixel_size_m is not None or vendor in MICROSCOPE_SOURCES:
                return reading
    ps, why_ij, height = _imagej_pixel_size(page)
    if ps is not None:
        where = "ImageJ description: unit= and XResolution"
        return (_not_square("ImageJ calibration's", ps, height, where=f"{where}, YResolution")
                or CalibrationReading(ps, "ImageJ", where=where))
    ps, why, height = _tiff_resolution_pixel_size(page)
    if ps is not None:
        where = "TIFF XResolution and ResolutionUnit"
        return (_not_square("TIFF resolution's", ps, height, where=f"{where}, YResolution")
                or CalibrationReading(ps, RESOLUTION_SOURCE, where=where))
    reasons = "; ".join(w for w in (why_ij, why) if w)
    reason = "none: no calibration in metadata, lengths in pixels"
    return CalibrationReading(None, reason + (f" ({reasons})" if reasons else ""))


def read_calibration(page, name: str | None = None, strict: bool = True) -> tuple[float | None, str]:
    """Pixel size in metres from a TIFF page's metadata, with its source.

    The strongest source wins: a vendor's convention as rosettasciio reads it (Zeiss ``CZ_SEM``,
    FEI ``FEI_HELIOS`` / ``FEI_SFEG``, JEOL SightX, DigitalMicrograph, TVIPS, Olympus SIS), then
    ImageJ's calibration (``unit=`` in the description), then a bare TIFF resolution in inch/cm.
    Every value must pass :func:`pixel_size_problem`; an ImageJ calibration or TIFF resolution
    that does not is ignored and the source says why.

    Parameters
    ----------
    page : tifffile.TiffPage
    name : str, optional
        The file, for error messages.
    strict : bool
        A microscope tag with a broken pixel size (0, negative, NaN, infinite, absurd, unreadable)
        is an :class:`InputError`; with ``strict=False`` it is ignored and the source says why.

    Returns
    -------
    pixel_size_m : float or None
    source : str
        See :class:`CalibrationReading`.

    Raises
    ------
    InputError
        ``strict`` and a microscope tag whose pixel size is not valid.
    """
    r = read_calibration_details(page, name, strict)
    return r.pixel_size_m, r.source


def parse_length(text: str) -> float:
    """Parse a pixel size with its unit (``"7.34375nm"``, ``"0.5 um"``) into metres.

    The units are exactly those of :data:`LENGTH_UNITS`, written as there: ``nm``, ``um``, ``µm``
    (the micro sign or the Greek mu, which look the same), ``mm`` and ``m``. Case counts: ``Mm``
    (megametre) or ``NM`` is refused, not read as ``mm`` or ``nm``; so are ``A``/``Å`` (an
    SEM pixel is nanometres: write 0.73nm for 7.3 Å) and any other unit, each in one line that
    lists these.
    """
    m = _LENGTH_RE.match(str(text))
    units = ", ".join(LENGTH_UNITS)
    if not m or not m.group(2):
        raise InputError(f"pixel size {text!r}: give a number with a length unit, e.g. 7.34375nm or "
                         f"0.0073um (units: {units}).")
    unit = m.group(2)
    if unit not in _LENGTH_UNIT_METRES:
        raise InputError(f"pixel size {text!r}: unknown unit {unit!r}; use one of {units} (lower "
                         f"case), e.g. 7.34375nm.")
    value = float(m.group(1)) * _LENGTH_UNIT_METRES[unit]
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


def vendor_file_calibration(path, strict: bool = True):
    """A ``.dm3``/``.dm4``/Velox ``.emd`` file's calibration and rosettasciio's reading of it
    (whose ``data`` holds the pixels): ``(CalibrationReading, AxesReading)``."""
    ax = read_vendor_axes(path)
    return _from_axes(ax, None, str(path), strict), ax


def read_pixel_size_details(path, strict: bool = True) -> CalibrationReading:
    """:func:`read_pixel_size` with where the value was found (:class:`CalibrationReading`)."""
    path = check_path(path)
    if path.suffix.lower() in VENDOR_SUFFIXES:
        return vendor_file_calibration(path, strict)[0]
    if not (path.suffix.lower() in TIFF_SUFFIXES or is_tiff(path)):
        return CalibrationReading(*_NO_META["calibration"])
    try:
        tif = tifffile.TiffFile(path)
    except Exception as exc:
        raise InputError(f"{path}: not a readable TIFF file ({exc}).") from exc
    with tif:
        if not len(tif.pages):
            raise InputError(f"{path}: TIFF file has no image pages.")
        try:
            return read_calibration_details(tif.pages[0], name=str(path), strict=strict, path=path)
        except InputError:
            raise
        except Exception as exc:  # tifffile raises many types for broken tags
            raise InputError(f"{path}: the TIFF's metadata cannot be read ({exc}).") from exc


def read_pixel_size(path, strict: bool = True) -> tuple[float | None, str]:
    """Pixel size (metres) and its source from a file's metadata, without reading its pixels.

    ``strict`` as in :func:`read_calibration`: a broken microscope tag is an :class:`InputError`.
    """
    r = read_pixel_size_details(path, strict)
    return r.pixel_size_m, r.source
