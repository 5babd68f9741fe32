"""ImageJ's *Analyze Particles* size filter: ``size=MIN-MAX`` with or without ``pixel``.

ImageJ reads the size field as a minimum and a maximum area separated by ``-`` (``10-Infinity``;
one number is a minimum), in the image's calibrated unit squared, or in pixels when *Pixel units*
is checked (``pixel`` in a macro) or the image is not calibrated. It divides them by the area of
one pixel (``pixelWidth * pixelHeight``) and keeps a particle when its pixel count (holes included
with *Include holes*) is within both, bounds included. :func:`parse_size` reads the same text;
:meth:`SizeFilter.pixel_bounds` does ImageJ's division, so the native measurement and the ImageJ
bridge keep the same particles as ImageJ's own dialog. tio2fiji's calibrated unit is nm, so
calibrated sizes are nm² unless the text names ``um^2``/``µm^2`` (as ImageJ's dialog shows
``Size (µm^2)`` for an image calibrated in µm). Where ImageJ would quietly read something else
(a maximum below the minimum: no maximum; an unreadable number: no limit), this parser refuses.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..errors import InputError

__all__ = ["SizeFilter", "parse_size"]

#: The units a size may name after MIN-MAX, and their area in nm² (None: pixels).
SIZE_UNITS = {"pixel": None, "nm^2": 1.0, "um^2": 1e6, "µm^2": 1e6}
_NUMBER = re.compile(r"^(?:\d+\.?\d*|\.\d+)$")


@dataclass(frozen=True)
class SizeFilter:
    """A parsed size range (:func:`parse_size`).

    Attributes
    ----------
    text : str
        As given (recorded in the outputs).
    minimum, maximum : float
        In ``unit`` (``maximum`` may be infinite).
    unit : str or None
        ``"pixel"``, ``"nm^2"``, ``"um^2"``, or None: the table's unit (nm² when calibrated,
        pixels otherwise; ImageJ without ``pixel``).
    """

    text: str
    minimum: float
    maximum: float
    unit: str | None = None

    def pixel_bounds(self, pixel_size_m=None) -> tuple[float, float]:
        """``(min, max)`` pixel counts as ImageJ computes them: the sizes divided by one pixel's
        area in the size's unit (``pixelWidth * pixelHeight``, 1 in pixels).

        A bound within 1e-9 (relative) of a whole pixel count is that count: pixel counts are
        whole numbers, and the last bit of a pixel size (7.34375 nm held in metres is
        7.343750000000001 nm) must not drop a particle of exactly the bound's size that ImageJ,
        calibrated at 7.34375 nm, keeps.

        Raises
        ------
        InputError
            A size in nm² or µm² for an image without a pixel size.
        """
        if self.unit == "pixel" or (self.unit is None and pixel_size_m is None):
            square = 1.0
        elif pixel_size_m is None:
            raise InputError(f"--size {self.text!r}: in {self.unit}, but the image has no pixel size; "
                             f"give the size in pixels ('MIN-MAX pixel') or a pixel size.")
        else:
            pw = float(pixel_size_m) * 1e9  # ImageJ's calibration in nm (to_imageplus)
            if self.unit in ("um^2", "µm^2"):
                pw = float(pixel_size_m) * 1e6  # an image calibrated in µm
            square = pw * pw
        return _whole(self.minimum / square), _whole(self.maximum / square)

    def describe(self, pixel_size_m=None) -> dict:
        """What the outputs record: the text, the range, its unit and the pixel bounds used."""
        lo, hi = self.pixel_bounds(pixel_size_m)
        unit = self.unit or ("nm^2" if pixel_size_m is not None else "pixel")
        return {"size": self.text, "size_unit": unit, "size_min_px": lo,
                "size_max_px": None if math.isinf(hi) else hi}


def _whole(bound: float) -> float:
    near = round(bound) if math.isfinite(bound) else bound
    return float(near) if abs(bound - near) <= 1e-9 * max(1.0, abs(bound)) else bound


def parse_size(text) -> SizeFilter | None:
    """``"MIN-MAX"`` / ``"MIN"`` (and optionally a unit: ``pixel``, ``nm^2``, ``um^2``) as ImageJ's
    size field; None for None or ``"0-Infinity"`` (every particle, ImageJ's default).

    Raises
    ------
    InputError
        Not a size ImageJ would read as written (negative, not a number, maximum below minimum,
        an unknown unit), in one line naming ``--size``.
    """
    if text is None or isinstance(text, SizeFilter):
        return text
    raw = str(text).strip()
    words = raw.split()
    unit = None
    if len(words) > 1 and words[-1] in SIZE_UNITS:
        unit, words = words[-1], words[:-1]
    parts = [p for p in re.split(r"[\s-]+", " ".join(words)) if p]

    def number(p):
        if p.lower() == "infinity":
            return math.inf
        if not _NUMBER.match(p):
            raise InputError(f"--size {raw!r}: {p!r} is not a size; give MIN-MAX as ImageJ's Analyze "
                             f"Particles does, e.g. 10-Infinity or '10-500 pixel' (units: "
                             f"{', '.join(SIZE_UNITS)}).")
        return float(p)

    if not 1 <= len(parts) <= 2:
        raise InputError(f"--size {raw!r}: give MIN-MAX as ImageJ's Analyze Particles does, e.g. "
                         f"10-Infinity or '10-500 pixel'.")
    lo = number(parts[0])
    hi = number(parts[1]) if len(parts) == 2 else math.inf
    if math.isinf(lo) or hi < lo:
        raise InputError(f"--size {raw!r}: the maximum is below the minimum (ImageJ would drop the "
                         f"maximum silently); give MIN-MAX with MIN <= MAX.")
    if lo == 0 and math.isinf(hi):
        return None
    return SizeFilter(raw, lo, hi, unit)
