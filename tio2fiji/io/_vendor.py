"""Vendor metadata through rosettasciio (the HyperSpy ecosystem's reader).

rosettasciio (``rsciio``) knows the vendors' calibration conventions: Zeiss ``CZ_SEM`` (its pixel
size refers to a 1024-pixel-wide frame and is scaled to the stored width), FEI/Thermo
``FEI_HELIOS``/``FEI_SFEG`` (``[Scan] PixelWidth``, else ``[IRBeam] HFW / ResolutionX``), JEOL
SightX, DigitalMicrograph's private TIFF tags, TVIPS, Olympus SIS, ImageJ, and the ``.dm3``/``.dm4``
and Velox ``.emd`` formats. This module asks it for the two image axes of a file and says which
vendor convention gave them; :mod:`._calibration` applies tio2fiji's own rules on top (plausibility,
square pixels, lengths only, the screen-dpi rule for bare TIFF resolutions).

rosettasciio is GPL-3.0-or-later; tio2fiji calls it as a library.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from ._files import VENDOR_FILE_SUFFIXES

__all__ = ["VENDOR_SUFFIXES", "AxesReading", "read_vendor_axes", "tiff_vendor"]

#: File types read by rosettasciio alone (pixels and metadata): suffix -> its plugin.
VENDOR_SUFFIXES = {".dm3": "digitalmicrograph", ".dm4": "digitalmicrograph", ".emd": "emd"}
assert set(VENDOR_SUFFIXES) == set(VENDOR_FILE_SUFFIXES)
#: The vendor conventions of rosettasciio's TIFF reader, in its order of precedence:
#: source name (as tio2fiji reports it) -> where the value comes from.
TIFF_CONVENTIONS = {
    "FEI_HELIOS": "FEI/Thermo FEI_HELIOS tag, [Scan] PixelWidth (else [IRBeam] HFW / ResolutionX)",
    "FEI_SFEG": "FEI/Thermo FEI_SFEG tag, [Scan] PixelWidth (else [IRBeam] HFW / ResolutionX)",
    "CZ_SEM": "Zeiss CZ_SEM tag, its pixel size x 1024 / the image's width in pixels",
    "TVIPS": "TVIPS EM-MENU tag, pixel size",
    "Olympus SIS": "Olympus SIS tag, pixelsizex",
    "JEOL SightX": "JEOL SightX ImageDescription (XML): TIFF resolution / magnification",
    "Hamamatsu": "Hamamatsu streak-camera description",
    "DigitalMicrograph": "DigitalMicrograph private TIFF tags 65003-65026 (scale and unit)",
    "ImageJ": "ImageJ description (unit=) with the TIFF XResolution",
}
_DM_TAGS = {65003, 65004, 65005, 65006, 65007, 65008, 65009, 65010, 65011, 65022, 65024, 65025}


@dataclass(frozen=True)
class AxesReading:
    """What rosettasciio says about the two image axes of a file.

    Attributes
    ----------
    x_scale, y_scale : float
        Size of one pixel along the width and the height, in ``x_units`` / ``y_units``.
    x_units, y_units : str or None
        As rosettasciio gives them (``"m"``, ``"nm"``, ``"µm"``, ``"1 / nm"``, ``None`` ...).
    vendor : str or None
        The convention that gave them (a key of :data:`TIFF_CONVENTIONS`, ``"DigitalMicrograph"``
        or ``"Velox EMD"``), None when the file follows none.
    where : str
        Where in the file the value is (one phrase).
    magnification : float or None
    beam_energy_kv : float or None
    log : tuple of str
        rosettasciio's warnings while reading (e.g. "Could not determine pixel size").
    data : object or None
        The pixel array for :data:`VENDOR_SUFFIXES` files (None for TIFF: tio2fiji reads those).
    """

    x_scale: float
    y_scale: float
    x_units: str | None
    y_units: str | None
    vendor: str | None
    where: str
    magnification: float | None = None
    beam_energy_kv: float | None = None
    log: tuple = ()
    data: object = field(default=None, repr=False, compare=False)


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _quiet_rsciio():
    """rosettasciio logs to stderr with its own handler: collect its warnings instead (library code
    never prints), and silence the numpy/dask warnings of its readers."""
    logger = logging.getLogger("rsciio")
    handler = _Collect()
    old_handlers, old_propagate = logger.handlers[:], logger.propagate
    logger.handlers = [handler]
    logger.propagate = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield handler.messages
    finally:
        logger.handlers, logger.propagate = old_handlers, old_propagate


def tiff_vendor(tif, page) -> str | None:
    """The vendor convention rosettasciio's TIFF reader applies to ``page`` of the open ``tif``
    (a :class:`tifffile.TiffFile`), in the reader's order of precedence; None for none."""
    flags = tif.flags
    tags = page.tags
    if "fei" in flags:
        return "FEI_HELIOS" if "FEI_HELIOS" in tags else "FEI_SFEG"
    if "sem" in flags:
        return "CZ_SEM"
    if "tvips" in flags:
        return "TVIPS"
    if getattr(page, "is_sis", False):
        return "Olympus SIS"
    make = tags.get("Make")
    if make is not None and make.value == "JEOL Ltd.":
        return "JEOL SightX"
    desc = tags.get("ImageDescription")
    if desc is not None and isinstance(desc.value, str) and "Hamamatsu" in desc.value[:200]:
        return "Hamamatsu"
    if any(code in _DM_TAGS for code in (t.code for t in tags.values())):
        return "DigitalMicrograph"
    if "imagej" in flags:
        return "ImageJ"
    return None


def _get(d, dotted: str):
    for key in dotted.split("."):
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def _mapped(record: dict, target_suffix: str):
    """A value rosettasciio's metadata (or its mapping from the original metadata) puts at
    ``Acquisition_instrument.<SEM|TEM>.<target_suffix>``."""
    md = record.get("metadata") or {}
    for mode in ("SEM", "TEM"):
        value = _get(md, f"Acquisition_instrument.{mode}.{target_suffix}")
        if value is not None:
            return value
    for source, target in (record.get("mapping") or {}).items():
        name, func = (target if isinstance(target, tuple) else (target, None))
        if not str(name).endswith(f".{target_suffix}"):
            continue
        value = _get(record.get("original_metadata") or {}, source)
        if value is None:
            continue
        try:
            return func(value) if func is not None else value
        except Exception:  # a vendor string rosettasciio's converter does not take
            return None
    return None


_MAG_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kKmM]?)\s*[xX]\s*$")


def _number(value) -> float | None:
    """A positive number, also from a magnification string such as Zeiss's ``"50.00 K X"``."""
    if isinstance(value, str):
        m = _MAG_RE.match(value)
        if m:
            value = float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6}[m.group(2).lower()]
    try:
        v = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return v if v == v and v > 0 else None


def _image_record(records: list, path: Path):
    from ..errors import InputError

    images = [r for r in records if len([a for a in r.get("axes", []) if a.get("navigate") is not True]) >= 2]
    if not images:
        raise InputError(f"{path}: holds no 2-D image (only spectra or other data); tio2fiji analyses "
                         f"images.")
    if len(images) > 1:
        titles = ", ".join(str(_get(r, "metadata.General.title") or "?") for r in images[:6])
        raise InputError(f"{path}: holds {len(images)} images ({titles}); tio2fiji analyses one 2-D "
                         f"image per file. Save the image you want on its own (e.g. as TIFF from the "
                         f"vendor software).")
    return images[0]


def read_vendor_axes(path, page=None, tif=None) -> AxesReading:
    """The two image axes of ``path`` as rosettasciio reads them, with the vendor convention used.

    Parameters
    ----------
    path : str or Path
        A TIFF, ``.dm3``/``.dm4`` or Velox ``.emd`` file.
    page : tifffile.TiffPage, optional
        For a TIFF: the page tio2fiji reads (its tags decide the vendor convention).
    tif : tifffile.TiffFile, optional
        The open TIFF ``page`` belongs to.

    Returns
    -------
    AxesReading

    Raises
    ------
    InputError
        rosettasciio cannot read the file, or it holds no image or several.
    """
    from ..errors import InputError

    path = Path(path)
    suffix = path.suffix.lower()
    plugin = VENDOR_SUFFIXES.get(suffix, "tiff")
    try:
        import importlib

        reader = importlib.import_module(f"rsciio.{plugin}").file_reader
    except ImportError as exc:
        raise InputError(f"{path}: reading its metadata needs rosettasciio ({exc}); install it with "
                         f"`pip install rosettasciio` (scripts/setup.sh does).") from exc
    with _quiet_rsciio() as log:
        try:
            # not lazy: a lazy TIFF reading keeps the file open; the second read of a TIFF's
            # pixels comes from the page cache (tio2fiji reads them itself)
            records = reader(str(path), lazy=False)
        except InputError:
            raise
        except Exception as exc:  # rosettasciio raises many types for files it cannot parse
            raise InputError(f"{path}: rosettasciio cannot read it as {plugin} ({type(exc).__name__}: "
                             f"{str(exc)[:160]}); re-export it from the vendor software as TIFF.") from exc
    record = _image_record(records, path)
    axes = [a for a in record["axes"] if a.get("navigate") is not True]
    y_ax, x_ax = axes[-2], axes[-1]
    if plugin == "tiff":
        vendor = tiff_vendor(tif, page) if tif is not None and page is not None else None
        where = TIFF_CONVENTIONS.get(vendor, "no vendor tag")
        data = None
    elif plugin == "digitalmicrograph":
        vendor, where, data = "DigitalMicrograph", f"DigitalMicrograph {suffix} ImageData calibration", record["data"]
    else:
        vendor, where, data = "Velox EMD", "Velox EMD metadata, BinaryResult PixelSize", record["data"]
    mag = _number(_mapped(record, "magnification"))
    kv = _number(_mapped(record, "beam_energy"))
    return AxesReading(x_scale=float(x_ax.get("scale", 1.0)), y_scale=float(y_ax.get("scale", 1.0)),
                       x_units=x_ax.get("units") or None, y_units=y_ax.get("units") or None,
                       vendor=vendor, where=where, magnification=mag, beam_energy_kv=kv,
                       log=tuple(log), data=data)
