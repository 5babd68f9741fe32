"""One image to one ``distribution.csv`` row (:func:`test_distribution`), rows to a table."""

from __future__ import annotations

import logging
import math

import numpy as np
from scipy import ndimage as ndi

from ..checks import check_option
from ..errors import InputError
from ..imagej import BACKENDS
from ..instances import CONNECTIVITY, connected_components
from ._biovoxxel import biovoxxel_points, biovoxxel_test
from ._edm import ultimate_points
from ._imagej_route import biovoxxel_test_imagej, ultimate_points_imagej
from ._points import _check_points, _scale_nm
from ._spatial import clark_evans_test, monte_carlo_test

logger = logging.getLogger(__package__)  # "tio2fiji.distribution", as before the split

#: ``distribution.csv`` columns (DESIGN.md, thesis Table 9); rows may carry extra keys after them.
COLUMNS = ("image", "method", "n", "area", "expected_nnd", "observed_nnd", "statistic",
           "critical_value", "df", "test", "p_value", "classification")

#: Methods of :func:`test_distribution`; the first is the default.
METHODS = ("clark-evans", "monte-carlo", "biovoxxel")


def _is_points(arr) -> bool:
    # points are a float (n, 2) array; masks and label images are bool or integer images
    return arr.ndim == 2 and arr.shape[1] == 2 and np.issubdtype(arr.dtype, np.floating)


def _particles_from_image(arr, points_mode, backend, ij_jar, connectivity=CONNECTIVITY):
    """UEPs or centroids of a mask or label image, as pixel (row, col) or float centres.

    A mask's particles for centroids are its ``connectivity``-connected components
    (:func:`tio2fiji.instances.connected_components`, the rule ``measure`` uses too).
    """
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
        labels = arr if is_labels else connected_components(arr != 0, connectivity)
        idx = np.unique(labels[labels > 0])
        rows = np.asarray(ndi.mean(np.indices(labels.shape)[0], labels, idx))
        cols = np.asarray(ndi.mean(np.indices(labels.shape)[1], labels, idx))
        area = np.asarray(ndi.sum(np.ones(labels.shape), labels, idx))
        return "centroid", np.stack([rows, cols], axis=1), np.sqrt(area / np.pi)
    raise InputError(f"points must be 'auto', 'uep' or 'centroid', not {points_mode!r}.")


def test_distribution(data, method="clark-evans", *, shape=None, pixel_size_m=None, image="",
                      points="auto", alpha=0.05, n_sim=199, null="csr", radii=None, seed=0,
                      statistic="median", java_student_bug=True, backend="native", ij_jar=None,
                      progress=None, connectivity=CONNECTIVITY) -> dict:
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
    pixel_size_m : float, optional
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
    connectivity : {4, 8}
        For centroids of a binary mask: which pixels make one particle (default
        :data:`tio2fiji.instances.CONNECTIVITY`, 4, as ``measure``; particles touching only at
        corners stay apart). A label image's labels are its particles; UEPs do not depend on it.
        Recorded in the row's ``connectivity``.

    Returns
    -------
    dict
        The keys of :data:`COLUMNS` first, then method-specific extras (``unit``, ``points``,
        ``ratio``, ``variance``, ``F``, ``critical_F``, ``n_sim``, ...). With fewer than 2 points
        (Clark–Evans: fewer than :data:`~tio2fiji.distribution.CLARK_EVANS_MIN_POINTS`, 7) the
        statistics are NaN and ``classification`` is ``"too few points"``. A Monte Carlo row
        also has ``min_p_value`` (``2 / (n_sim + 1)``) and ``note``; it is ``"not testable"``
        when ``n_sim`` is too small for ``alpha`` (:func:`tio2fiji.checks.significance_note`).
    """
    alpha, n_sim, pixel_size_m = _check_arguments(method, backend, connectivity, alpha, n_sim,
                                                  pixel_size_m, seed)
    scale = _scale_nm(pixel_size_m)
    unit = "nm" if pixel_size_m is not None else "px"
    kind, pts_px, sim_radii, uep_image, full_shape = _image_points(
        np.asarray(data), shape, points, backend, ij_jar, int(connectivity))
    row = dict.fromkeys(COLUMNS, math.nan)
    row.update(image=image, method=method, test="", classification="too few points",
               unit=unit, points=kind, backend=backend, connectivity=int(connectivity))
    height, width = (int(v) for v in (shape if shape is not None else full_shape))
    if method == "biovoxxel":
        return _biovoxxel_row(row, kind, pts_px, uep_image, full_shape, pixel_size_m, alpha,
                              statistic, java_student_bug, backend, ij_jar)
    pts, sim_radii = _window_points(pts_px, sim_radii, width, height, scale, image)
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
                   variance=res["variance"], note=res["note"])
    else:
        res = monte_carlo_test(pts, window, n_sim, alpha, null, sim_radii, seed,
                               progress=progress)
        row.update(test=f"Monte Carlo mean NND vs {'CSR' if null == 'csr' else 'hard-core discs'}",
                   n_sim=res["n_sim"], null=null, sim_low=res["sim_low"],
                   min_p_value=res["min_p_value"], note=res["note"],
                   sim_high=res["sim_high"], seed=seed if isinstance(seed, int) else None)
    row.update(expected_nnd=res["expected_nnd"], observed_nnd=res["observed_nnd"],
               statistic=res["statistic"], critical_value=res["critical_value"],
               p_value=res["p_value"], classification=res["classification"])
    return row


def _check_arguments(method, backend, connectivity, alpha, n_sim, pixel_size_m, seed):
    """Refuse an unknown method, backend or connectivity; the checked numeric options."""
    if method not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)}, not {method!r}.")
    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}.")
    if connectivity not in (4, 8):
        raise InputError(f"connectivity must be 4 or 8, not {connectivity!r}.")
    alpha, n_sim = check_option("alpha", alpha), check_option("n_sim", n_sim)
    pixel_size_m = check_option("pixel_size_m", pixel_size_m)
    if isinstance(seed, (int, float, np.integer)):  # a Generator goes to monte_carlo_test as it is
        check_option("seed", seed)
    return alpha, n_sim, pixel_size_m


def _image_points(arr, shape, points, backend, ij_jar, connectivity):
    """The particles' points of a point array, mask or label image.

    Returns the kind of point (``"points"``, ``"uep"``, ``"centroid"``), the ``(x, y)`` pixel
    coordinates, the radii for a hard-core null (None for given points), the image of the UEPs
    (None unless UEPs) and the image's shape (``shape`` for points).
    """
    if _is_points(arr):
        if shape is None:
            raise InputError("points need the image shape (H, W) in pixels: shape=(H, W).")
        return "points", _check_points(arr), None, None, tuple(int(v) for v in shape)
    if arr.ndim != 2 or 0 in arr.shape:
        raise InputError(f"expected a 2-D mask or label image, got shape {arr.shape}.")
    kind, coords, sim_radii = _particles_from_image(arr, points, backend, ij_jar, connectivity)
    pts_px = np.stack([coords[:, 1] + 0.5, coords[:, 0] + 0.5], axis=1).astype(float)
    uep_image = None
    if kind == "uep":  # BioVoxxel's input: one pixel per UEP
        uep_image = np.zeros(arr.shape, bool)
        uep_image[coords[:, 0], coords[:, 1]] = True
    return kind, pts_px, sim_radii, uep_image, arr.shape


def _window_points(pts_px, sim_radii, width, height, scale, image):
    """The points inside the ``width`` x ``height`` window and their radii, scaled to nm."""
    inside = (pts_px[:, 0] <= width) & (pts_px[:, 1] <= height)
    if not inside.all():
        logger.info("%s: %d points outside the %dx%d window are left out", image,
                    int((~inside).sum()), width, height)
    pts = pts_px[inside] * scale
    if sim_radii is not None:
        sim_radii = np.asarray(sim_radii)[inside] * scale
    return pts, sim_radii


def _biovoxxel_row(row, kind, pts_px, uep_image, full_shape, pixel_size_m, alpha, statistic,
                   java_student_bug, backend, ij_jar) -> dict:
    """``row`` filled as BioVoxxel's Particle Distribution (2D) fills it.

    BioVoxxel takes the centroids of the UEP image's particles and the whole image's area in
    pixels, whatever the window.
    """
    fh, fw = full_shape
    if kind == "uep":
        pts = biovoxxel_points(np.argwhere(uep_image), pixel_size_m)
    else:
        pts = pts_px * _scale_nm(pixel_size_m)
    row["n"] = len(pts)
    row["area"] = float(fw * fh)
    row.update(area_unit="px^2", distance_unit=row["unit"])
    if len(pts) < 2:
        return row
    if backend == "imagej":
        img = uep_image if uep_image is not None else _points_image(pts_px, full_shape)
        res = biovoxxel_test_imagej(img, pixel_size_m, statistic, alpha, java_student_bug,
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
