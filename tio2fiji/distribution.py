"""Spatial distribution of particles: ultimate eroded points, nearest neighbours and tests.

The thesis classifies each image's particles as clustered, random or self-avoiding (its Table 9)
with the BioVoxxel "Particle Distribution (2D)" test applied to ImageJ's ultimate eroded points
(UEPs). This module

* computes UEPs exactly as ImageJ's *Process > Binary > Ultimate Points* does
  (:func:`ultimate_points`, a port of ``EDM.makeFloatEDM`` and ``MaximumFinder``), and through a
  real ImageJ (:func:`ultimate_points_imagej`);
* reproduces the BioVoxxel test step by step (:func:`biovoxxel_test`), natively and as an ImageJ
  macro (``macros/BioVoxxel_Particle_Distribution.ijm``, :func:`biovoxxel_test_imagej`). It is
  kept to reproduce published numbers, **not** as a recommendation: it uses the expected
  nearest-neighbour distance (NND) as a variance, has no edge correction, and calls truly random
  patterns "clustering" (``docs/imagej-spec.md`` §B, §C);
* provides sound tests, which are the default: the Clark–Evans ratio with Donnelly's edge
  correction (:func:`clark_evans_test`), a Monte Carlo test against complete spatial randomness
  (CSR) or against random non-overlapping placement of the observed particles
  (:func:`monte_carlo_test`), and the G-function and Ripley's L with simulation envelopes
  (:func:`envelopes`, :func:`plot_envelopes`);
* puts one image's result into a row with the ``distribution.csv`` columns of DESIGN.md
  (:func:`test_distribution`).

Conventions
-----------
* Pixel positions returned by :func:`ultimate_points` are integer ``(row, col)`` indices.
* Point patterns are float ``(x, y)`` arrays, ``x`` to the right and ``y`` down, in a rectangular
  window ``[0, width] x [0, height]``. A pixel ``(row, col)`` has its centre at
  ``(col + 0.5, row + 0.5)`` (ImageJ's centroid convention), see :func:`pixel_points`.
* With a pixel size (metres) the sound methods work in nanometres throughout (points, window,
  area, distances). The BioVoxxel mode reproduces BioVoxxel's units instead: centroids are
  calibrated but the area is the image's width x height in pixels.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
from numba import njit
from scipy import ndimage as ndi
from scipy import stats
from scipy.spatial import cKDTree

from .errors import InputError, Tio2FijiError
from .io import as_binary_mask, pixel_size_nm

__all__ = [
    "BIOVOXXEL_CRITICAL_F",
    "BIOVOXXEL_CRITICAL_T",
    "COLUMNS",
    "METHODS",
    "biovoxxel_expected_nnd",
    "biovoxxel_points",
    "biovoxxel_test",
    "biovoxxel_test_imagej",
    "clark_evans_test",
    "distribution_table",
    "edm_imagej",
    "envelopes",
    "g_function",
    "l_function",
    "macro_path",
    "monte_carlo_test",
    "nearest_neighbour_distances",
    "pixel_points",
    "plot_envelopes",
    "random_sequential_discs",
    "test_distribution",
    "ultimate_points",
    "ultimate_points_imagej",
]

logger = logging.getLogger(__name__)

#: ``distribution.csv`` columns (DESIGN.md, thesis Table 9); rows may carry extra keys after them.
COLUMNS = ("image", "method", "n", "area", "expected_nnd", "observed_nnd", "statistic",
           "critical_value", "df", "test", "p_value", "classification")

#: Methods of :func:`test_distribution`; the first is the default.
METHODS = ("clark-evans", "monte-carlo", "biovoxxel")

# =============================================================================================
# ImageJ's EDM and MaximumFinder (ij/plugin/filter/EDM.java, MaximumFinder.java), ported
# =============================================================================================

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


@njit(cache=True)
def _analyze_edm_maxima(pix, width, height, keys, tolerance, sorting_error):
    # MaximumFinder.analyzeAndMarkMaxima for SINGLE_POINTS on an EDM (strict off, edges kept)
    types = np.zeros(width * height, np.uint8)
    plist = np.empty(width * height, np.int64)
    for i_max in range(keys.shape[0] - 1, -1, -1):  # highest first
        offset0 = keys[i_max] & 0xFFFFFFFF
        if types[offset0] & _PROCESSED:
            continue
        x0 = offset0 % width
        y0 = offset0 // width
        v0 = _true_edm_height(x0, y0, pix, width, height)
        sorting_err = True
        while sorting_err:  # repeat when a higher point was found (sorting is approximate)
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
                            x0 = x2
                            y0 = y2
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
            if sorting_err:
                for j in range(list_len):
                    types[plist[j]] = 0
            else:
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


# =============================================================================================
# ImageJ route
# =============================================================================================

def _imagej_bridge():
    from . import imagej  # the JVM is started only when the ImageJ route is used

    return imagej


def ultimate_points_imagej(mask, ij_jar=None):
    """UEPs computed by a real ImageJ 1.x (``EDM`` plugin, argument ``"points"``), headless.

    Parameters
    ----------
    mask : (H, W) array_like of bool or 0/k
        Binary mask, foreground = nonzero.
    ij_jar : str or Path, optional
        See :func:`tio2fiji.imagej.start_imagej`.

    Returns
    -------
    coords : (n, 2) ndarray of int64
        ``(row, col)`` in raster order, as :func:`ultimate_points`.
    values : (n,) ndarray of uint8
        ImageJ's 8-bit output at the UEPs: the EDM value rounded.

    Notes
    -----
    Runs ``IJ.runPlugIn(imp, "ij.plugin.filter.EDM", "points")`` with ``Prefs.blackBackground``
    on and the EDM output type "overwrite", restoring both afterwards.
    """
    fg = _check_mask(mask)
    ij = _imagej_bridge()
    ij.start_imagej(ij_jar)
    import jpype

    prefs = jpype.JClass("ij.Prefs")
    edm_class = jpype.JClass("ij.plugin.filter.EDM")
    with ij._lock:
        imp = ij.to_imageplus(fg, title="uep-input")
        old_black, old_type = bool(prefs.blackBackground), int(edm_class.getOutputType())
        prefs.blackBackground = True
        edm_class.setOutputType(edm_class.BYTE_OVERWRITE)
        try:
            jpype.JClass("ij.IJ").runPlugIn(imp, "ij.plugin.filter.EDM", "points")
        finally:
            prefs.blackBackground = old_black
            edm_class.setOutputType(old_type)
        out = ij.from_imageplus(imp)
    rows, cols = np.nonzero(out)
    return np.stack([rows, cols], axis=1).astype(np.int64), out[rows, cols]


def macro_path() -> Path:
    """Path of ``BioVoxxel_Particle_Distribution.ijm`` (package data, else the source tree)."""
    name = "BioVoxxel_Particle_Distribution.ijm"
    here = Path(__file__).resolve().parent
    for cand in (here / name, here / "macros" / name, here.parent / "macros" / name):
        if cand.is_file():
            return cand
    raise Tio2FijiError(f"The ImageJ macro {name} was not found next to the package or in "
                        f"{here.parent / 'macros'}; reinstall tio2fiji.")


def parse_macro_return(text: str) -> dict:
    """``"key=value;key=value"`` (what the project's macros return) to a dict, numbers as floats."""
    out = {}
    for item in text.strip().split(";"):
        if "=" not in item:
            continue
        key, value = item.split("=", 1)
        try:
            out[key] = float(value)
        except ValueError:
            out[key] = value
    return out


def biovoxxel_test_imagej(image, pixel_size=None, statistic="median", alpha=0.05,
                          java_student_bug=True, macro=None, ij_jar=None) -> dict:
    """Run the BioVoxxel procedure as an ImageJ macro in a real ImageJ, headless.

    The macro (``macros/BioVoxxel_Particle_Distribution.ijm``) needs no BioVoxxel: it labels the
    8-connected groups of nonzero pixels (what *Analyze Particles* does on the thresholded UEP
    image), takes their centroids and runs the test of :func:`biovoxxel_test`.

    Parameters
    ----------
    image : (H, W) array_like
        A UEP image (nonzero = UEP, e.g. from :func:`ultimate_points`) or any binary mask.
    pixel_size : float, optional
        Pixel size in metres: centroids are then in nm while the area stays in pixels (as in
        BioVoxxel).
    statistic, alpha, java_student_bug
        As in :func:`biovoxxel_test`.
    macro : str or Path, optional
        Another copy of the macro (default :func:`macro_path`).
    ij_jar : str or Path, optional
        See :func:`tio2fiji.imagej.start_imagej`.

    Returns
    -------
    dict
        The keys of :func:`biovoxxel_test` parsed from the macro's return value, plus ``log``
        (what it printed to the Log window).
    """
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise InputError(f"expected a 2-D image, got shape {arr.shape}.")
    _biovoxxel_tables(alpha)  # validate before starting Java
    if statistic not in ("median", "mean"):
        raise InputError(f"statistic must be 'median' or 'mean', not {statistic!r}.")
    ij = _imagej_bridge()
    code = Path(macro or macro_path()).read_text(encoding="utf-8")
    imp = ij.to_imageplus(arr != 0, title="uep", pixel_size=pixel_size)
    args = (f"statistic={statistic} alpha={alpha:g} "
            f"java_student_bug={1 if java_student_bug else 0}")
    res = ij.run_macro(code, image=imp, args=args, ij_jar=ij_jar)
    if not res.value:
        raise Tio2FijiError(f"The BioVoxxel macro returned nothing; its log:\n{res.output}")
    out = parse_macro_return(res.value)
    for key in ("n", "df"):
        if key in out and np.isfinite(out[key]):
            out[key] = int(out[key]) if key == "n" else out[key]
    out["significant"] = out.get("significant") in (1.0, "1", "true")
    out["log"] = res.output
    return out


# =============================================================================================
# Points and nearest neighbours
# =============================================================================================

def _scale_nm(pixel_size) -> float:
    """nm per pixel, or 1.0 (distances in pixels) without a pixel size."""
    nm = pixel_size_nm(pixel_size)
    return 1.0 if nm is None else nm


def pixel_points(coords, pixel_size=None) -> np.ndarray:
    """Pixel ``(row, col)`` indices to ``(x, y)`` centre coordinates, in pixels or nm.

    Parameters
    ----------
    coords : (n, 2) array_like of int
        ``(row, col)``, e.g. from :func:`ultimate_points`.
    pixel_size : float, optional
        Metres per pixel; the result is then in nanometres.

    Returns
    -------
    (n, 2) ndarray of float64
        ``((col + 0.5) * s, (row + 0.5) * s)``, ImageJ's centroid of a one-pixel particle.
    """
    c = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    return np.stack([c[:, 1] + 0.5, c[:, 0] + 0.5], axis=1) * _scale_nm(pixel_size)


def _check_points(points, name="points") -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise InputError(f"{name}: expected an (n, 2) array of (x, y), got shape {pts.shape}.")
    if not np.isfinite(pts).all():
        raise InputError(f"{name}: coordinates must be finite.")
    return pts


def nearest_neighbour_distances(points, return_index=False):
    """Distance from each point to its nearest other point, with a KD-tree (O(n log n)).

    Parameters
    ----------
    points : (n, 2) array_like
        Coordinates; n >= 2.
    return_index : bool
        Also return the index of each point's nearest neighbour.

    Returns
    -------
    d : (n,) ndarray of float64
    index : (n,) ndarray of int64, optional
    """
    pts = _check_points(points)
    if len(pts) < 2:
        raise InputError(f"nearest-neighbour distances need at least 2 points, got {len(pts)}.")
    dist, idx = cKDTree(pts).query(pts, k=2)
    # with duplicate points the tree may list the twin before the point itself
    self_first = idx[:, 0] == np.arange(len(pts))
    nn = np.where(self_first, idx[:, 1], idx[:, 0])
    d = np.where(self_first, dist[:, 1], dist[:, 0])
    return (d, nn.astype(np.int64)) if return_index else d


def _window(window) -> tuple[float, float]:
    try:
        width, height = (float(v) for v in window)
    except (TypeError, ValueError) as err:
        raise InputError(f"window must be (width, height), got {window!r}.") from err
    if not (width > 0 and height > 0 and math.isfinite(width) and math.isfinite(height)):
        raise InputError(f"window must have a positive width and height, got {window!r}.")
    return width, height


# =============================================================================================
# BioVoxxel "Particle Distribution (2D)", reproduced
# =============================================================================================

#: Lower bounds of BioVoxxel's bins for n (F test) and df (t test).
BIOVOXXEL_BINS = (10, 30, 60, 100, 500, 1000, 2000, 3000, 4000, 5000)
#: BioVoxxel's critical F, F(1 - alpha; k, k) for k = BIOVOXXEL_BINS, per alpha (copied constants).
BIOVOXXEL_CRITICAL_F = {
    0.05: (2.978237016, 1.840871688, 1.53431418, 1.391719552, 1.158655374, 1.109688288,
           1.076352036, 1.061912029, 1.053397886, 1.047627319),
    0.01: (4.849146802, 2.385967353, 1.836259361, 1.597669125, 1.231664935, 1.158625448,
           1.109682472, 1.088680123, 1.076352997, 1.068021936),
    0.001: (8.753866276, 3.217090322, 2.252265545, 1.867401382, 1.319136791, 1.216098723,
            1.148287469, 1.1194961, 1.102684079, 1.091358502),
}
#: BioVoxxel's critical t: the one-sided t(1 - alpha, k) for k = BIOVOXXEL_BINS (copied constants).
BIOVOXXEL_CRITICAL_T = {
    0.05: (1.812461102, 1.697260851, 1.670648865, 1.660234327, 1.647906854, 1.646378818,
           1.645615867, 1.645361708, 1.645234659, 1.645158438),
    0.01: (2.763769458, 2.457261531, 2.390119457, 2.364217356, 2.333828914, 2.330082625,
           2.328213787, 2.327591515, 2.32728048, 2.327093897),
    0.001: (4.143700493, 3.385184866, 3.231709121, 3.173739481, 3.106611618, 3.098402156,
            3.09431229, 3.092951196, 3.092271061, 3.091863111),
}


def _biovoxxel_tables(alpha):
    for key in BIOVOXXEL_CRITICAL_F:
        if alpha is not None and math.isclose(float(alpha), key):
            return key, BIOVOXXEL_CRITICAL_F[key], BIOVOXXEL_CRITICAL_T[key]
    raise InputError(f"BioVoxxel offers alpha = 0.05, 0.01 or 0.001 (95%, 99%, 99.9%), not {alpha!r}.")


def _bin_index(value, edges_upper_exclusive) -> int:
    # index of the BioVoxxel bin holding value; -1 below the first bin
    idx = -1
    for i, lo in enumerate(edges_upper_exclusive):
        if value >= lo:
            idx = i
    return idx


def biovoxxel_expected_nnd(area, n) -> float:
    """BioVoxxel's (and the thesis's eq. 30) random NND, ``0.5 * sqrt(area / n)``."""
    if n <= 0:
        raise InputError(f"n must be positive, got {n}.")
    return 0.5 * math.sqrt(area / n)


def biovoxxel_points(coords, pixel_size=None) -> np.ndarray:
    """Centroids that *Analyze Particles* reports for a UEP image.

    ``Particle Distribution (2D)`` runs the particle analyzer on the (thresholded) UEP image, so
    8-connected UEP pixels (e.g. of particles touching diagonally) form one particle. This
    groups them the same way and returns the centroids in ImageJ's order (raster order of each
    group's first pixel).

    Parameters
    ----------
    coords : (n, 2) array_like of int
        UEP ``(row, col)`` indices.
    pixel_size : float, optional
        Metres per pixel; centroids are then in nm (ImageJ's calibrated X, Y).

    Returns
    -------
    (m, 2) ndarray of float64
        ``(x, y)`` centroids, ``m <= n``.
    """
    c = np.asarray(coords, dtype=np.int64).reshape(-1, 2)
    if len(c) == 0:
        return np.zeros((0, 2))
    r0, c0 = c.min(axis=0)
    shape = tuple(c.max(axis=0) - (r0, c0) + 1)
    img = np.zeros(shape, bool)
    img[c[:, 0] - r0, c[:, 1] - c0] = True
    labels, n = ndi.label(img, structure=np.ones((3, 3), bool))  # numbered in raster order
    idx = np.arange(1, n + 1)
    ys = np.asarray(ndi.mean(np.indices(shape)[0], labels, idx)) + r0 + 0.5
    xs = np.asarray(ndi.mean(np.indices(shape)[1], labels, idx)) + c0 + 0.5
    return np.stack([xs, ys], axis=1) * _scale_nm(pixel_size)


def _java_seq_sum(values) -> float:
    # Java's left-to-right double sum (numpy's sum is pairwise and differs in the last bits)
    return float(np.cumsum(values)[-1]) if len(values) else 0.0


def biovoxxel_test(points, area, alpha=0.05, statistic="median", java_student_bug=True) -> dict:
    """BioVoxxel's "Particle Distribution (2D)" test (centroid NND), reproduced step by step.

    This reproduces ``Particle_Distribution2D.java`` (BioVoxxel Toolbox 2.x) so that published
    numbers such as the thesis's Table 9 can be checked. It is **not** a sound test: the expected
    random NND is also used as the random sample's *variance* (so T depends on the unit of
    length), there is no edge correction, and the median NND of a truly random pattern is about
    0.47 sqrt(A/n), not 0.5 sqrt(A/n), so large random patterns are called "clustering". Use
    :func:`clark_evans_test` or :func:`monte_carlo_test` for inference.

    Steps
    -----
    1. ``E = 0.5 sqrt(A/n)``; the same number is the "variance" of the random sample.
    2. ``d_i``: each point's nearest-neighbour distance.
    3. ``m``: the median (even n: mean of the two middle values) or the mean of ``d``;
       ``s2 = sum((d - m)**2) / n``.
    4. F test: ``F = max(E, s2) / min(E, s2)`` against BioVoxxel's critical F for n's bin
       (11-30, 31-60, 61-100, 101-500, 501-1000, ..., >= 5001). ``F >= critical`` chooses
       Welch's test with ``df = floor((n-1)(E + s2)^2 / (E^2 + s2^2))``; otherwise (also for
       n < 11) Student's test with ``df = 2n - 2``.
    5. ``T = |E - m| / sqrt((E + s2) / n)`` for both tests.
    6. Critical t: BioVoxxel's one-sided ``t(1 - alpha, k)`` for the lower bound ``k`` of df's bin
       (10, 30, 60, 100, 500, 1000, 2000, 3000, 4000, 5000); 0 when df < 10.
    7. ``T >= critical t``: "clustering" if ``m < E``, "self-avoiding" if ``m > E``; else "random".

    Parameters
    ----------
    points : (n, 2) array_like
        ``(x, y)`` centroids (BioVoxxel measures the UEP image's particles, see
        :func:`biovoxxel_points`), in the units BioVoxxel would see: calibrated if the image is.
    area : float
        BioVoxxel's A: the image's width x height in pixels, whatever the calibration.
    alpha : {0.05, 0.01, 0.001}
        BioVoxxel's confidence choice (95%, 99%, 99.9%).
    statistic : {"median", "mean"}
        BioVoxxel's default is the median.
    java_student_bug : bool
        True (default) reproduces the Java plugin exactly: its Student branch computes
        ``sqrt(2/n)`` with integer division, so ``2/n`` is 0 for n >= 3 and T is infinite (NaN
        if E = m), i.e. always significant. False uses ``2.0/n``, as BioVoxxel's older macro
        version did; then Student's T equals Welch's. The Welch branch, which ran for the thesis,
        is the same either way.

    Returns
    -------
    dict
        ``n, area, expected_nnd (E), variance_random (E again), observed_nnd (m), mean_nnd,
        median_nnd, variance (s2), F, critical_F, test, statistic (T), df, critical_value,
        alpha, significant, classification`` and ``nnd`` (the distances).

    Raises
    ------
    InputError
        Fewer than 2 points, a bad alpha or statistic.
    """
    pts = _check_points(points)
    n = len(pts)
    if n < 2:
        raise InputError(f"the BioVoxxel test needs at least 2 particles, got {n}.")
    if statistic not in ("median", "mean"):
        raise InputError(f"statistic must be 'median' or 'mean', not {statistic!r}.")
    alpha_key, crit_f, crit_t = _biovoxxel_tables(alpha)
    area = float(area)
    e = 0.5 * math.sqrt(area / n)
    # nearest neighbours by KD-tree; the distance itself as Java computes it
    _, nn = nearest_neighbour_distances(pts, return_index=True)
    diff = pts - pts[nn]
    d = np.sqrt(diff[:, 0] * diff[:, 0] + diff[:, 1] * diff[:, 1])
    mean = _java_seq_sum(d) / n
    ds = np.sort(d)
    median = (ds[n // 2] + ds[n // 2 - 1]) / 2 if n % 2 == 0 else float(ds[n // 2])
    m = median if statistic == "median" else mean
    s2 = _java_seq_sum((ds - m) ** 2) / n
    with np.errstate(divide="ignore", invalid="ignore"):
        f_value = float(np.float64(max(e, s2)) / np.float64(min(e, s2)))
    n_bin = _bin_index(n - 1, BIOVOXXEL_BINS)  # bins are 11-30, 31-60, ...: n-1 >= lower bound
    critical_f = crit_f[n_bin] if n_bin >= 0 else math.nan
    welch = n >= 11 and f_value >= critical_f
    if welch:
        test = "Welch's t-test"
        t_value = abs(e - m) / math.sqrt(e / n + s2 / n)
        df = math.floor(((e / n + s2 / n) ** 2)
                        / (((e / n) ** 2) / (n - 1) + ((s2 / n) ** 2) / (n - 1)))
    else:
        test = "Student's t-test"
        two_over_n = (2 // n) if java_student_bug else 2.0 / n
        with np.errstate(divide="ignore", invalid="ignore"):
            t_value = float(np.float64(abs(e - m))
                            / np.float64(math.sqrt(0.5 * (e + s2)) * math.sqrt(two_over_n)))
        df = 2 * n - 2
    t_bin = _bin_index(df, BIOVOXXEL_BINS)
    critical_t = crit_t[t_bin] if t_bin >= 0 else 0.0
    significant = bool(t_value >= critical_t)  # NaN compares False, as in Java
    if not significant:
        classification = "random"
    elif m < e:
        classification = "clustering"
    elif m > e:
        classification = "self-avoiding"
    else:  # BioVoxxel logs "significant" without a direction (only possible when df < 10)
        classification = "significant, no direction"
    return {
        "n": n, "area": area, "expected_nnd": e, "variance_random": e, "observed_nnd": m,
        "mean_nnd": mean, "median_nnd": median, "variance": s2, "F": f_value,
        "critical_F": critical_f, "test": test, "statistic": t_value, "df": float(df),
        "critical_value": critical_t, "alpha": alpha_key, "significant": significant,
        "classification": classification, "nnd": d,
    }


# =============================================================================================
# Sound tests
# =============================================================================================

def _classify(p_value, alpha, clustered) -> str:
    # "clustered" / "regular" when significant, in the direction the caller determined
    if not p_value < alpha:
        return "random"
    return "clustered" if clustered else "regular"


def clark_evans_test(points, window, alpha=0.05, edge_correction="donnelly") -> dict:
    """Clark–Evans nearest-neighbour test with Donnelly's edge correction.

    ``R = mean NND / E[mean NND]``; ``z = (mean NND - E) / sqrt(Var)``, two-sided p from the
    normal distribution. For a rectangle of area ``A`` and perimeter ``P`` with ``n`` points,
    Donnelly (1978):

    ``E = 0.5 sqrt(A/n) + (0.0514 + 0.041/sqrt(n)) P/n``,
    ``Var = 0.0703 A/n^2 + 0.037 P sqrt(A/n^5)``.

    Without correction (``edge_correction="none"``, Clark & Evans 1954): ``E = 0.5 sqrt(A/n)``,
    ``Var = (4 - pi) A / (4 pi n^2)``; biased towards "regular" because points near the border
    lose neighbours outside the window.

    Parameters
    ----------
    points : (n, 2) array_like
        ``(x, y)`` in the window's units; n >= 2 (Donnelly's formulas are meant for n >= 7).
    window : (width, height)
        The rectangle ``[0, width] x [0, height]`` the points were observed in.
    alpha : float
        Significance level for the classification.
    edge_correction : {"donnelly", "none"}

    Returns
    -------
    dict
        ``n, area, expected_nnd, observed_nnd, ratio (R), variance, statistic (z),
        critical_value (z_{1-alpha/2}), p_value, classification`` ("clustered" for R < 1,
        "regular" for R > 1 when p < alpha, else "random").
    """
    pts = _check_points(points)
    width, height = _window(window)
    n = len(pts)
    if n < 2:
        raise InputError(f"the Clark–Evans test needs at least 2 points, got {n}.")
    area, perim = width * height, 2.0 * (width + height)
    observed = float(nearest_neighbour_distances(pts).mean())
    if edge_correction == "donnelly":
        expected = 0.5 * math.sqrt(area / n) + (0.0514 + 0.041 / math.sqrt(n)) * perim / n
        variance = 0.0703 * area / n ** 2 + 0.037 * perim * math.sqrt(area / n ** 5)
    elif edge_correction == "none":
        expected = 0.5 * math.sqrt(area / n)
        variance = (4.0 - math.pi) * area / (4.0 * math.pi * n ** 2)
    else:
        raise InputError(f"edge_correction must be 'donnelly' or 'none', not {edge_correction!r}.")
    z = (observed - expected) / math.sqrt(variance)
    p = float(2.0 * stats.norm.sf(abs(z)))
    return {
        "n": n, "area": area, "expected_nnd": expected, "observed_nnd": observed,
        "ratio": observed / expected, "variance": variance, "statistic": z,
        "critical_value": float(stats.norm.ppf(1 - alpha / 2)), "p_value": p,
        "edge_correction": edge_correction, "classification": _classify(p, alpha, z < 0),
    }


@njit(cache=True)
def _rsa_discs(radii, width, height, seed, max_tries):
    # random sequential placement of non-overlapping discs, centres uniform in the window
    np.random.seed(seed)
    n = radii.shape[0]
    xs = np.empty(n)
    ys = np.empty(n)
    rmax = 0.0
    for i in range(n):
        rmax = max(rmax, radii[i])
    cell = max(2.0 * rmax, 1e-12 * (width + height))
    nx = int(width / cell) + 1
    ny = int(height / cell) + 1
    head = np.full(nx * ny, -1, np.int64)
    nxt = np.full(n, -1, np.int64)
    for i in range(n):
        placed = False
        for _ in range(max_tries):
            x = np.random.random() * width
            y = np.random.random() * height
            cx = min(int(x / cell), nx - 1)
            cy = min(int(y / cell), ny - 1)
            ok = True
            for gy in range(max(cy - 1, 0), min(cy + 2, ny)):
                for gx in range(max(cx - 1, 0), min(cx + 2, nx)):
                    j = head[gy * nx + gx]
                    while j >= 0:
                        dx = x - xs[j]
                        dy = y - ys[j]
                        rr = radii[i] + radii[j]
                        if dx * dx + dy * dy < rr * rr:
                            ok = False
                            break
                        j = nxt[j]
                    if not ok:
                        break
                if not ok:
                    break
            if ok:
                xs[i] = x
                ys[i] = y
                c = cy * nx + cx
                nxt[i] = head[c]
                head[c] = i
                placed = True
                break
        if not placed:
            return xs, ys, i
    return xs, ys, n


def random_sequential_discs(radii, window, rng=None, max_tries=10000) -> np.ndarray:
    """Place discs at random without overlap (random sequential adsorption), largest first.

    Parameters
    ----------
    radii : (n,) array_like
        Disc radii (e.g. the particles' inscribed or equivalent radii), window units.
    window : (width, height)
        Disc centres are uniform in ``[0, width] x [0, height]``; discs may cross the border,
        like particles cut by the image edge.
    rng : int or numpy.random.Generator, optional
        Seed or generator.
    max_tries : int
        Random positions tried per disc before giving up.

    Returns
    -------
    (n, 2) ndarray
        Disc centres ``(x, y)``, in the order of ``radii``.

    Raises
    ------
    InputError
        The discs do not fit (a disc found no free place in ``max_tries`` tries): the packing is
        too dense for random sequential placement (jamming near 55% coverage for equal discs).

    Notes
    -----
    Largest first is a documented choice: placing small discs first would jam dense packings
    early. Under this null, positions are as random as non-overlap allows.
    """
    r = np.asarray(radii, dtype=np.float64).ravel()
    width, height = _window(window)
    if (r < 0).any() or not np.isfinite(r).all():
        raise InputError("radii must be finite and non-negative.")
    gen = np.random.default_rng(rng)
    order = np.argsort(-r, kind="stable")
    seed = int(gen.integers(0, 2 ** 31 - 1))
    xs, ys, placed = _rsa_discs(r[order], width, height, seed, int(max_tries))
    if placed < len(r):
        cover = float(np.pi * (r ** 2).sum() / (width * height))
        raise InputError(
            f"random non-overlapping placement failed: disc {placed + 1} of {len(r)} found no free "
            f"place in {max_tries} tries (discs cover {cover:.0%} of the window). Use the CSR null "
            f"(null='csr') or smaller radii.")
    out = np.empty((len(r), 2))
    out[order, 0] = xs
    out[order, 1] = ys
    return out


def _simulator(n, width, height, null, radii, rng, max_tries):
    if null == "csr":
        def simulate():
            return rng.random((n, 2)) * (width, height)
    elif null == "hardcore":
        if radii is None:
            raise InputError("null='hardcore' needs the particles' radii.")
        r = np.asarray(radii, dtype=np.float64).ravel()
        if len(r) != n:
            raise InputError(f"radii has {len(r)} values for {n} points.")

        def simulate():
            return random_sequential_discs(r, (width, height), rng, max_tries)
    else:
        raise InputError(f"null must be 'csr' or 'hardcore', not {null!r}.")
    return simulate


def _rank_p_value(observed, simulated) -> float:
    # two-sided Monte Carlo p: twice the smaller tail, the observed value counted in each
    sims = np.asarray(simulated)
    low = 1 + np.count_nonzero(sims <= observed)
    high = 1 + np.count_nonzero(sims >= observed)
    return float(min(1.0, 2.0 * min(low, high) / (len(sims) + 1)))


def monte_carlo_test(points, window, n_sim=199, alpha=0.05, null="csr", radii=None, seed=0,
                     max_tries=10000, progress=None) -> dict:
    """Monte Carlo test of the mean nearest-neighbour distance against a null model.

    The observed mean NND is ranked among ``n_sim`` patterns simulated in the same window with the
    same number of points, so border effects are the same in data and simulations and no edge
    correction is needed. Two-sided p = ``2 min(1 + #{sim <= obs}, 1 + #{sim >= obs}) /
    (n_sim + 1)``, capped at 1.

    Parameters
    ----------
    points : (n, 2) array_like
        ``(x, y)``; n >= 2.
    window : (width, height)
    n_sim : int
        Number of simulations; ``2 / (n_sim + 1)`` is the smallest possible p, so a two-sided
        test at alpha = 0.05 needs n_sim >= 40.
    alpha : float
    null : {"csr", "hardcore"}
        ``"csr"``: complete spatial randomness (n uniform points). ``"hardcore"``: random
        non-overlapping placement of discs with the given ``radii``
        (:func:`random_sequential_discs`), the right null for hard particles: "regular" then
        means more regular than non-overlap alone explains.
    radii : (n,) array_like, optional
        Disc radii for ``null="hardcore"``, in window units.
    seed : int or numpy.random.Generator
        Same seed, same result.
    max_tries : int
        See :func:`random_sequential_discs`.
    progress : callable, optional
        Called as ``progress(done, total)`` after each simulation.

    Returns
    -------
    dict
        ``n, area, expected_nnd`` (mean over simulations), ``observed_nnd, statistic``
        (observed / expected), ``critical_value`` (NaN: the test is rank based),
        ``sim_low, sim_high`` (the simulations' alpha/2 and 1 - alpha/2 quantiles), ``p_value,
        n_sim, null, classification``.
    """
    pts = _check_points(points)
    width, height = _window(window)
    n = len(pts)
    if n < 2:
        raise InputError(f"the Monte Carlo test needs at least 2 points, got {n}.")
    if int(n_sim) < 1:
        raise InputError(f"n_sim must be >= 1, got {n_sim}.")
    rng = np.random.default_rng(seed)
    simulate = _simulator(n, width, height, null, radii, rng, max_tries)
    observed = float(nearest_neighbour_distances(pts).mean())
    sims = np.empty(int(n_sim))
    for k in range(int(n_sim)):
        sims[k] = nearest_neighbour_distances(simulate()).mean()
        if progress is not None:
            progress(k + 1, int(n_sim))
    p = _rank_p_value(observed, sims)
    expected = float(sims.mean())
    lo, hi = np.quantile(sims, [alpha / 2, 1 - alpha / 2])
    return {
        "n": n, "area": width * height, "expected_nnd": expected, "observed_nnd": observed,
        "statistic": observed / expected, "critical_value": math.nan, "sim_low": float(lo),
        "sim_high": float(hi), "p_value": p, "n_sim": int(n_sim), "null": null,
        "classification": _classify(p, alpha, observed < np.median(sims)),
    }


def g_function(points, window, r) -> np.ndarray:
    """Nearest-neighbour distribution function G(r), border (reduced-sample) corrected.

    ``G(r) = #{i : d_i <= r, b_i >= r} / #{i : b_i >= r}`` where ``d_i`` is the NND and ``b_i``
    the distance of point i to the window's border: only points at least r inside count.

    Parameters
    ----------
    points : (n, 2) array_like
    window : (width, height)
    r : (k,) array_like
        Distances, ascending.

    Returns
    -------
    (k,) ndarray
        NaN where no point is r inside the window.
    """
    pts = _check_points(points)
    width, height = _window(window)
    r = np.asarray(r, dtype=np.float64)
    d = nearest_neighbour_distances(pts)
    b = np.minimum.reduce([pts[:, 0], width - pts[:, 0], pts[:, 1], height - pts[:, 1]])
    inside = b[None, :] >= r[:, None]
    hits = inside & (d[None, :] <= r[:, None])
    with np.errstate(invalid="ignore", divide="ignore"):
        return hits.sum(axis=1) / inside.sum(axis=1)


def l_function(points, window, r) -> np.ndarray:
    """Besag's L(r) = sqrt(K(r)/pi), Ripley's K with the translation edge correction.

    ``K(r) = A / (n (n-1)) * sum_{i != j, d_ij <= r} A / ((W - |dx_ij|) (H - |dy_ij|))``. Under
    CSR, ``L(r) = r``.

    Parameters
    ----------
    points : (n, 2) array_like
        n >= 2.
    window : (width, height)
    r : (k,) array_like
        Distances, ascending, below ``min(width, height)``.

    Returns
    -------
    (k,) ndarray
    """
    pts = _check_points(points)
    width, height = _window(window)
    r = np.asarray(r, dtype=np.float64)
    n = len(pts)
    if n < 2:
        raise InputError(f"L needs at least 2 points, got {n}.")
    area = width * height
    rmax = float(r.max()) if r.size else 0.0
    pairs = cKDTree(pts).query_pairs(rmax, output_type="ndarray")
    if len(pairs) == 0:
        return np.zeros_like(r)
    delta = np.abs(pts[pairs[:, 0]] - pts[pairs[:, 1]])
    dist = np.hypot(delta[:, 0], delta[:, 1])
    weight = area / ((width - delta[:, 0]) * (height - delta[:, 1]))
    order = np.argsort(dist)
    cum = np.concatenate([[0.0], np.cumsum(weight[order])])
    counts = cum[np.searchsorted(dist[order], r, side="right")]
    k = area / (n * (n - 1)) * 2.0 * counts  # each unordered pair counts for (i,j) and (j,i)
    return np.sqrt(k / np.pi)


def envelopes(points, window, r_g=None, r_l=None, n_sim=99, alpha=0.05, null="csr", radii=None,
              seed=0, max_tries=10000, progress=None) -> dict:
    """G and L of a pattern with pointwise simulation envelopes and a global (MAD) test.

    Parameters
    ----------
    points : (n, 2) array_like
    window : (width, height)
    r_g, r_l : array_like, optional
        Distances for G and L. Defaults: 101 values up to 2.5 times ``0.5 sqrt(A/n)`` for G and
        up to a quarter of the window's shorter side for L.
    n_sim : int
        Simulations; the envelopes are their pointwise min and max (for n_sim = 39 or 99, a
        pointwise two-sided test at about 5% or 2%, not a global one).
    alpha : float
        Level of the global tests.
    null, radii, seed, max_tries, progress
        As in :func:`monte_carlo_test`.

    Returns
    -------
    dict
        ``{"G": {...}, "L": {...}, "n_sim": int, "null": str}``; each of G and L holds arrays
        ``r, observed, low, high, mean, theoretical`` (CSR: ``1 - exp(-lambda pi r^2)`` and ``r``)
        and the maximum-absolute-deviation test against the simulations' mean: ``mad``,
        ``p_value`` (rank based, ``(1 + #{sim >= obs}) / (n_sim + 1)``) and ``classification``.
    """
    pts = _check_points(points)
    width, height = _window(window)
    n = len(pts)
    if n < 2:
        raise InputError(f"envelopes need at least 2 points, got {n}.")
    e = 0.5 * math.sqrt(width * height / n)
    r_g = np.linspace(0, 2.5 * e, 101) if r_g is None else np.asarray(r_g, float)
    r_l = np.linspace(0, 0.25 * min(width, height), 101) if r_l is None else np.asarray(r_l, float)
    rng = np.random.default_rng(seed)
    simulate = _simulator(n, width, height, null, radii, rng, max_tries)
    obs_g, obs_l = g_function(pts, window, r_g), l_function(pts, window, r_l)
    sim_g = np.empty((int(n_sim), len(r_g)))
    sim_l = np.empty((int(n_sim), len(r_l)))
    for k in range(int(n_sim)):
        sim = simulate()
        sim_g[k], sim_l[k] = g_function(sim, window, r_g), l_function(sim, window, r_l)
        if progress is not None:
            progress(k + 1, int(n_sim))
    lam = n / (width * height)
    out = {"n_sim": int(n_sim), "null": null}
    for name, r, obs, sims, theo in (("G", r_g, obs_g, sim_g, 1 - np.exp(-lam * np.pi * r_g ** 2)),
                                     ("L", r_l, obs_l, sim_l, r_l)):
        with np.errstate(invalid="ignore"), _warnings_off():
            mean = np.nanmean(sims, axis=0)
            dev_obs = np.nanmax(np.abs(obs - mean))
            # each simulation against the mean of the others would be exact; the plain mean is
            # the usual approximation for n_sim >= 99
            dev_sim = np.nanmax(np.abs(sims - mean), axis=1)
            low, high = np.nanmin(sims, axis=0), np.nanmax(sims, axis=0)
        p = float((1 + np.count_nonzero(dev_sim >= dev_obs)) / (n_sim + 1))
        # direction where the largest deviation lies: G or L above the null = clustered
        i = int(np.nanargmax(np.abs(obs - mean)))
        out[name] = {"r": r, "observed": obs, "low": low, "high": high, "mean": mean,
                     "theoretical": theo, "mad": float(dev_obs), "p_value": p,
                     "classification": _classify(p, alpha, clustered=obs[i] > mean[i])}
    return out


class _warnings_off:
    # nanmean/nanmax warn on all-NaN columns (G at r beyond every point's border distance)
    def __enter__(self):
        import warnings
        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


def plot_envelopes(env, unit="px", title=None):
    """Plot G(r) and L(r) - r with their simulation envelopes.

    Parameters
    ----------
    env : dict
        Output of :func:`envelopes`.
    unit : str
        Unit of r for the axis labels (``"nm"`` when calibrated).
    title : str, optional
        Figure title (e.g. the image name).

    Returns
    -------
    matplotlib.figure.Figure
        Not shown and not saved; the caller saves it (``fig.savefig("g_l.png")``). Made with
        the Agg canvas, so no display is needed.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    null = "CSR" if env.get("null", "csr") == "csr" else "hard-core"
    for ax, name in zip(fig.subplots(1, 2), ("G", "L")):
        e = env[name]
        r = e["r"]
        shift = r if name == "L" else 0.0  # L(r) - r: zero under CSR, easier to read
        ax.fill_between(r, e["low"] - shift, e["high"] - shift, color="0.8",
                        label=f"{null} envelope ({env['n_sim']} sims)")
        ax.plot(r, e["mean"] - shift, "k--", lw=1, label=f"{null} mean")
        ax.plot(r, e["observed"] - shift, "C3", lw=1.5, label="observed")
        ax.set_xlabel(f"r ({unit})")
        ax.set_ylabel("G(r)" if name == "G" else f"L(r) - r ({unit})")
        ax.set_title(f"{name}: MAD test p = {e['p_value']:.3g} ({e['classification']})",
                     fontsize=9)
        ax.legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


# =============================================================================================
# One image -> one distribution.csv row
# =============================================================================================

def _is_points(arr) -> bool:
    # points are a float (n, 2) array; masks and label images are bool or integer images
    return arr.ndim == 2 and arr.shape[1] == 2 and np.issubdtype(arr.dtype, np.floating)


def _particles_from_image(arr, points_mode, backend, ij_jar):
    """UEPs or centroids of a mask or label image, as pixel (row, col) or float centres."""
    values = np.unique(arr)
    is_labels = arr.dtype != bool and np.issubdtype(arr.dtype, np.integer) and (
        values.size > 2 or (values.size == 2 and values[0] != 0 and arr.dtype.itemsize > 1))
    if not is_labels and (values.size > 2 or (values.size == 2 and values[0] != 0)):
        raise InputError(f"expected a binary mask (0 and one value) or an integer label image, "
                         f"got {arr.dtype} with {values.size} distinct values.")
    mode = points_mode
    if mode == "auto":
        mode = "centroid" if is_labels else "uep"
    if mode == "uep":
        fg = arr != 0
        if backend == "imagej":  # ImageJ's radii are its 8-bit, rounded EDM values
            coords, values_uep = ultimate_points_imagej(fg, ij_jar)
        else:
            coords, values_uep = ultimate_points(fg)
        radii = values_uep.astype(np.float64)
        return "uep", coords, radii
    if mode == "centroid":
        labels = arr if is_labels else ndi.label(arr != 0, structure=np.ones((3, 3), bool))[0]
        idx = np.unique(labels[labels > 0])
        rows = np.asarray(ndi.mean(np.indices(labels.shape)[0], labels, idx))
        cols = np.asarray(ndi.mean(np.indices(labels.shape)[1], labels, idx))
        area = np.asarray(ndi.sum(np.ones(labels.shape), labels, idx))
        return "centroid", np.stack([rows, cols], axis=1), np.sqrt(area / np.pi)
    raise InputError(f"points must be 'auto', 'uep' or 'centroid', not {points_mode!r}.")


def test_distribution(data, method="clark-evans", *, shape=None, pixel_size=None, image="",
                      points="auto", alpha=0.05, n_sim=199, null="csr", radii=None, seed=0,
                      statistic="median", java_student_bug=True, backend="native", ij_jar=None,
                      progress=None) -> dict:
    """Test one image's particles for clustering or regularity: one ``distribution.csv`` row.

    Parameters
    ----------
    data : (H, W) array or (n, 2) float array
        A binary mask (bool or 0/k), a label image (integers, 0 = background), or ``(x, y)``
        points in pixel coordinates (``col + 0.5, row + 0.5`` for pixel centres).
    method : {"clark-evans", "monte-carlo", "biovoxxel"}
        ``"clark-evans"`` (default): :func:`clark_evans_test` with Donnelly's correction.
        ``"monte-carlo"``: :func:`monte_carlo_test`. ``"biovoxxel"``: reproduces BioVoxxel's
        Particle Distribution (2D) (:func:`biovoxxel_test`), e.g. to check thesis Table 9; not
        a recommended test.
    shape : (H, W), optional
        The analysed window in pixels, anchored at the top-left pixel. Default: the image's shape
        (required for points). Give e.g. ``(704, 1024)`` to leave out a mask's data-bar rows in
        the sound methods; the BioVoxxel mode always uses the whole image, as BioVoxxel does.
    pixel_size : float, optional
        Metres per pixel. The sound methods then work in nm (points, window, area, distances).
        The BioVoxxel mode reproduces BioVoxxel's mixed units: nm centroids, area in pixels.
    image : str
        Written to the ``image`` column.
    points : {"auto", "uep", "centroid"}
        Which point stands for a particle. ``"auto"``: UEPs for a mask (as the thesis), centroids
        for a label image (touching labels would merge in a binary UEP computation).
    alpha : float
        Significance level (BioVoxxel: 0.05, 0.01 or 0.001).
    n_sim, null, radii, seed
        Monte Carlo settings (:func:`monte_carlo_test`). For ``null="hardcore"`` the default radii
        are the UEPs' inscribed-circle radii (EDM values) or, for centroids, the equivalent
        circle radii, in the same units as the points. Two UEPs of one irregular particle can be
        closer than the sum of their inscribed radii, which this null never produces; for the
        hard-core null prefer ``points="centroid"``.
    statistic, java_student_bug
        BioVoxxel settings (:func:`biovoxxel_test`).
    backend : {"native", "imagej"}
        Where UEPs (and, for ``"biovoxxel"``, the whole procedure, via the macro) are computed.
        For ``"biovoxxel"`` on points or centroids, the macro sees each point as the pixel that
        contains it.
    ij_jar : str or Path, optional
        For the ImageJ backend.
    progress : callable, optional
        ``progress(done, total)`` during Monte Carlo simulations.

    Returns
    -------
    dict
        The keys of :data:`COLUMNS` first, then method-specific extras (``unit``, ``points``,
        ``ratio``, ``variance``, ``F``, ``critical_F``, ``n_sim``, ...). With fewer than 2 points
        the statistics are NaN and ``classification`` is ``"too few points"``.
    """
    if method not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)}, not {method!r}.")
    if backend not in ("native", "imagej"):
        raise InputError(f"backend must be 'native' or 'imagej', not {backend!r}.")
    scale = _scale_nm(pixel_size)
    unit = "nm" if pixel_size is not None else "px"
    arr = np.asarray(data)
    uep_image = None
    if _is_points(arr):
        if shape is None:
            raise InputError("points need the image shape (H, W) in pixels: shape=(H, W).")
        kind, pts_px = "points", _check_points(arr)
        full_shape = tuple(int(v) for v in shape)
        sim_radii = None
    else:
        if arr.ndim != 2 or 0 in arr.shape:
            raise InputError(f"expected a 2-D mask or label image, got shape {arr.shape}.")
        kind, coords, sim_radii = _particles_from_image(arr, points, backend, ij_jar)
        full_shape = arr.shape
        pts_px = np.stack([coords[:, 1] + 0.5, coords[:, 0] + 0.5], axis=1).astype(float)
        if kind == "uep":
            uep_image = np.zeros(arr.shape, bool)
            uep_image[coords[:, 0], coords[:, 1]] = True
    height, width = (int(v) for v in (shape if shape is not None else full_shape))
    row = dict.fromkeys(COLUMNS, math.nan)
    row.update(image=image, method=method, test="", classification="too few points",
               unit=unit, points=kind, backend=backend)

    if method == "biovoxxel":
        # BioVoxxel: centroids of the UEP image's particles, A = whole image in pixels
        fh, fw = full_shape
        if kind == "uep":
            pts = biovoxxel_points(np.argwhere(uep_image), pixel_size)
        else:
            pts = pts_px * scale
        row["n"] = len(pts)
        row["area"] = float(fw * fh)
        row.update(area_unit="px^2", distance_unit=unit)
        if len(pts) < 2:
            return row
        if backend == "imagej":
            img = uep_image if uep_image is not None else _points_image(pts_px, full_shape)
            res = biovoxxel_test_imagej(img, pixel_size, statistic, alpha, java_student_bug,
                                        ij_jar=ij_jar)
        else:
            res = biovoxxel_test(pts, fw * fh, alpha, statistic, java_student_bug)
        row.update(n=int(res["n"]), area=float(res["area"]), expected_nnd=res["expected_nnd"],
                   observed_nnd=res["observed_nnd"], statistic=res["statistic"],
                   critical_value=res["critical_value"], df=res["df"], test=res["test"],
                   p_value=math.nan, classification=res["classification"],
                   statistic_name=statistic, F=res["F"], critical_F=res["critical_F"],
                   variance=res["variance"], mean_nnd=res["mean_nnd"],
                   median_nnd=res["median_nnd"], significant=res["significant"],
                   java_student_bug=bool(java_student_bug))
        return row

    inside = (pts_px[:, 0] <= width) & (pts_px[:, 1] <= height)
    if not inside.all():
        logger.info("%s: %d points outside the %dx%d window are left out", image,
                    int((~inside).sum()), width, height)
    pts = pts_px[inside] * scale
    if sim_radii is not None:
        sim_radii = np.asarray(sim_radii)[inside] * scale
    if radii is not None:
        sim_radii = np.asarray(radii, dtype=float)
    window = (width * scale, height * scale)
    row["n"] = len(pts)
    row["area"] = window[0] * window[1]
    if len(pts) < 2:
        return row
    if method == "clark-evans":
        res = clark_evans_test(pts, window, alpha)
        row.update(test="Clark-Evans z (Donnelly edge correction)", ratio=res["ratio"],
                   variance=res["variance"])
    else:
        res = monte_carlo_test(pts, window, n_sim, alpha, null, sim_radii, seed,
                               progress=progress)
        row.update(test=f"Monte Carlo mean NND vs {'CSR' if null == 'csr' else 'hard-core discs'}",
                   n_sim=res["n_sim"], null=null, sim_low=res["sim_low"],
                   sim_high=res["sim_high"], seed=seed if isinstance(seed, int) else None)
    row.update(expected_nnd=res["expected_nnd"], observed_nnd=res["observed_nnd"],
               statistic=res["statistic"], critical_value=res["critical_value"],
               p_value=res["p_value"], classification=res["classification"])
    return row


def distribution_table(rows):
    """Rows of :func:`test_distribution` as a DataFrame: :data:`COLUMNS` first, extras after.

    Parameters
    ----------
    rows : iterable of dict

    Returns
    -------
    pandas.DataFrame
        Ready for ``to_csv("distribution.csv", index=False)``; extras missing from a row are NaN.
    """
    import pandas as pd

    df = pd.DataFrame(list(rows))
    for col in COLUMNS:
        if col not in df:
            df[col] = np.nan
    return df[list(COLUMNS) + [c for c in df.columns if c not in COLUMNS]]


def _points_image(pts_px, shape) -> np.ndarray:
    # one pixel per point, for running the macro on a point pattern
    img = np.zeros(shape, bool)
    cols = np.clip(np.floor(pts_px[:, 0]).astype(int), 0, shape[1] - 1)
    rows = np.clip(np.floor(pts_px[:, 1]).astype(int), 0, shape[0] - 1)
    img[rows, cols] = True
    return img


# pytest would collect test_distribution as a test when a test module imports it by name
test_distribution.__test__ = False
