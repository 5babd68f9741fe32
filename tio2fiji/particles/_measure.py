"""ImageJ's *Analyze Particles* on a mask or label image: finding the particles in ImageJ's order
and assembling the results table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from skimage.measure import label as _label_regions

from ..errors import InputError
from ..instances import connected_components
from ..io import mask_or_labels as _mask_or_labels
from ..io import pixel_size_nm
from ._columns import COLUMNS, derived_columns
from ._scan import _compact_labels, _fill_holes, _scan
from ._shape import _ellipses, _geometry, _geometry_pieces
from ._size import parse_size

# Particles per call of the geometry kernel when progress is reported (between blocks).
_BLOCK = 4096


def _check_connectivity(connectivity, include_holes):
    """Validate ``connectivity``; 4-connectivity forces include_holes (as ImageJ >= 1.53 does)."""
    if connectivity not in (4, 8):
        raise InputError(f"connectivity must be 4 or 8, not {connectivity!r}")
    return int(connectivity), bool(include_holes) or connectivity == 4


def label_particles(mask, connectivity=8, include_holes=False):
    """Label the particles of a binary mask the way ImageJ's particle analyzer finds them.

    Parameters
    ----------
    mask : (H, W) array
        Binary mask (True = particle); a uint8 0/255 or 0/1 array is accepted too.
    connectivity : {8, 4}
        Pixel connectivity of a particle. 8 is ImageJ's default, kept here because this function
        is ImageJ's; tio2fiji's commands use 4 (:data:`tio2fiji.instances.CONNECTIVITY`).
    include_holes : bool
        If True, a particle also owns its holes (background not connected to the outside), and
        particles lying inside a hole of another are merged into it (ImageJ erases them). Forced
        to True with ``connectivity=4``, as ImageJ >= 1.53 forces "include holes" for 4-connected
        tracing.

    Returns
    -------
    labels : (H, W) ndarray of int32
        0 = background, particles 1..n numbered in raster order of their first pixel (top row
        first, then leftmost), i.e. ImageJ's results-table order.
    n : int
        Number of particles.
    """
    kind, arr = _mask_or_labels(mask)
    if kind != "mask":
        raise InputError("label_particles needs a binary mask, got a label image "
                         "(an integer array with values other than 0 and 1)")
    connectivity, include_holes = _check_connectivity(connectivity, include_holes)
    labels = connected_components(arr, connectivity, dtype=np.int32)
    n = int(labels.max(initial=0))
    if not include_holes or n == 0:
        return labels, n
    _, minx, maxx, miny, maxy, _, _, _ = _scan(labels, n)
    filled = labels.copy()
    _, _, inside_of = _fill_holes(labels, n, minx, maxx, miny, maxy, connectivity == 4, True,
                                  filled)
    keep = inside_of == 0
    keep[0] = True
    renumber = np.zeros(n + 1, np.int32)
    renumber[keep] = np.arange(int(keep.sum()), dtype=np.int32)
    return renumber[filled], int(keep.sum()) - 1


def measure(mask_or_labels, pixel_size_m=None, connectivity=8, include_holes=False,
            exclude_edges=False, image_name="", progress=None, size=None):
    """Measure every particle exactly as ImageJ 1.x *Analyze Particles* does.

    Parameters
    ----------
    mask_or_labels : (H, W) array
        What the particles are, decided from the dtype and values:

        * ``bool``: a binary mask, True = particle; particles are its connected components.
        * ``uint8``: a binary mask whose nonzero pixels (1 or 255) are particles. Any other value
          raises :class:`~tio2fiji.errors.InputError` ("the mask is not binary"): an 8-bit gray
          image must be thresholded first, and a label image must use a wider integer type.
        * other integer dtypes: values only 0 and 1 = a binary mask; otherwise a **label image**
          taken as given: every nonzero value is one particle (0 = background). Its area is its
          pixel count, its outline is traced from its first pixel, and particles inside another's
          holes are kept. Negative values raise InputError. A label in several pieces (not
          ``connectivity``-connected) is still one particle, measured over all of them: area,
          centroid and ellipse of all its pixels, Perim. the sum of the pieces' outer outlines,
          the convex hull (Feret, MinFeret, Solidity) that of all pieces together. (ImageJ's
          Analyze Particles measures masks, where a particle is always one piece.)
        * floating point: accepted only with values 0 and 1 (a binary mask).
    pixel_size_m : float, optional
        Pixel width (= height) in metres. If given, lengths are reported in nanometres and areas
        in nm²; otherwise in pixels. ``df.attrs`` records ``"unit"`` and ``"pixel_size_m"``.
        FeretX and FeretY stay uncalibrated pixel-corner coordinates, as in ImageJ.
    connectivity : {8, 4}
        ImageJ's default 8 (this function is ImageJ's Analyze Particles; tio2fiji's commands use
        4, :data:`tio2fiji.instances.CONNECTIVITY`, as the BAM masks need). 8 traces 8-connected
        particles; 4 traces 4-connected particles and
        forces ``include_holes=True``, as ImageJ >= 1.53 does (1.53t gives meaningless areas for
        4-connected tracing without it).
    include_holes : bool
        If False (ImageJ's default) Area is the particle's pixel count and holes are not part of
        it; perimeter, hull and Feret come from the outer outline either way. If True a particle is
        everything inside its outer outline, holes and particles in them included; particles
        inside holes are then not reported (ImageJ erases them).
    exclude_edges : bool
        Drop particles whose bounding box touches the first or last row or column.
    image_name : str
        Written to the ``image`` column.
    progress : callable, optional
        Called as ``progress(done, total, image_name)`` while particles are measured.
    size : str or SizeFilter, optional
        ImageJ's size filter (``"10-Infinity"``, ``"10-500 pixel"``, :func:`parse_size`): only
        particles whose pixel count (holes included with ``include_holes``) lies within the range,
        in nm² when calibrated (else pixels), are reported, numbered as ImageJ numbers them.

    Returns
    -------
    pandas.DataFrame
        One row per particle in ImageJ's order, columns :data:`COLUMNS`: ImageJ's Area, Perim.,
        Circ., AR, Round, Solidity, Feret, FeretAngle, MinFeret, FeretX, FeretY, Major, Minor,
        Angle, X, Y, BX, BY, Width, Height; BioVoxxel's FeretAR (Feret/MinFeret), Compact
        (sqrt(4·Area/π)/Major) and Extent (Area/(Width·Height)); then ``image``, ``label``,
        ``ECD`` (sqrt(4·Area/π)), ``touches_edge`` and ``unit`` (``"nm"`` or ``"pixel"``, the
        unit of the row's lengths). For a mask, ``label`` is the row number
        1..n, as in ImageJ's results table (it equals the particle's value in
        :func:`label_particles`' output unless ``exclude_edges`` dropped particles); for a label
        image it is the particle's value in that image.

    Notes
    -----
    Definitions follow ``docs/imagej-spec.md`` section A; Solidity divides the pixel count by the
    polygon area of the convex hull of the outline's pixel corners (not a pixel count), and
    Round equals Minor/Major.
    """
    kind, arr = _mask_or_labels(mask_or_labels)
    connectivity, include_holes = _check_connectivity(connectivity, include_holes)
    pw, unit = _calibration(pixel_size_m)
    if kind == "mask":
        labels = connected_components(arr, connectivity, dtype=np.int32)
        n = int(labels.max(initial=0))
        values = np.arange(1, n + 1, dtype=np.int64)
    else:
        labels, values = _compact_labels(arr)
        n = len(values)
    if n == 0:
        return _empty_frame(unit, pixel_size_m)

    count, minx, maxx, miny, maxy, fx, fy, sums = _scan(labels, n)
    keep = np.ones(n + 1, bool)
    keep[0] = False
    if include_holes:
        dummy = np.zeros((0, 0), np.int32)
        hole_count, hole_sums, inside_of = _fill_holes(
            labels, n, minx, maxx, miny, maxy, connectivity == 4, kind == "mask", dummy)
        count = count + hole_count
        sums = sums + hole_sums
        if kind == "mask":  # ImageJ erases particles inside holes
            keep &= inside_of == 0
    idx = np.flatnonzero(keep)  # compact label values of the reported particles
    values = values[idx - 1]
    count, minx, maxx, miny, maxy, fx, fy, sums = (
        a[idx] for a in (count, minx, maxx, miny, maxy, fx, fy, sums))
    h, w = labels.shape
    touches = (minx == 0) | (miny == 0) | (maxx == w - 1) | (maxy == h - 1)
    sel = ~touches if exclude_edges else np.ones(len(idx), bool)
    size = parse_size(size)
    if size is not None:  # ImageJ: pixelCount >= min/unitSquared && pixelCount <= max/unitSquared
        lo, hi = size.pixel_bounds(pixel_size_m)
        sel &= (count >= lo) & (count <= hi)
    if not sel.all():
        idx, values, count, minx, maxx, miny, maxy, fx, fy, sums, touches = (
            a[sel] for a in (idx, values, count, minx, maxx, miny, maxy, fx, fy, sums, touches))
    m = len(idx)
    if m == 0:
        return _empty_frame(unit, pixel_size_m)
    if kind == "mask":  # ImageJ's row number; a label image keeps its values
        values = np.arange(1, m + 1, dtype=np.int64)

    geo = np.empty((m, 7), np.float64)
    ids = idx.astype(np.int32)
    heights = maxy - miny + 1
    block = m if progress is None else _BLOCK
    for lo in range(0, m, block):
        hi = min(lo + block, m)
        # The outline is that of the particle's own pixels (holes never touch it).
        _geometry(labels, ids[lo:hi], fx[lo:hi], fy[lo:hi], count[lo:hi], heights[lo:hi],
                  connectivity == 4, pw, pw, geo[lo:hi])
        if progress is not None:
            progress(hi, m, image_name)
    if kind != "mask":
        _split_labels_geometry(labels, idx, miny, maxy, connectivity == 4, pw, geo)
    ell = np.empty((m, 5), np.float64)
    _ellipses(count, minx, maxx, miny, maxy, sums, ell)
    return _assemble(count, minx, maxx, miny, maxy, geo, ell, values, touches, pw, unit,
                     pixel_size_m, image_name)


def _split_labels_geometry(labels, idx, miny, maxy, four, pw, geo):
    """Outline values of the labels in several pieces, from all their pieces (``geo``'s rows).

    ``labels`` is the compact label image, ``idx`` the compact labels of ``geo``'s rows (sorted),
    ``miny``/``maxy`` their row ranges. A piece is a ``four``- (else 8-) connected region of one
    label; labels in one piece keep the values :func:`_geometry` gave them.
    """
    pieces = _label_regions(labels, background=0, connectivity=1 if four else 2).astype(np.int32)
    n_pieces = int(pieces.max(initial=0))
    if n_pieces <= int(labels.max(initial=0)):  # every label in one piece (the usual case)
        return
    pcount, _, _, _, _, pfx, pfy, _ = _scan(pieces, n_pieces)
    owner = labels[pfy[1:], pfx[1:]]  # the label of each piece, pieces 1..n_pieces
    per_label = np.bincount(owner, minlength=int(labels.max()) + 1)
    for lab in np.flatnonzero(per_label > 1):
        row = int(np.searchsorted(idx, lab))
        if row >= len(idx) or idx[row] != lab:  # not reported (exclude_edges)
            continue
        mine = np.flatnonzero(owner == lab) + 1  # its pieces, in raster order of first pixel
        ytop = int(miny[row])
        _geometry_pieces(pieces, mine.astype(np.int32), pfx[mine], pfy[mine], pcount[mine], ytop,
                         int(maxy[row]) - ytop + 2, four, pw, pw, geo[row])


def _calibration(pixel_size_m):
    """Pixel size in the reported unit (nm) and the unit's name."""
    nm = pixel_size_nm(pixel_size_m)
    return (1.0, "pixel") if nm is None else (nm, "nm")


def _empty_frame(unit, pixel_size_m):
    df = pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in COLUMNS})
    df.attrs.update(_attrs(unit, pixel_size_m))
    return df


def _attrs(unit, pixel_size_m):
    return {"unit": unit, "pixel_size_m": None if pixel_size_m is None else float(pixel_size_m)}


def _dtype(column):
    return {"image": object, "unit": object, "label": np.int64, "touches_edge": bool,
            "FeretX": np.int64, "FeretY": np.int64}.get(column, np.float64)


def _assemble(count, minx, maxx, miny, maxy, geo, ell, values, touches, pw, unit, pixel_size_m,
              image_name):
    """The results table; arithmetic in ImageJ's order so values match to the last bits."""
    ph = pw
    npix = count.astype(np.float64)
    width = (maxx - minx + 1).astype(np.float64)
    height = (maxy - miny + 1).astype(np.float64)
    area = npix * pw * ph
    perim = geo[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        circ = np.where(perim == 0.0, 0.0, 4.0 * math.pi * (area / (perim * perim)))
        circ = np.minimum(circ, 1.0)
        major = ell[:, 0] * pw  # ImageStatistics: psize = pw for square pixels
        minor = ell[:, 1] * pw
        feret = geo[:, 1]
        min_feret = geo[:, 3]
        bw = width * pw
        bh = height * ph
        extra = derived_columns(area, feret, min_feret, major, bw, bh)
        df = pd.DataFrame({
            "Area": area,
            "Perim.": perim,
            "Circ.": circ,
            "AR": major / minor,
            "Round": 4.0 * area / (math.pi * major * major),
            "Solidity": npix / geo[:, 6],
            "Feret": feret,
            "FeretAngle": geo[:, 2],
            "MinFeret": min_feret,
            "FeretX": geo[:, 4].astype(np.int64),
            "FeretY": geo[:, 5].astype(np.int64),
            "Major": major,
            "Minor": minor,
            "Angle": ell[:, 2],
            "X": ell[:, 3] * pw,
            "Y": ell[:, 4] * ph,
            "BX": minx * pw,
            "BY": miny * ph,
            "Width": bw,
            "Height": bh,
            "FeretAR": extra["FeretAR"],
            "Compact": extra["Compact"],
            "Extent": extra["Extent"],
            "image": pd.Series([image_name] * len(area), dtype=object),
            "label": values.astype(np.int64),
            "ECD": extra["ECD"],
            "touches_edge": touches.astype(bool),
            "unit": pd.Series([unit] * len(area), dtype=object),
        })
    df.attrs.update(_attrs(unit, pixel_size_m))
    return df
