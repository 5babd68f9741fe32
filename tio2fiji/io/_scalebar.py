"""The pixel size burned into an SEM image: the data bar's field width, or its scale bar.

An image that lost its metadata (exported as PNG/JPEG, a stripped TIFF) still shows what the
microscope drew into it. Two readings, in this order of preference:

* **Field width** (exact): Zeiss data bars print ``Width = 7.520 µm``, FEI/Thermo ones
  ``HFW 12.7 µm``: the horizontal field width of the whole image, so the pixel size is the width
  over the number of image columns.
* **Scale bar** (less exact): a thin horizontal line, often with end ticks, in the data bar, in
  a label box over the micrograph (a two-tone rectangle, :func:`tio2fiji.io.detect_annotations`)
  or in a corner of the image, with its label (``200 nm``) next to it. In a data bar its length is
  measured from tick centre to tick centre (Zeiss draws two-pixel ticks) or, without ticks, as the
  line's run length; in a label box, from end to end (the TVIPS box of ``tests/data/vendor``: its
  five-pixel end caps are part of the 200 nm); a bar of ``L`` pixels measured to ±1 px gives the
  pixel size to ±1/L.

Tesseract (Debian's ``tesseract-ocr``, through ``pytesseract``) reads the text, on crops only: one
call reads the whole data panel (upscaled so that its capitals are ~36 px high, dark text on white),
a second one re-reads the field width's words at a third more, and a bar's label gets a crop of its
own only when the first reading has none (three small calls for a bar drawn over the micrograph).
Tesseract's known confusions (a lost decimal point, µ read as ``u``/``p``/``jm``, one digit for
another) must not give a wrong pixel size silently, so a reading is used only when it is confirmed:
the field width by its second OCR and, when there is a scale bar, by the bar (within two of its
pixels, at least 2 %); a bar's label must be a round value as printed (one significant digit, or
15/25/75; no "2.00"). A field width and a scale bar that disagree give None. Every value passes the
project's one plausibility rule, :func:`pixel_size_problem`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from ..errors import InputError
from ._annotations import _label_boxes
from ._calibration import _UNIT_METRES, pixel_size_problem
from ._pixels import gray_level
from ._sem import detect_data_bar

__all__ = ["BurnedInCalibration", "METHODS", "read_burned_in_calibration"]

#: The two readings, in their order of preference.
METHODS = ("field width", "scale bar")

_MISSING = ("reading the burned-in data bar needs Tesseract OCR, which is not installed: install Debian's "
            "tesseract-ocr (apt-get install tesseract-ocr) and pytesseract, or give the pixel size "
            "(--pixel-size 7.3nm).")

# Tesseract reads the micro sign as any of these; a field width or an SEM scale bar in picometres
# is never plausible, so "pm" is a misread "µm" too.
_MICRO_SPELLINGS = ("um", "µm", "μm", "pm", "jm", "ym", "qm", "wm", "pum", "jum")
_UNITS = {**dict.fromkeys(_MICRO_SPELLINGS, "µm"), "nm": "nm", "nrn": "nm", "mm": "mm"}  # OCR'd -> unit
_UNIT_PATTERN = "|".join(sorted((re.escape(u) for u in _UNITS), key=len, reverse=True))
_NUMBER = r"(\d+(?:[.,]\d+)?)"
_WIDTH_RE = re.compile(rf"\b(?:w[il1|]?d[t1l]?h|hfw)\s*[:=~-]?\s*{_NUMBER}\s*({_UNIT_PATTERN})(?![a-z])",
                       re.IGNORECASE)
_LABEL_RE = re.compile(rf"(?<![\d.,]){_NUMBER}\s*({_UNIT_PATTERN})(?![a-z])", re.IGNORECASE)
# the significant digits of a scale bar's label: a round value
_ROUND_LABELS = {"1", "2", "3", "4", "5", "6", "7", "8", "9", "15", "25", "75"}

# Tesseract reads best with capitals ~36 px high: the panel is upscaled to that (Zeiss: 3x), and a
# field width is re-read at a third more (an independent second reading)
_TEXT_PX = 36
_REREAD_FACTOR = 4 / 3
_REREAD_PSM = 7
_MIN_CONFIDENCE = 50.0  # Tesseract's word confidence (0-100) for a number to be used
_MIN_BAR_PX = 12
_MAX_LABEL_OCR = 2  # bars whose label is OCR'd on a crop of its own (each costs a Tesseract call)


@dataclass(frozen=True)
class BurnedInCalibration:
    """A pixel size read from the text and scale bar burned into an SEM image.

    Attributes
    ----------
    pixel_size_m : float
        Pixel size in metres.
    method : str
        ``"field width"`` or ``"scale bar"``.
    text : str
        The OCR'd text the value comes from, as Tesseract read it (``"Width = 7.520 um"``, ``"200 nm"``).
    detail : str
        One sentence saying how the value was obtained and what confirmed it.
    bar_length_px : float or None
        The scale bar's length in pixels (scale bar route only).
    bar_value_m : float or None
        The scale bar's label in metres (scale bar route only).
    """

    pixel_size_m: float
    method: str
    text: str
    detail: str
    bar_length_px: float | None = None
    bar_value_m: float | None = None


@dataclass(frozen=True)
class _Word:
    text: str
    conf: float
    line: tuple
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in the pixels of the OCR'd crop


@dataclass(frozen=True)
class _Bar:
    length_px: float
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive) in the searched region
    ticks: bool
    mask: np.ndarray  # the bar's pixels within box


@dataclass(frozen=True)
class _Reading:
    value_m: float  # the length read (field width or the bar's label)
    shown: str  # the number as printed, with its unit spelled properly ("7.520 µm")
    text: str  # the OCR'd words
    words: tuple


def read_burned_in_calibration(image, data_bar_rows: int | None = None,
                               method: str | None = None) -> BurnedInCalibration | None:
    """The pixel size that the microscope burned into ``image``, or None when none can be read.

    The data bar's field width (``Width = 7.520 µm``, ``HFW 12.7 µm``) over the image's columns is
    preferred; else the scale bar (in the data bar, else in the top or bottom quarter of the image),
    its label over its length. A field width is used only when a second OCR of the same words reads
    the same number and the scale bar, if one is read, agrees with it within two of its pixels;
    readings that disagree give None rather than a wrong value.

    Parameters
    ----------
    image : ndarray
        The whole 2-D gray image (uint8/uint16), including the data bar at the bottom.
    data_bar_rows : int, optional
        Height of the data bar; found with :func:`tio2fiji.io.detect_data_bar` when omitted.
    method : {None, "field width", "scale bar"}
        Only this reading (a field width is then confirmed by a second OCR, not by the bar);
        None: the preferred one that can be read.

    Returns
    -------
    BurnedInCalibration or None

    Raises
    ------
    InputError
        ``image`` is not a 2-D image, ``method`` or ``data_bar_rows`` is invalid, or text must be
        read and Tesseract (or pytesseract) is not installed.
    """
    level = gray_level(image)
    image = _check_image(image)
    if method is not None and method not in METHODS:
        raise InputError(f"method {method!r}: choose one of {', '.join(map(repr, METHODS))} (or None for both).")
    if image.size == 0 or not float(image.max()) > float(image.min()):
        return None
    rows = detect_data_bar(image) if data_bar_rows is None else int(data_bar_rows)
    if not 0 <= rows < image.shape[0]:
        raise InputError(f"data_bar_rows={data_bar_rows!r}: must be from 0 to under the image height "
                         f"({image.shape[0]}).")
    width = bar = ink = scale = None
    panel = _data_panel(image, rows, level) if rows else None
    if panel is not None:
        width, bar, ink, scale = _read_panel(panel, method)
    if bar is None and method != "field width":
        bar = _boxed_scale_bar(image[: image.shape[0] - rows])
    if bar is None and method != "field width":
        bar = _corner_scale_bar(image[: image.shape[0] - rows])
    return _choose(width, bar, image.shape[1], method, (ink, scale))


def _check_image(image) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise InputError(f"expected a 2-D gray image, got an array of shape {arr.shape}.")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating) or arr.dtype == bool):
        raise InputError(f"unsupported pixel type {arr.dtype}.")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise InputError("image contains NaN or infinite values.")
    return arr


# -- the data panel --------------------------------------------------------------------------------


def _data_panel(image: np.ndarray, rows: int, level: float = 1.0) -> np.ndarray | None:
    """The data bar's panel (its rows of flat background) as ink strength 0..1, or None.

    Zeiss draws the panel inset in its zone, with a few image rows above and below it: only the
    rows from the first to the last mostly flat one are kept. The text is the panel's opposite
    extreme (light on a dark panel, or dark on a light one). ``level`` is one gray level of the
    image (:func:`._pixels.gray_level`), the least tolerance of the flat background.
    """
    band = image[-rows:]
    values, counts = np.unique(band, return_counts=True)
    bg = float(values[np.argmax(counts)])
    lo, hi = float(band.min()), float(band.max())
    flat = (np.abs(band - bg) <= max(level, 0.03 * (hi - lo))).mean(axis=1) >= 0.5
    if flat.sum() < 4:
        return None
    first, last = np.flatnonzero(flat)[[0, -1]]
    ink_level = hi if bg - lo <= hi - bg else lo
    if ink_level == bg:
        return None
    return np.clip((band[first:last + 1] - bg) / (ink_level - bg), 0.0, 1.0)


def _read_panel(ink: np.ndarray, method: str | None):
    """The field width and the scale bar (each None when not read) of a data panel, and the ink
    that was OCR'd (the bar erased)."""
    bars = _bar_candidates(ink >= 0.5) if method != "field width" else []
    ink = ink.copy()
    for bar in bars:  # a bar only confuses the OCR of the text
        x0, y0, x1, y1 = bar.box
        ink[y0:y1, x0:x1][bar.mask] = 0.0
    scale = _ocr_scale(ink)
    words = _ocr(ink, scale, psm=6)
    width = _field_width(words) if method != "scale bar" else None
    bar = None
    for i, candidate in enumerate(bars):
        label = _label_near(candidate, words)
        if label is None and i < _MAX_LABEL_OCR:
            label = _label_from_crop(candidate, ink, scale)
        if label is not None:
            bar = (candidate, label)
            break
    return width, bar, ink, scale


def _ocr_scale(ink: np.ndarray) -> int:
    """The upscaling that makes the text ~36 px high (Tesseract's best), its height measured as the
    median run of inked rows in narrow vertical strips (where text lines do not merge)."""
    heights = []
    strips = max(1, min(16, ink.shape[1] // 16))
    for strip in np.array_split(ink >= 0.5, strips, axis=1):
        rows = np.concatenate([[False], strip.any(axis=1), [False]])
        edges = np.flatnonzero(np.diff(rows.astype(np.int8)))
        heights.extend(edges[1::2] - edges[::2])
    heights = np.asarray(heights)
    if not (heights >= 3).any():  # dots and dashes only
        return 3
    return int(np.clip(round(_TEXT_PX / float(np.median(heights[heights >= 3]))), 1, 8))


# -- Tesseract -------------------------------------------------------------------------------------


def _tesseract():
    try:
        import pytesseract
    except ImportError as exc:
        raise InputError(_MISSING) from exc
    return pytesseract


def _ocr(ink: np.ndarray, scale: int, psm: int) -> list[_Word]:
    """Tesseract's words in ``ink`` (0 background .. 1 text), their boxes in ``ink``'s pixels."""
    pytesseract = _tesseract()
    pad = 8
    gray = np.pad(255.0 - 255.0 * ink, pad, constant_values=255.0).astype(np.uint8)  # dark text on white
    h, w = gray.shape
    picture = Image.fromarray(gray).resize((w * scale, h * scale), Image.LANCZOS)
    try:
        data = pytesseract.image_to_data(picture, config=f"--psm {psm}", output_type=pytesseract.Output.DICT)
    except pytesseract.TesseractNotFoundError as exc:
        raise InputError(_MISSING) from exc
    except pytesseract.TesseractError as exc:
        message = " ".join(str(exc).split())[:200]
        raise InputError(f"Tesseract failed ({message}); check its installation (apt-get install "
                         f"tesseract-ocr tesseract-ocr-eng).") from exc
    words = []
    for i, text in enumerate(data["text"]):
        if not text.strip():
            continue
        x0, y0 = data["left"][i] / scale - pad, data["top"][i] / scale - pad
        box = (x0, y0, x0 + data["width"][i] / scale, y0 + data["height"][i] / scale)
        line = (data["block_num"][i], data["par_num"][i], data["line_num"][i])
        words.append(_Word(text.strip(), float(data["conf"][i]), line, box))
    return words


def _lines(words: list[_Word]):
    """Each OCR line as ``(text, spans)``: its words joined by spaces, and each word's span in it."""
    by_line: dict[tuple, list[_Word]] = {}
    for word in words:
        by_line.setdefault(word.line, []).append(word)
    for line_words in by_line.values():
        line_words.sort(key=lambda wd: wd.box[0])
        text, spans = "", []
        for word in line_words:
            start = len(text) + (1 if text else 0)
            text = f"{text} {word.text}" if text else word.text
            spans.append((start, len(text), word))
        yield text, spans


def _matches(words: list[_Word], regex: re.Pattern):
    """``(match, value_m, shown, confidence, words)`` for every match of ``regex`` in the OCR lines."""
    found = []
    for text, spans in _lines(words):
        for m in regex.finditer(text):
            covered = tuple(wd for start, end, wd in spans if start < m.end() and end > m.start())
            number = m.group(1).replace(",", ".")
            unit = _UNITS[m.group(2).lower()]
            value = float(number) / round(1.0 / _UNIT_METRES[unit])  # 200 nm is 2e-07 m exactly
            # the confidence of the word(s) holding the number
            confs = [wd.conf for wd in covered if number in wd.text.replace(",", ".")]
            conf = min(confs) if confs else min(wd.conf for wd in covered)
            found.append((m, value, f"{number} {unit}", conf, covered))
    return found


# -- field width -----------------------------------------------------------------------------------


def _width_readings(words: list[_Word]) -> list[_Reading]:
    return [_Reading(value, shown, " ".join(wd.text for wd in covered), covered)
            for _, value, shown, conf, covered in _matches(words, _WIDTH_RE)
            if value > 0 and conf >= _MIN_CONFIDENCE]


def _field_width(words: list[_Word]) -> _Reading | None:
    """The field width printed in the panel, when exactly one legible reading of it is found."""
    readings = _width_readings(words)
    return readings[0] if len(readings) == 1 else None


def _reread_width(reading: _Reading, ink: np.ndarray, scale: int) -> bool:
    """A second OCR of the field width's words, at a third more than ``scale``, reads the same value.

    The crop spans the words' columns and the number's rows (another word's box may reach into the
    line above).
    """
    digits = [wd for wd in reading.words if any(c.isdigit() for c in wd.text)] or list(reading.words)
    y0 = min(wd.box[1] for wd in digits)
    y1 = max(wd.box[3] for wd in digits)
    margin = max(2.0, 0.4 * (y1 - y0))
    crop = _crop(ink, min(wd.box[0] for wd in reading.words) - margin, y0 - margin,
                 max(wd.box[2] for wd in reading.words) + margin, y1 + margin)
    again = _width_readings(_ocr(crop, max(scale + 1, round(scale * _REREAD_FACTOR)), psm=_REREAD_PSM))
    return len(again) == 1 and np.isclose(again[0].value_m, reading.value_m, rtol=1e-9)


def _crop(ink: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    h, w = ink.shape
    return ink[max(0, int(y0)):min(h, int(np.ceil(y1))), max(0, int(x0)):min(w, int(np.ceil(x1)))]


# -- scale bar -------------------------------------------------------------------------------------


def _bar_candidates(strokes: np.ndarray) -> list[_Bar]:
    """Thin straight horizontal lines (with or without end ticks) in a binary image, longest first."""
    labels, _ = ndimage.label(strokes, structure=np.ones((3, 3), bool))
    bars = []
    for index, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None or sl[1].stop - sl[1].start < _MIN_BAR_PX:
            continue
        mask = labels[sl] == index
        shape = _bar_shape(mask)
        if shape is not None:
            bars.append(_Bar(shape[0], (sl[1].start, sl[0].start, sl[1].stop, sl[0].stop), shape[1], mask))
    bars.sort(key=lambda b: -b.length_px)
    return bars


def _bar_shape(mask: np.ndarray) -> tuple[float, bool] | None:
    """``(length_px, has_ticks)`` when ``mask`` (one component) has a scale bar's shape, else None.

    A bar is a band of full-width rows (the line, at most a quarter of its length thick) and, off
    the line, pixels only in its end columns (the ticks). With ticks at both ends its length is
    from tick centre to tick centre, else the line's run length.
    """
    h, w = mask.shape
    if w < _MIN_BAR_PX or w < 1.2 * h:
        return None
    full = np.flatnonzero(mask.sum(axis=1) >= w - 1)
    if full.size == 0 or full[-1] - full[0] + 1 != full.size or full.size > max(3, w // 4):
        return None
    off_line = mask.copy()
    off_line[full[0]:full[-1] + 1] = False
    if not off_line.any():
        return float(w), False
    end = max(2, int(round(0.15 * w)))
    columns = np.flatnonzero(off_line.any(axis=0))
    left, right = columns[columns < end], columns[columns >= w - end]
    if left.size + right.size != columns.size:  # ink off the line away from its ends: not a bar
        return None
    if left.size == 0 or right.size == 0:
        return float(w), False
    return float(right.mean() - left.mean()), True


def _label_near(bar: _Bar, words: list[_Word], offset=(0.0, 0.0),
                min_confidence: float = _MIN_CONFIDENCE) -> _Reading | None:
    """The bar's label among OCR'd ``words``: the round length nearest to it, above, below or beside."""
    x0, y0, x1, y1 = bar.box
    dx, dy = offset
    reach = max(x1 - x0, 2 * (y1 - y0))
    near = [wd for wd in words
            if wd.box[2] + dx > x0 - reach and wd.box[0] + dx < x1 + reach
            and wd.box[3] + dy > y0 - reach and wd.box[1] + dy < y1 + reach]
    best = None
    for m, value, shown, conf, covered in _matches(near, _LABEL_RE):
        if not (value > 0 and _is_round(m.group(1)) and conf >= min_confidence):
            continue
        cx = np.mean([(wd.box[0] + wd.box[2]) / 2 for wd in covered]) + dx
        cy = np.mean([(wd.box[1] + wd.box[3]) / 2 for wd in covered]) + dy
        distance = float(np.hypot(cx - (x0 + x1) / 2, cy - (y0 + y1) / 2))
        if best is None or distance < best[0]:
            best = (distance, _Reading(value, shown, m.group(0), covered))
    return None if best is None else best[1]


def _is_round(number: str) -> bool:
    """A scale bar's value as printed: one significant digit (or 15, 25, 75), e.g. 200, 0.5, 1, 2.5,
    and no trailing zero after a decimal point ("2.00" is a misread "200")."""
    number = number.replace(",", ".")
    if "." in number and (number.endswith("0") or number.endswith(".")):
        return False
    return number.replace(".", "").strip("0") in _ROUND_LABELS


def _label_from_crop(bar: _Bar, ink: np.ndarray, scale: int | None = None,
                     over_image: float = 0.0) -> _Reading | None:
    """The bar's label OCR'd on a crop around the bar (the bar's own pixels erased), upscaled by
    ``scale`` (None: for the crop's own text).

    Over a micrograph (``over_image``: the least reach of the crop, in pixels) the crop is tighter
    horizontally, what reaches its border (particles, not a label) is erased, and the crop is read
    at three scales: Tesseract's confidence on text over an image says little, so a label is taken
    when two of the three readings give the same value.
    """
    x0, y0, x1, y1 = bar.box
    reach = max(x1 - x0, 2 * (y1 - y0))
    if over_image:  # a label's height is not the bar's: at least a twelfth of the image
        reach = max((x1 - x0) / 2, 2 * (y1 - y0), over_image)
    cx0, cy0 = max(0, int(x0 - reach)), max(0, int(y0 - reach))
    crop = _crop(ink, cx0, cy0, x1 + reach, y1 + reach).copy()
    crop[y0 - cy0:y1 - cy0, x0 - cx0:x1 - cx0][bar.mask] = 0.0
    scale = _ocr_scale(crop) if scale is None else scale
    if not over_image:
        return _label_near(bar, _ocr(crop, scale, psm=6), offset=(cx0, cy0))
    labels, _ = ndimage.label(crop > 0, structure=np.ones((3, 3), bool))
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    crop[np.isin(labels, border[border > 0])] = 0.0
    readings = [_label_near(bar, _ocr(crop, s, psm=6), offset=(cx0, cy0), min_confidence=0.0)
                for s in (max(1, scale - 1), scale, scale + 1)]
    values = [r.value_m for r in readings if r is not None]
    for reading in readings:
        if reading is not None and values.count(reading.value_m) >= 2:
            return reading
    return None


def _boxed_scale_bar(area: np.ndarray):
    """A scale bar and its label in a label box drawn over the micrograph: ``(bar, label)`` or None.

    The box's frame (its border tone) is cut off; the ink is the box's minority tone. The bar is
    measured from end to end, caps included.
    """
    if area.size == 0 or float(area.min()) != 0.0:  # a box is black and the image's white
        return None
    boxes, n_boxes, _ = _label_boxes(area, float(area.max()))
    if not n_boxes:
        return None
    comps, _ = ndimage.label(boxes)
    for sl in ndimage.find_objects(comps)[:_MAX_LABEL_OCR]:
        box = area[sl]
        border = np.concatenate([box[0], box[-1], box[:, 0], box[:, -1]])
        frame_tone = np.bincount((border == 0).astype(int)).argmax() == 1  # True: a black frame
        inside = box == 0 if frame_tone else box != 0
        rows = np.flatnonzero(~inside.all(axis=1))
        cols = np.flatnonzero(~inside.all(axis=0))
        if rows.size < 3 or cols.size < 3:
            continue
        inner = box[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        background_black = np.count_nonzero(inner == 0) * 2 > inner.size
        ink = (inner != 0) if background_black else (inner == 0)
        for candidate in _bar_candidates(ink)[:_MAX_LABEL_OCR]:
            x0, _, x1, _ = candidate.box
            end_to_end = _Bar(float(x1 - x0), candidate.box, False, candidate.mask)
            label = _label_from_crop(end_to_end, ink.astype(float))
            if label is not None:
                return end_to_end, label
    return None


def _corner_scale_bar(area: np.ndarray):
    """A scale bar drawn over the micrograph (its top or bottom quarter) in the image's extreme
    gray value, with its label: ``(bar, label)`` or None."""
    h = area.shape[0]
    if h < 16:
        return None
    lo, hi = float(area.min()), float(area.max())
    tol = 0.005 * (hi - lo)  # drawn in the extreme value itself (a little JPEG blur allowed)
    tried = 0
    for top in (h - h // 4, 0):
        band = area[top:top + h // 4]
        middle = float(np.median(band))
        for strokes, extreme in ((band >= hi - tol, hi), (band <= lo + tol, lo)):
            if extreme == middle:
                continue
            # the label's anti-aliased text: ink from halfway between the image and the extreme
            halfway = (middle + extreme) / 2
            ink = np.clip((band - halfway) / (extreme - halfway), 0.0, 1.0)
            for candidate in _bar_candidates(strokes):
                if tried == _MAX_LABEL_OCR:
                    return None
                tried += 1
                label = _label_from_crop(candidate, ink, over_image=min(area.shape) / 12)
                if label is not None:
                    return candidate, label
    return None


# -- the choice ------------------------------------------------------------------------------------


def _choose(width: _Reading | None, bar, columns: int, method: str | None,
            panel: tuple) -> BurnedInCalibration | None:
    """The reading to trust: the field width when a second OCR reads it again and the scale bar (if
    any) agrees with it, else the scale bar; None when the field width and the bar disagree."""
    bar_result = _scale_bar_result(*bar) if bar is not None else None
    if method == "scale bar":
        return bar_result
    width_result = _width_result(width, columns) if width is not None else None
    if width_result is not None and not _reread_width(width, *panel):
        width_result = None  # two readings of the same words differ: Tesseract is unsure
    if bar_result is None:  # (always so for method="field width")
        return width_result
    if width_result is None:
        return bar_result
    # the bar's length is known to about a pixel: allow two, and 2 % for a long bar
    tolerance = max(0.02, 2.0 / bar_result.bar_length_px)
    ratio = width_result.pixel_size_m / bar_result.pixel_size_m
    if abs(ratio - 1.0) > tolerance:
        return None  # one of the two readings is wrong, and nothing says which
    return BurnedInCalibration(width_result.pixel_size_m, "field width", width_result.text,
                               f"{width_result.detail}; the {bar[1].shown} scale bar agrees within "
                               f"{abs(ratio - 1.0):.1%}")


def _width_result(width: _Reading, columns: int) -> BurnedInCalibration | None:
    pixel = width.value_m / columns
    if pixel_size_problem(pixel) is not None:
        return None
    return BurnedInCalibration(pixel, "field width", width.text,
                               f"field width {width.shown} read (twice) from the data bar / {columns} columns")


def _scale_bar_result(bar: _Bar, label: _Reading) -> BurnedInCalibration | None:
    pixel = label.value_m / bar.length_px
    if pixel_size_problem(pixel) is not None:
        return None
    how = "from tick centre to tick centre" if bar.ticks else "its line's length"
    return BurnedInCalibration(pixel, "scale bar", label.text,
                               f"scale bar {label.shown} / {bar.length_px:g} px ({how}; ±1 px is "
                               f"±{1 / bar.length_px:.1%})", bar_length_px=bar.length_px, bar_value_m=label.value_m)
