"""Sound tests: Clark–Evans, Monte Carlo against CSR or hard-core discs, G and L with envelopes."""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from scipy import stats
from scipy.spatial import cKDTree

from ..checks import check_option, significance_note, smallest_p_value, warn_result
from ..errors import InputError
from ._points import _check_points, _window, nearest_neighbour_distances

#: Fewest points for which :func:`clark_evans_test` gives a verdict. Donnelly (1978) fitted his
#: edge-corrected mean and variance of the mean NND to simulations of n >= 7 points, and the
#: z test leans on the mean NND being near normal, which a handful of distances are not; with
#: 2 points (one distance, counted twice) the test says "random" for nearly any placement. Below
#: this the result is "too few points" with NaN statistics, as the rows of
#: :func:`~tio2fiji.distribution.test_distribution` are with fewer than 2 points.
CLARK_EVANS_MIN_POINTS = 7


def _classify(p_value, alpha, clustered, not_testable=False) -> str:
    # "clustered" / "regular" when significant, in the direction the caller determined
    if not_testable:
        return "not testable"
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
        ``(x, y)`` in the window's units. With fewer than :data:`CLARK_EVANS_MIN_POINTS` (7,
        where Donnelly's formulas start to hold) the test gives no verdict: ``classification``
        is ``"too few points"``, ``expected_nnd, ratio, variance, statistic, p_value`` are NaN
        and ``note`` says why (``observed_nnd`` is still the mean NND when n >= 2).
    window : (width, height)
        The rectangle ``[0, width] x [0, height]`` the points were observed in.
    alpha : float
        Significance level for the classification.
    edge_correction : {"donnelly", "none"}

    Returns
    -------
    dict
        ``n, area, expected_nnd, observed_nnd, ratio (R), variance, statistic (z),
        critical_value (z_{1-alpha/2}), p_value, edge_correction, classification``
        ("clustered" for R < 1, "regular" for R > 1 when p < alpha, else "random"; "too few
        points" below :data:`CLARK_EVANS_MIN_POINTS`) and ``note`` (why there is no verdict,
        else "").
    """
    alpha = check_option("alpha", alpha)
    pts = _check_points(points)
    width, height = _window(window)
    n = len(pts)
    if edge_correction not in ("donnelly", "none"):
        raise InputError(f"edge_correction must be 'donnelly' or 'none', not {edge_correction!r}.")
    area, perim = width * height, 2.0 * (width + height)
    observed = float(nearest_neighbour_distances(pts).mean()) if n >= 2 else math.nan
    critical = float(stats.norm.ppf(1 - alpha / 2))
    if n < CLARK_EVANS_MIN_POINTS:
        return {
            "n": n, "area": area, "expected_nnd": math.nan, "observed_nnd": observed,
            "ratio": math.nan, "variance": math.nan, "statistic": math.nan,
            "critical_value": critical, "p_value": math.nan, "edge_correction": edge_correction,
            "classification": "too few points",
            "note": f"too few points: the Clark–Evans test needs at least {CLARK_EVANS_MIN_POINTS}, "
                    f"got {n}",
        }
    if edge_correction == "donnelly":
        expected = 0.5 * math.sqrt(area / n) + (0.0514 + 0.041 / math.sqrt(n)) * perim / n
        variance = 0.0703 * area / n ** 2 + 0.037 * perim * math.sqrt(area / n ** 5)
    else:
        expected = 0.5 * math.sqrt(area / n)
        variance = (4.0 - math.pi) * area / (4.0 * math.pi * n ** 2)
    z = (observed - expected) / math.sqrt(variance)
    p = float(2.0 * stats.norm.sf(abs(z)))
    return {
        "n": n, "area": area, "expected_nnd": expected, "observed_nnd": observed,
        "ratio": observed / expected, "variance": variance, "statistic": z,
        "critical_value": critical, "p_value": p, "edge_correction": edge_correction,
        "classification": _classify(p, alpha, z < 0), "note": "",
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
        Number of simulations (>= 1); ``2 / (n_sim + 1)`` is the smallest possible p, so a
        two-sided test at alpha = 0.05 needs n_sim >= 40. With fewer the classification is
        ``"not testable"`` (not "random": the test could not have found anything), ``note``
        says why, and a :class:`~tio2fiji.checks.ResultWarning` is issued.
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
        n_sim, null, classification``, ``min_p_value`` (the smallest p ``n_sim`` allows) and
        ``note`` (why the test is not testable, else "").
    """
    alpha, n_sim = check_option("alpha", alpha), check_option("n_sim", n_sim)
    if not isinstance(seed, np.random.Generator):
        check_option("seed", seed)
    pts = _check_points(points)
    width, height = _window(window)
    n = len(pts)
    if n < 2:
        raise InputError(f"the Monte Carlo test needs at least 2 points, got {n}.")
    note = significance_note(n_sim, alpha)
    if note:
        warn_result(f"Monte Carlo test {note}")
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
        "classification": _classify(p, alpha, observed < np.median(sims), bool(note)),
        "min_p_value": smallest_p_value(n_sim), "note": note or "",
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
        ``p_value`` (rank based, ``(1 + #{sim >= obs}) / (n_sim + 1)``) and ``classification``
        (``"not testable"`` when ``1 / (n_sim + 1)`` is not below ``alpha``; ``note`` says why).
    """
    alpha, n_sim = check_option("alpha", alpha), check_option("n_sim", n_sim)
    if not isinstance(seed, np.random.Generator):
        check_option("seed", seed)
    note = significance_note(n_sim, alpha, sides=1)
    if note:
        warn_result(f"G/L envelope test {note}")
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
    out = {"n_sim": int(n_sim), "null": null, "note": note or ""}
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
                     "classification": _classify(p, alpha, obs[i] > mean[i], bool(note))}
    return out


def envelope_tests(env, image="") -> list:
    """The global tests of :func:`envelopes`, one row per function (G, L): what the report's table
    and the G/L plot's titles both show.

    These are not the Monte Carlo test of :func:`monte_carlo_test` (mean nearest-neighbour
    distance, two-sided, its own ``n_sim``): each is the maximum absolute deviation of G or L from
    the simulations' mean, one-sided, with the envelopes' ``n_sim``, so its smallest p is
    ``1 / (n_sim + 1)`` (0.025 for 39 simulations).

    Returns
    -------
    list of dict
        ``image, function, test, n_sim, mad, p_value, min_p_value, classification, note``.
    """
    n_sim = int(env["n_sim"])
    null = "CSR" if env.get("null", "csr") == "csr" else "hard-core discs"
    return [{"image": image, "function": name,
             "test": f"max |{name} - mean| vs {null} envelope (one-sided rank)", "n_sim": n_sim,
             "mad": float(env[name]["mad"]), "p_value": float(env[name]["p_value"]),
             "min_p_value": smallest_p_value(n_sim, sides=1),
             "classification": env[name]["classification"], "note": env.get("note", "")}
            for name in ("G", "L")]


class _warnings_off:
    # nanmean/nanmax warn on all-NaN columns (G at r beyond every point's border distance)
    def __enter__(self):
        import warnings
        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)
