"""Annotations inside the image area: pixels that are not detector values.

Microscope software and users burn marks into the micrograph itself, above the data bar: a scale
bar and its label, a field-width or magnification text, a palette image's overlay colours. Those
pixels are not the specimen, and a particle under or beside them is not seen whole. Instead of
refusing such an image, :func:`detect_annotations` finds them; the analysis leaves them out of the
analysed area and drops the particles they touch (:func:`tio2fiji.instances.remove_touching`),
and the outputs say how many pixels and particles that was.

Three kinds are found, all conservative, so that specimen pixels are not taken for annotations:

* **palette overlay colours**: in a palette image whose colour map is a gray ramp except a few
  entries, the off-ramp entries are by construction not detector values (:mod:`._pixels`);
  every pixel using one is an annotation (exact).
* **label boxes and solid scale bars**: axis-aligned rectangles made only of the two extreme
  values (0 and the file's maximum), e.g. a white box with a black bar and "200 nm" in it, or a
  filled bar at least 4 times as long as it is high. Specimen pixels are never a filled rectangle of
  clipped values; isolated clipped noise pixels are removed first (a 3x3 opening).
* **text drawn on the micrograph**: strokes at the maximum value (255 in 8 bits, 65535 in 16 bits,
  1.0 in a float ``[0, 1]`` signal),
  of glyph size and thin (half-width at most ``_MAX_STROKE`` px), whose surroundings are clearly
  darker (a drawn stroke has a sharp edge; saturated specimen fades into bright pixels), in a
  line of at least ``min_glyphs`` of them. Text drawn over bright specimen is not found.

Every mark is widened by ``_HALO`` px, which covers anti-aliased edges and dark outlines.

Black text directly on the micrograph is not looked for: SEM images have true black (shadowed
background) wherever the specimen is sparse.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

#: Half-width (px) of a stroke of text: the deepest point of a glyph from its edge.
_MAX_STROKE = 3.0
#: Glyph size (px): taller or wider components are not characters.
_GLYPH_SIZE = (4, 80)
#: A scale bar: filled share of its bounding box, length over height, and shortest length (px).
_BAR_FILL, _BAR_ASPECT, _BAR_MIN_LENGTH = 0.97, 4.0, 16
#: A label box: share of extreme values (black and white) in it, shortest side and area (px).
_BOX_FILL, _BOX_MIN_SIDE, _BOX_MIN_AREA = 0.95, 8, 300
#: ... and the share each of its two tones has at least.
_BOX_TWO_TONES = 0.02
#: Drawn text: the pixels around a stroke are at most this fraction of the ink value (median).
_GLYPH_CONTRAST = 0.7
#: Pixels added around every mark (anti-aliasing, outlines).
_HALO = 2
#: An image whose annotations cover more than this share of the analysed area is refused.
MAX_ANNOTATION_FRACTION = 0.25


def _ink_value(area: np.ndarray):
    """The maximum of the signal: the integer type's, 1.0 for a float ``[0, 1]`` signal (the
    float rule of :mod:`._pixels`), None otherwise."""
    if area.dtype == bool:
        return None
    if np.issubdtype(area.dtype, np.floating):
        return 1.0 if area.size and float(area.min()) >= 0.0 and float(area.max()) <= 1.0 else None
    if not np.issubdtype(area.dtype, np.integer):
        return None
    return np.iinfo(area.dtype).max


def _glyph_lines(glyph_mask: np.ndarray, heights: np.ndarray, min_glyphs: int) -> np.ndarray:
    """The glyph candidates that belong to a line of at least ``min_glyphs`` of them."""
    if not glyph_mask.any():
        return glyph_mask
    size = int(np.median(heights)) if heights.size else 8
    # characters of one line are closer than a character's height, lines further apart than a stroke
    joined = ndi.binary_dilation(glyph_mask, structure=np.ones((3, max(3, size)), bool))
    lines, n = ndi.label(joined)
    glyphs, n_glyphs = ndi.label(glyph_mask, structure=np.ones((3, 3), bool))
    line_of_glyph = ndi.maximum(lines, glyphs, index=np.arange(1, n_glyphs + 1)).astype(np.int64)
    per_line = np.bincount(line_of_glyph, minlength=n + 1)
    keep_line = per_line >= min_glyphs
    keep_glyph = np.zeros(n_glyphs + 1, bool)
    keep_glyph[1:] = keep_line[line_of_glyph]
    return keep_glyph[glyphs]


def _label_boxes(area: np.ndarray, ink_value) -> tuple[np.ndarray, int, int]:
    """Axis-aligned rectangles made of the extreme values only: label boxes and solid scale bars."""
    extreme = (area == ink_value) | (area == 0)
    core = ndi.binary_opening(extreme, structure=np.ones((3, 3), bool))  # lone noise pixels go
    comps, _ = ndi.label(core, structure=np.ones((3, 3), bool))
    out = np.zeros(area.shape, bool)
    boxes = bars = 0
    for sl in ndi.find_objects(comps):
        if sl is None:
            continue
        h, w = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
        inside = area[sl]
        fill = float(extreme[sl].mean())
        white = float((inside == ink_value).mean())
        long_side, short_side = max(h, w), min(h, w)
        if fill >= _BAR_FILL and long_side >= _BAR_MIN_LENGTH and long_side >= _BAR_ASPECT * short_side:
            kind = "bar"
        elif (fill >= _BOX_FILL and short_side >= _BOX_MIN_SIDE and h * w >= _BOX_MIN_AREA
              and min(white, fill - white) >= _BOX_TWO_TONES and h * w <= MAX_ANNOTATION_FRACTION * area.size):
            kind = "box"  # two tones: a blank (all-black) frame is not a label
        else:
            continue
        if not _stands_out(area, sl, ink_value):
            continue
        bars, boxes = bars + (kind == "bar"), boxes + (kind == "box")
        out[sl] = True
    return out, boxes, bars


def _stands_out(area: np.ndarray, sl, ink_value) -> bool:
    """Whether a rectangle's edge differs sharply from the pixels just outside it (drawn, not imaged)."""
    h, w = area.shape
    r0, r1, c0, c1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
    edge, ring = [], []
    for inner, outer, ok in ((area[r0, c0:c1], area[r0 - 1, c0:c1] if r0 else None, r0 > 0),
                             (area[r1 - 1, c0:c1], area[r1, c0:c1] if r1 < h else None, r1 < h),
                             (area[r0:r1, c0], area[r0:r1, c0 - 1] if c0 else None, c0 > 0),
                             (area[r0:r1, c1 - 1], area[r0:r1, c1] if c1 < w else None, c1 < w)):
        if ok:
            edge.append(inner.astype(np.float64))
            ring.append(outer.astype(np.float64))
    if not ring:
        return False
    diff = np.abs(np.concatenate(edge) - np.concatenate(ring))
    return float(np.median(diff)) >= (1.0 - _GLYPH_CONTRAST) * float(ink_value)


def _sharp_glyphs(area: np.ndarray, ink_value, exclude: np.ndarray, min_glyphs: int) -> tuple[np.ndarray, int]:
    """Thin strokes at the ink value, with a sharp edge, in a line of text."""
    ink = (area == ink_value) & ~exclude
    if not ink.any():
        return ink, 0
    comps, n = ndi.label(ink, structure=np.ones((3, 3), bool))
    glyph = np.zeros(n + 1, bool)
    heights = []
    sizes = np.bincount(comps.ravel(), minlength=n + 1)
    for i, sl in enumerate(ndi.find_objects(comps), 1):
        h, w = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
        if not (_GLYPH_SIZE[0] <= max(h, w) <= _GLYPH_SIZE[1] and sizes[i] >= 6):
            continue
        big = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in sl)
        own = comps[big] == i
        if ndi.distance_transform_edt(np.pad(own, 1)).max() > _MAX_STROKE:
            continue
        ring = ndi.binary_dilation(own, structure=np.ones((3, 3), bool)) & ~own & ~ink[big]
        # drawn ink stands out from what is around it; saturated specimen fades into bright pixels
        if ring.any() and np.median(area[big][ring]) <= _GLYPH_CONTRAST * float(ink_value):
            glyph[i] = True
            heights.append(h)
    text = _glyph_lines(glyph[comps], np.asarray(heights), min_glyphs)
    return text, int(np.unique(comps[text]).size)


def burned_in_marks(area: np.ndarray, min_glyphs: int = 3) -> tuple[np.ndarray, dict]:
    """Label boxes, scale bars and text burned into an image (see the module docstring).

    Parameters
    ----------
    area : ndarray
        The analysed area (2-D, integer).
    min_glyphs : int
        Marks of glyph size and stroke width count as text only in a line of at least this many.

    Returns
    -------
    mask : ndarray of bool
        The marks (without the halo).
    counts : dict
        ``{"label_boxes": n, "scale_bars": n, "text_marks": n}``.
    """
    counts = {"label_boxes": 0, "scale_bars": 0, "text_marks": 0}
    ink_value = _ink_value(area)
    if ink_value is None:
        return np.zeros(area.shape, bool), counts
    boxes, counts["label_boxes"], counts["scale_bars"] = _label_boxes(area, ink_value)
    text, counts["text_marks"] = _sharp_glyphs(area, ink_value, boxes, min_glyphs)
    return boxes | text, counts


def detect_annotations(area: np.ndarray, overlay_values=None, min_glyphs: int = 3) -> tuple[np.ndarray, str]:
    """The pixels of ``area`` that are annotations, not specimen (see the module docstring).

    Parameters
    ----------
    area : ndarray
        The analysed area (data bar removed) in the file's own values (raw palette indices).
    overlay_values : array-like, optional
        A palette's overlay entries (:func:`._pixels._palette_to_gray`).
    min_glyphs : int
        As :func:`burned_in_marks`.

    Returns
    -------
    mask : ndarray of bool
        True where the analysis must not look (the marks and a halo of ``_HALO`` px).
    what : str
        What was found, e.g. ``"palette overlay colours (312 px); burned-in white marks: 1 scale
        bar, 9 text marks"``; ``""`` when nothing.
    """
    area = np.asarray(area)
    found = []
    mask = np.zeros(area.shape, bool)
    if overlay_values is not None and len(overlay_values):
        overlay = np.isin(area, np.asarray(overlay_values))
        if overlay.any():
            mask |= overlay
            found.append(f"palette overlay colours ({int(overlay.sum())} px)")
    marks, counts = burned_in_marks(area, min_glyphs=min_glyphs)
    if marks.any():
        mask |= marks
        parts = [f"{counts['label_boxes']} label box(es)"] if counts["label_boxes"] else []
        parts += [f"{counts['scale_bars']} scale bar(s)"] if counts["scale_bars"] else []
        parts += [f"{counts['text_marks']} text marks"] if counts["text_marks"] else []
        found.append("burned-in marks: " + ", ".join(parts))
    if mask.any():
        mask = ndi.binary_dilation(mask, structure=np.ones((3, 3), bool), iterations=_HALO)
    return mask, "; ".join(found)


def paint_out(area: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """``area`` with its annotation pixels replaced by the median of the others (a copy; ``area``
    itself when there are none), so that a network does not see the marks as particles."""
    if mask is None or not mask.any():
        return area
    out = np.array(area, copy=True)
    out[mask] = np.median(area[~mask]).astype(area.dtype) if (~mask).any() else 0
    return out
