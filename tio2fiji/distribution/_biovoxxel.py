"""BioVoxxel's "Particle Distribution (2D)" test, reproduced step by step (not a sound test)."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

from ..errors import InputError
from ._points import _check_points, _scale_nm, nearest_neighbour_distances

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


def biovoxxel_points(coords, pixel_size_m=None) -> np.ndarray:
    """Centroids that *Analyze Particles* reports for a UEP image.

    ``Particle Distribution (2D)`` runs the particle analyzer on the (thresholded) UEP image, so
    8-connected UEP pixels (e.g. of particles touching diagonally) form one particle. This
    groups them the same way and returns the centroids in ImageJ's order (raster order of each
    group's first pixel).

    Parameters
    ----------
    coords : (n, 2) array_like of int
        UEP ``(row, col)`` indices.
    pixel_size_m : float, optional
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
    return np.stack([xs, ys], axis=1) * _scale_nm(pixel_size_m)


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
