"""ImageJ's EDM and MaximumFinder (``ij/plugin/filter/EDM.java``, ``MaximumFinder.java``), ported.

:func:`edm_imagej` is ImageJ's float Euclidean distance map and :func:`ultimate_points` its
*Process > Binary > Ultimate Points*, pixel for pixel, compiled with numba.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from scipy import ndimage as ndi

from ..errors import InputError
from ..io import as_binary_mask

_NO_POINT = -1
_INT_MAX = 2147483647
_F32_MAX = np.float32(3.4028235e38)
_SQRT2 = np.float32(1.4142135624)          # MaximumFinder.SQRT2 (a float)
_HALF_SQRT2 = np.float32(np.float32(0.5) * _SQRT2)
_F1 = np.float32(1.0)
_F2 = np.float32(2.0)
# MaximumFinder's maxSortingError for an EDM: 1.1f * SQRT2/2f, in float arithmetic
_EDM_SORTING_ERROR = np.float32(np.float32(1.1) * np.float32(_SQRT2 / np.float32(2.0)))
# pixel-type bits of MaximumFinder
_LISTED, _PROCESSED, _MAX_AREA, _EQUAL, _MAX_POINT = 2, 4, 8, 16, 32
# neighbours clockwise from north, as MaximumFinder.DIR_X_OFFSET / DIR_Y_OFFSET
_DX = np.array([0, 1, 1, 1, 0, -1, -1, -1], np.int64)
_DY = np.array([-1, -1, 0, 1, 1, 1, 0, -1], np.int64)
#: ImageJ's EDM.MAXFINDER_TOLERANCE: the prominence for UEPs and watershed.
UEP_PROMINENCE = 0.5


@njit(cache=True)
def _min_dist2(points, p_prev, p_diag, x, y, dist_sqr):
    # EDM.minDist2: nearest of three candidate background points; updates points[x]
    p0 = points[x]
    nearest = p0
    if p0 != _NO_POINT:
        x0 = p0 & 0xFFFF
        y0 = (p0 >> 16) & 0xFFFF
        d = (x - x0) * (x - x0) + (y - y0) * (y - y0)
        if d < dist_sqr:
            dist_sqr = d
    if p_diag != p0 and p_diag != _NO_POINT:
        x1 = p_diag & 0xFFFF
        y1 = (p_diag >> 16) & 0xFFFF
        d = (x - x1) * (x - x1) + (y - y1) * (y - y1)
        if d < dist_sqr:
            nearest = p_diag
            dist_sqr = d
    if p_prev != p_diag and p_prev != _NO_POINT:
        x1 = p_prev & 0xFFFF
        y1 = (p_prev >> 16) & 0xFFFF
        d = (x - x1) * (x - x1) + (y - y1) * (y - y1)
        if d < dist_sqr:
            nearest = p_prev
            dist_sqr = d
    points[x] = nearest
    return np.float32(dist_sqr)


@njit(cache=True)
def _edm_line(bg, f, bufs, width, offset, y):
    # EDM.edmLine with edgesAreBackground = false: a left-to-right and a right-to-left pass
    points = bufs[0]
    p_prev = _NO_POINT
    p_diag = _NO_POINT
    for x in range(width):
        p_next_diag = points[x]
        if bg[offset]:
            points[x] = x | (y << 16)
        else:
            d2 = _min_dist2(points, p_prev, p_diag, x, y, _INT_MAX)
            if f[offset] > d2:
                f[offset] = d2
        p_prev = points[x]
        p_diag = p_next_diag
        offset += 1
    offset -= 1
    points = bufs[1]
    p_prev = _NO_POINT
    p_diag = _NO_POINT
    for x in range(width - 1, -1, -1):
        p_next_diag = points[x]
        if bg[offset]:
            points[x] = x | (y << 16)
        else:
            d2 = _min_dist2(points, p_prev, p_diag, x, y, _INT_MAX)
            if f[offset] > d2:
                f[offset] = d2
        p_prev = points[x]
        p_diag = p_next_diag
        offset -= 1


@njit(cache=True)
def _edm_imagej_flat(bg, height, width):
    n = height * width
    f = np.zeros(n, np.float32)
    for i in range(n):
        if not bg[i]:
            f[i] = _F32_MAX
    bufs = np.full((2, width), _NO_POINT, np.int64)
    for y in range(height):
        _edm_line(bg, f, bufs, width, y * width, y)
    bufs[:, :] = _NO_POINT
    for y in range(height - 1, -1, -1):
        _edm_line(bg, f, bufs, width, y * width, y)
    for i in range(n):  # FloatProcessor.sqrt(): (float)Math.sqrt(v), 0 for v <= 0
        v = f[i]
        f[i] = np.float32(math.sqrt(np.float64(v))) if v > 0 else np.float32(0.0)
    return f


@njit(cache=True)
def _true_edm_height(x, y, pix, width, height):
    # MaximumFinder.trueEdmHeight: interpolated ridge height, all in float arithmetic
    off = x + y * width
    v = pix[off]
    if x == 0 or y == 0 or x == width - 1 or y == height - 1 or v == 0:
        return v
    true_h = np.float32(v + _HALF_SQRT2)
    ridge_or_max = False
    for d in range(4):
        o1 = off + _DX[d] + _DY[d] * width
        o2 = off + _DX[d + 4] + _DY[d + 4] * width
        v1 = pix[o1]
        v2 = pix[o2]
        if v >= v1 and v >= v2:
            ridge_or_max = True
            h = np.float32((v1 + v2) / _F2)
        else:
            h = v1 if v1 < v2 else v2
        if d % 2 == 0:
            h = np.float32(h + _F1)
        else:
            h = np.float32(h + _SQRT2)
        if true_h > h:
            true_h = h
    if not ridge_or_max:
        true_h = v
    return true_h


@njit(cache=True)
def _java_float_to_int(f):
    # Java's (int) cast of a float: NaN -> 0, saturating, truncation toward zero
    if f != f:
        return 0
    if f >= 2147483647.0:
        return 2147483647
    if f <= -2147483648.0:
        return -2147483648
    return int(f)


@njit(cache=True)
def _sorted_edm_maxima(pix, width, height):
    # MaximumFinder.getSortedMaxPoints(isEDM=true, excludeEdgesNow=false, no threshold, no roi)
    gmin = _F32_MAX
    gmax = -_F32_MAX
    for i in range(width * height):
        v = pix[i]
        if gmin > v:
            gmin = v
        if gmax < v:
            gmax = v
    if not gmax > gmin:  # findMaxima: maximumPossible = globalMax > globalMin (strict off)
        return np.zeros(0, np.int64)
    is_max = np.zeros(width * height, np.bool_)
    n_max = 0
    for y in range(height):
        for x in range(width):
            i = x + y * width
            v = pix[i]
            v_true = _true_edm_height(x, y, pix, width, height)
            if v == gmin:
                continue
            ok = True
            for d in range(8):
                x2 = x + _DX[d]
                y2 = y + _DY[d]
                if x2 < 0 or x2 >= width or y2 < 0 or y2 >= height:
                    continue
                vn = pix[x2 + y2 * width]
                vn_true = _true_edm_height(x2, y2, pix, width, height)
                if vn > v and vn_true > v_true:
                    ok = False
                    break
            if ok:
                is_max[i] = True
                n_max += 1
    v_factor = np.float32(2e9 / np.float64(np.float32(gmax - gmin)))
    keys = np.empty(n_max, np.int64)
    k = 0
    for y in range(height):
        for x in range(width):
            p = x + y * width
            if is_max[p]:
                fv = _true_edm_height(x, y, pix, width, height)
                iv = _java_float_to_int(np.float32(np.float32(fv - gmin) * v_factor))
                keys[k] = (np.int64(iv) << 32) | np.int64(p)  # value high, offset low
                k += 1
    return np.sort(keys)


# inlined into _analyze_edm_maxima (numba IR), as the one loop before the split: no call per flood
@njit(cache=True, inline="always")
def _flood_maximum(pix, width, height, types, plist, offset0, v0, tolerance, sorting_error):
    # One flood of MaximumFinder.analyzeAndMarkMaxima from the maximum at offset0 (height v0):
    # lists in plist the 8-connected pixels down to `tolerance` below v0 (background skipped).
    # Reaching an earlier maximum's area or a pixel above v0 + sorting_error means offset0 is no
    # maximum (max_possible False). A pixel above v0 within the sorting error is a sorting error:
    # the flood goes on from it as the new maximum, and the caller floods again from there.
    x0 = offset0 % width
    y0 = offset0 // width
    plist[0] = offset0
    types[offset0] |= _EQUAL | _LISTED
    list_len = 1
    list_i = 0
    sorting_err = False
    max_possible = True
    x_equal = np.float64(x0)
    y_equal = np.float64(y0)
    n_equal = 1
    while True:
        offset = plist[list_i]
        x = offset % width
        y = offset // width
        for d in range(8):
            x2 = x + _DX[d]
            y2 = y + _DY[d]
            if x2 < 0 or x2 >= width or y2 < 0 or y2 >= height:
                continue
            offset2 = x2 + y2 * width
            if types[offset2] & _LISTED:
                continue
            if pix[offset2] <= 0:
                continue  # background
            if types[offset2] & _PROCESSED:
                max_possible = False  # reached an earlier maximum's area
                break
            v2 = _true_edm_height(x2, y2, pix, width, height)
            if v2 > np.float32(v0 + sorting_error):
                max_possible = False  # reached a higher point
                break
            elif v2 >= np.float32(v0 - tolerance):
                if v2 > v0:
                    sorting_err = True
                    offset0 = offset2
                    v0 = v2
                plist[list_len] = offset2
                list_len += 1
                types[offset2] |= _LISTED
                if v2 == v0:
                    types[offset2] |= _EQUAL
                    x_equal += x2
                    y_equal += y2
                    n_equal += 1
        list_i += 1
        if list_i >= list_len:
            break
    return list_len, sorting_err, max_possible, offset0, v0, x_equal, y_equal, n_equal


@njit(cache=True, inline="always")
def _mark_maximum(types, plist, list_len, max_possible, x_equal, y_equal, n_equal, width):
    # The end of a flood without sorting error: its pixels become processed; for a maximum they
    # are its area, and its one point is the pixel of exactly its height nearest to their mean
    # position (first in flood order on ties).
    if max_possible:
        reset_mask = np.uint8(~_LISTED & 0xFF)
    else:
        reset_mask = np.uint8(~(_LISTED | _EQUAL) & 0xFF)
    x_equal /= n_equal
    y_equal /= n_equal
    min_dist2 = 1e20
    nearest = 0
    for j in range(list_len):
        offset = plist[j]
        x = offset % width
        y = offset // width
        types[offset] &= reset_mask
        types[offset] |= _PROCESSED
        if max_possible:
            types[offset] |= _MAX_AREA
            if types[offset] & _EQUAL:
                dist2 = (x_equal - x) * (x_equal - x) + (y_equal - y) * (y_equal - y)
                if dist2 < min_dist2:
                    min_dist2 = dist2
                    nearest = j
    if max_possible:
        types[plist[nearest]] |= _MAX_POINT


@njit(cache=True)
def _analyze_edm_maxima(pix, width, height, keys, tolerance, sorting_error):
    # MaximumFinder.analyzeAndMarkMaxima for SINGLE_POINTS on an EDM (strict off, edges kept)
    types = np.zeros(width * height, np.uint8)
    plist = np.empty(width * height, np.int64)
    for i_max in range(keys.shape[0] - 1, -1, -1):  # highest first
        offset0 = keys[i_max] & 0xFFFFFFFF
        if types[offset0] & _PROCESSED:
            continue
        v0 = _true_edm_height(offset0 % width, offset0 // width, pix, width, height)
        while True:  # repeat when a higher point was found (sorting is approximate)
            list_len, sorting_err, max_possible, offset0, v0, x_equal, y_equal, n_equal = _flood_maximum(
                pix, width, height, types, plist, offset0, v0, tolerance, sorting_error)
            if not sorting_err:
                break
            for j in range(list_len):
                types[plist[j]] = 0
        _mark_maximum(types, plist, list_len, max_possible, x_equal, y_equal, n_equal, width)
    return np.nonzero(types & _MAX_POINT)[0]


def _check_mask(mask, name="mask") -> np.ndarray:
    return as_binary_mask(mask, name, hint="For a label image use `labels > 0`.")


def edm_imagej(mask) -> np.ndarray:
    """ImageJ's float Euclidean distance map of a binary mask.

    A port of ``EDM.makeFloatEDM(ip, 0, false)``: for each foreground pixel the distance from its
    centre to the nearest background pixel centre; pixels outside the image are not background.

    Parameters
    ----------
    mask : (H, W) array_like of bool or 0/k
        Foreground = nonzero.

    Returns
    -------
    (H, W) ndarray of float32
        0 on the background. ImageJ's two-pass propagation is exact for distances < 13; beyond,
        on rare pixels, it finds a background pixel that is not the nearest, so its value can
        exceed the exact distance (``scipy.ndimage.distance_transform_edt``) by up to 0.09. A
        mask without background gets ImageJ's value for "no background found",
        ``sqrt(2**31 - 1)`` as a float.
    """
    fg = _check_mask(mask)
    h, w = fg.shape
    if max(h, w) > 65535:
        raise InputError(f"ImageJ's EDM encodes coordinates in 16 bits: {w}x{h} is too large.")
    flat = _edm_imagej_flat(np.ascontiguousarray(~fg).ravel(), h, w)
    return flat.reshape(h, w)


def ultimate_points(mask, edm="imagej"):
    """Ultimate eroded points (UEPs) exactly as ImageJ's *Process > Binary > Ultimate Points*.

    Steps (``EDM.run`` with ``processType = UEP``): the float EDM of the foreground, then
    ``MaximumFinder.findMaxima`` with prominence 0.5, strict off, edge maxima kept and EDM mode on,
    which compares the interpolated ridge heights of ``trueEdmHeight``. A local maximum is
    accepted when flooding its 8-neighbourhood down to 0.5 below it (background skipped) reaches
    neither a higher pixel nor an earlier maximum's area; maxima are taken from highest to lowest.
    Each accepted maximum gives one pixel: among its pixels of exactly the maximum height, the one
    nearest to their mean position (first in flood order on ties).

    Parameters
    ----------
    mask : (H, W) array_like of bool or 0/k
        Binary mask, foreground = nonzero (ImageJ with "Black background" on and 0/255 pixels).
    edm : {"imagej", "exact"}
        ``"imagej"`` (default) ports ImageJ's EDM algorithm, so the result equals ImageJ's pixel
        for pixel; ``"exact"`` uses ``scipy.ndimage.distance_transform_edt`` (identical except
        where ImageJ's approximation errs, at distances >= 13, see :func:`edm_imagej`), which can
        move or add a UEP in large particles.

    Returns
    -------
    coords : (n, 2) ndarray of int64
        ``(row, col)`` of each UEP, in raster order (row by row). Use :func:`pixel_points` for
        ``(x, y)`` centre coordinates.
    edm_values : (n,) ndarray of float32
        The EDM at each UEP: the radius of the largest inscribed circle centred there. ImageJ's
        8-bit output holds these rounded, ``min(255, floor(v + 0.5))``.
    """
    fg = _check_mask(mask)
    h, w = fg.shape
    if edm == "imagej":
        dist = edm_imagej(fg)
    elif edm == "exact":
        # pixels outside the image are not background: pad with foreground, then crop
        padded = np.pad(fg, 1, constant_values=True)
        if padded.all():
            dist = np.full(fg.shape, np.float32(math.sqrt(_INT_MAX)), np.float32)
        else:
            dist = ndi.distance_transform_edt(padded)[1:-1, 1:-1].astype(np.float32)
    else:
        raise InputError(f"edm must be 'imagej' or 'exact', not {edm!r}.")
    pix = np.ascontiguousarray(dist).ravel()
    keys = _sorted_edm_maxima(pix, w, h)
    offsets = _analyze_edm_maxima(pix, w, h, keys, np.float32(UEP_PROMINENCE), _EDM_SORTING_ERROR)
    coords = np.stack([offsets // w, offsets % w], axis=1).astype(np.int64)
    return coords, pix[offsets].astype(np.float32)
