"""Spatial distribution: UEPs against the real ImageJ, BioVoxxel reproduced, sound tests checked.

ImageJ runs for real (JVM in this process, no mocking). Masks are generated here; no external
data folder is read.
"""

import json
import math
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi
from scipy import stats

from tio2fiji import distribution as D
from tio2fiji import imagej
from tio2fiji.errors import InputError


@pytest.fixture(scope="module")
def ij():
    imagej.start_imagej()
    return imagej


def trunc3(x):
    return math.floor(x * 1000) / 1000


def random_mask(rng, h, w, k, holes=False):
    """Union of k random ellipses (some cut by the border), optionally with pepper holes."""
    yy, xx = np.mgrid[:h, :w]
    m = np.zeros((h, w), bool)
    for _ in range(k):
        cy, cx = rng.uniform(-5, h + 5), rng.uniform(-5, w + 5)
        a, b = rng.uniform(1.5, 18, 2)
        th = rng.uniform(0, np.pi)
        c, s = np.cos(th), np.sin(th)
        u = ((xx - cx) * c + (yy - cy) * s) / a
        v = (-(xx - cx) * s + (yy - cy) * c) / b
        m |= u * u + v * v <= 1
    if holes:
        m &= rng.random((h, w)) > 0.03
    return m


def generated_masks():
    rng = np.random.default_rng(20240601)
    masks = [random_mask(rng, *rng.integers(12, 140, 2), rng.integers(1, 35), holes=bool(i % 3 == 0))
             for i in range(40)]
    yy, xx = np.mgrid[:200, :260]
    big = np.zeros((200, 260), bool)  # large discs: EDM >= 13, where ImageJ's EDM approximates
    for cy, cx, r in rng.uniform((0, 0, 10), (200, 260, 45), (12, 3)):
        big |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    masks.append(big)
    special = [
        np.zeros((9, 9), bool),                                    # no foreground
        np.ones((9, 9), bool),                                     # no background
        np.pad(np.ones((1, 1), bool), 3),                          # one pixel
        np.pad(np.ones((4, 6), bool), 2),                          # plateau: several equal maxima
        np.pad(np.ones((2, 2), bool), 2),                          # 2x2: four equal pixels
        np.eye(7, dtype=bool),                                     # diagonal line
        np.pad(np.eye(2, dtype=bool), 3),                          # diagonal single pixels
        np.ones((5, 12), bool),                                    # touches every edge
        np.pad(np.ones((5, 12), bool), ((0, 3), (0, 0))),          # touches top, left, right
        np.kron(rng.random((8, 8)) > 0.5, np.ones((3, 3), bool)),  # blocky pattern
    ]
    dumbbell = np.zeros((30, 50), bool)
    dumbbell[(yy[:30, :50] - 15) ** 2 + (xx[:30, :50] - 12) ** 2 <= 64] = True
    dumbbell[(yy[:30, :50] - 15) ** 2 + (xx[:30, :50] - 36) ** 2 <= 49] = True
    dumbbell[13:18, 12:36] = True                                  # neck: two UEPs or one
    special.append(dumbbell)
    return masks + special


# --------------------------------------------------------------------------------------------
# Thesis Table 9 and the BioVoxxel constants
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n, expected", [(3472, 9.087), (8179, 5.920), (14733, 4.411)])
def test_table9_theoretical_nnd(n, expected):
    area = 1280 * 896
    e = D.biovoxxel_expected_nnd(area, n)
    assert trunc3(e) == expected  # the thesis truncated to three decimals ...
    # ... and the same E comes out of the full test on n points in that frame
    pts = np.random.default_rng(n).random((n, 2)) * (1280, 896)
    assert D.biovoxxel_test(pts, area)["expected_nnd"] == e


def test_table9_second_value_is_truncated_not_rounded():
    e = D.biovoxxel_expected_nnd(1280 * 896, 8179)
    assert round(e, 3) == 5.921 and trunc3(e) == 5.920


@pytest.mark.parametrize("alpha", [0.05, 0.01, 0.001])
def test_biovoxxel_constants_are_one_sided_quantiles(alpha):
    k = np.array(D.BIOVOXXEL_BINS)
    # BioVoxxel's 10-digit constants (t(0.95, 30) is off by 2e-8 relative) are these quantiles
    np.testing.assert_allclose(D.BIOVOXXEL_CRITICAL_F[alpha], stats.f.ppf(1 - alpha, k, k), rtol=1e-7)
    np.testing.assert_allclose(D.BIOVOXXEL_CRITICAL_T[alpha], stats.t.ppf(1 - alpha, k), rtol=1e-7)


# --------------------------------------------------------------------------------------------
# BioVoxxel test: an independent, literal re-computation
# --------------------------------------------------------------------------------------------

def biovoxxel_by_hand(pts, area, statistic="median", alpha=0.05, bug=True):
    n = len(pts)
    d = np.array([min(math.dist(p, q) for j, q in enumerate(pts) if j != i) for i, p in enumerate(pts)])
    e = 0.5 * math.sqrt(area / n)
    m = float(np.median(d)) if statistic == "median" else float(d.mean())
    s2 = float(((d - m) ** 2).mean())
    f = max(e, s2) / min(e, s2) if min(e, s2) > 0 else math.inf  # Java: x / 0.0 = Infinity
    lows = [11, 31, 61, 101, 501, 1001, 2001, 3001, 4001, 5001]
    crit_f = stats.f.ppf(1 - alpha, [10, 30, 60, 100, 500, 1000, 2000, 3000, 4000, 5000],
                         [10, 30, 60, 100, 500, 1000, 2000, 3000, 4000, 5000])
    i = sum(n >= lo for lo in lows) - 1
    welch = i >= 0 and f >= crit_f[i]
    t = abs(e - m) / math.sqrt((e + s2) / n)
    if welch:
        df = math.floor((n - 1) * (e + s2) ** 2 / (e ** 2 + s2 ** 2))
    else:
        df = 2 * n - 2
        if bug and n >= 3:
            t = math.inf if e != m else math.nan
    j = sum(df >= k for k in D.BIOVOXXEL_BINS) - 1
    crit_t = stats.t.ppf(1 - alpha, D.BIOVOXXEL_BINS[j]) if j >= 0 else 0.0
    sig = t >= crit_t
    cls = "random" if not sig else ("clustering" if m < e else "self-avoiding")
    return dict(statistic=t, df=df, critical_value=crit_t, test="Welch's t-test" if welch
                else "Student's t-test", classification=cls, observed_nnd=m, variance=s2)


def check_same(res, ref):
    assert res["test"] == ref["test"]
    assert res["df"] == ref["df"]
    assert res["critical_value"] == pytest.approx(ref["critical_value"], rel=1e-7)
    assert res["classification"] == ref["classification"]
    assert res["observed_nnd"] == pytest.approx(ref["observed_nnd"], rel=1e-12)
    assert res["variance"] == pytest.approx(ref["variance"], rel=1e-9)
    if math.isfinite(ref["statistic"]):
        assert res["statistic"] == pytest.approx(ref["statistic"], rel=1e-9)
    else:
        assert math.isinf(res["statistic"]) == math.isinf(ref["statistic"])


@pytest.mark.parametrize("n, scale, statistic", [
    (150, 1.0, "median"), (150, 1.0, "mean"), (40, 7.3, "median"), (12, 1.0, "median"),
    (7, 1.0, "median"), (4, 1.0, "mean"), (2, 1.0, "median")])
@pytest.mark.parametrize("bug", [True, False])
def test_biovoxxel_matches_literal_recomputation(n, scale, statistic, bug):
    rng = np.random.default_rng(n)
    pts = rng.random((n, 2)) * (200, 150) * scale
    res = D.biovoxxel_test(pts, 200 * 150, statistic=statistic, java_student_bug=bug)
    check_same(res, biovoxxel_by_hand(pts, 200 * 150, statistic, bug=bug))


def test_biovoxxel_branches_and_student_bug():
    # tiny pattern (n < 11): always Student; df = 2n - 2; with the Java bug T is infinite
    pts = np.array([[1.0, 1.0], [4.0, 1.0], [1.0, 5.0], [9.0, 9.0], [3.0, 7.0]])
    bugged = D.biovoxxel_test(pts, 100.0, java_student_bug=True)
    fixed = D.biovoxxel_test(pts, 100.0, java_student_bug=False)
    assert bugged["test"] == fixed["test"] == "Student's t-test"
    assert bugged["df"] == fixed["df"] == 8 and bugged["critical_value"] == 0.0  # df < 10
    assert math.isinf(bugged["statistic"]) and math.isfinite(fixed["statistic"])
    e, m, s2 = fixed["expected_nnd"], fixed["observed_nnd"], fixed["variance"]
    assert e == 0.5 * math.sqrt(100 / 5) and m == 3.0  # NNDs 3, 3, 2.83, 6.32, 2.83
    assert fixed["statistic"] == pytest.approx(abs(e - m) / math.sqrt((e + s2) / 5))
    # a large random pattern: E as "variance" is far from s2, so Welch; df by the published formula
    pts = np.random.default_rng(3).random((500, 2)) * (1280, 896)
    res = D.biovoxxel_test(pts, 1280 * 896)
    e, s2 = res["expected_nnd"], res["variance"]
    assert res["test"] == "Welch's t-test" and res["F"] >= res["critical_F"]
    assert res["df"] == math.floor(499 * (e + s2) ** 2 / (e ** 2 + s2 ** 2))


def test_biovoxxel_calls_random_patterns_clustering():
    # spec §C: the median NND of a random pattern is ~0.47 sqrt(A/n) < E, so large n -> "clustering"
    rng = np.random.default_rng(11)
    classes = [D.biovoxxel_test(rng.random((8179, 2)) * (1280, 896), 1280 * 896)["classification"]
               for _ in range(3)]
    assert classes == ["clustering"] * 3


def test_biovoxxel_rejects_bad_options():
    pts = np.random.default_rng(0).random((20, 2))
    with pytest.raises(InputError):
        D.biovoxxel_test(pts, 1.0, alpha=0.1)
    with pytest.raises(InputError):
        D.biovoxxel_test(pts, 1.0, statistic="mode")
    with pytest.raises(InputError):
        D.biovoxxel_test(pts[:1], 1.0)


# --------------------------------------------------------------------------------------------
# Ultimate points: hand-checked, then against the real ImageJ
# --------------------------------------------------------------------------------------------

def test_uep_by_hand():
    yy, xx = np.mgrid[:31, :41]
    disc = (yy - 15) ** 2 + (xx - 20) ** 2 <= 81
    coords, values = D.ultimate_points(disc)
    assert coords.tolist() == [[15, 20]] and values[0] == pytest.approx(math.sqrt(82))  # (1, 9) is out
    # 5x3 rectangle: EDM 2 on the middle row's 3 central pixels (plateau) -> the middle one
    rect = np.pad(np.ones((3, 5), bool), 2)
    coords, values = D.ultimate_points(rect)
    assert coords.tolist() == [[3, 4]] and values.tolist() == [2.0]
    # two separate particles, two UEPs in raster order (row, col)
    two = np.zeros((10, 20), bool)
    two[6:9, 2:5] = True
    two[1:4, 14:17] = True
    assert D.ultimate_points(two)[0].tolist() == [[2, 15], [7, 3]]
    assert D.pixel_points([[2, 15]], pixel_size_m=2e-9).tolist() == [[31.0, 5.0]]
    assert D.ultimate_points(np.zeros((5, 5), bool))[0].shape == (0, 2)


def test_uep_rejects_non_binary():
    with pytest.raises(InputError):
        D.ultimate_points(np.arange(12).reshape(3, 4))
    with pytest.raises(InputError):
        D.ultimate_points(np.zeros(5))


def test_distribution_reaches_imagej_only_through_the_session():
    # the ImageJ route uses tio2fiji.imagej.session(), never JPype or the bridge's lock itself
    for path in Path(D.__file__).parent.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "jpype" not in text.lower() and "_lock" not in text, path.name


def test_uep_native_equals_imagej_on_generated_masks(ij):
    masks = generated_masks()
    n_points = 0
    for k, mask in enumerate(masks):
        native, values = D.ultimate_points(mask)
        ref, ref_values = D.ultimate_points_imagej(mask)
        assert native.shape == ref.shape, f"mask {k}: {len(native)} UEPs native, {len(ref)} ImageJ"
        assert np.array_equal(native, ref), f"mask {k}: UEP pixels differ"
        rounded = np.minimum(255, np.floor(values.astype(np.float64) + 0.5))
        assert np.array_equal(rounded, ref_values), f"mask {k}: UEP values differ"
        n_points += len(native)
    assert n_points > 400  # the comparison covered many maxima


def test_edm_equals_imagej_float_edm(ij):
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[:240, :320]
    mask = np.zeros((240, 320), bool)
    for cy, cx, r in rng.uniform((0, 0, 15), (240, 320, 70), (10, 3)):
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    mask &= rng.random(mask.shape) > 0.001
    with imagej.session() as s:
        imp = s.to_imageplus(mask)
        fp = s.jclass("ij.plugin.filter.EDM")().makeFloatEDM(imp.getProcessor(), 0, False)
        ref = np.array(fp.getPixels(), dtype=np.float32).reshape(mask.shape)
    ours = D.edm_imagej(mask)
    assert np.array_equal(ours, ref)
    # ImageJ's EDM is an approximation: the distance to *a* background pixel, so never below the
    # exact one, and above it by at most 0.09, only where d >= 13 (here on a few pixels)
    exact = ndi.distance_transform_edt(np.pad(mask, 1, constant_values=True))[1:-1, 1:-1]
    diff = ours - exact
    assert diff.min() >= -1e-5 and diff.max() <= 0.09
    assert 0 < np.count_nonzero(diff > 1e-4) < 100
    assert np.all(np.abs(diff[exact < 13]) < 1e-5)


# --------------------------------------------------------------------------------------------
# Native BioVoxxel vs the ImageJ macro
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed, pixel_size_m, statistic, bug", [
    (1, None, "median", True), (2, 7.34375e-9, "median", True), (3, None, "mean", True),
    (4, None, "median", False)])
def test_biovoxxel_native_equals_macro_on_uep_images(ij, seed, pixel_size_m, statistic, bug):
    rng = np.random.default_rng(seed)
    mask = random_mask(rng, 150, 220, 45)
    coords, _ = D.ultimate_points(mask)
    uep = np.zeros(mask.shape, bool)
    uep[coords[:, 0], coords[:, 1]] = True
    macro = D.biovoxxel_test_imagej(uep, pixel_size_m, statistic, java_student_bug=bug)
    native = D.biovoxxel_test(D.biovoxxel_points(coords, pixel_size_m), uep.size, statistic=statistic,
                              java_student_bug=bug)
    assert macro["n"] == native["n"] > 20
    for key in ("test", "df", "classification", "significant"):
        assert macro[key] == native[key], key
    for key in ("expected_nnd", "observed_nnd", "variance", "F", "statistic", "critical_value"):
        assert macro[key] == pytest.approx(native[key], rel=1e-12), key
    assert "Sample size n = " in macro["log"]


def test_biovoxxel_macro_student_branch_and_groups(ij):
    # 8 one-pixel particles, two of them diagonal neighbours: Analyze Particles sees 7
    img = np.zeros((40, 60), bool)
    for r, c in [(3, 4), (4, 5), (10, 30), (20, 50), (30, 10), (35, 40), (15, 15), (25, 25)]:
        img[r, c] = True
    for bug in (True, False):
        macro = D.biovoxxel_test_imagej(img, java_student_bug=bug)
        native = D.biovoxxel_test(D.biovoxxel_points(np.argwhere(img)), img.size, java_student_bug=bug)
        assert macro["n"] == native["n"] == 7
        assert macro["test"] == native["test"] == "Student's t-test"
        assert macro["statistic"] == native["statistic"]  # inf == inf with the bug
        assert math.isinf(native["statistic"]) == bug
        assert macro["classification"] == native["classification"]


def test_biovoxxel_macro_starts_imagej_from_the_given_jar(tmp_path):
    # a fresh interpreter (a JVM cannot be restarted in this one): ij_jar starts ImageJ
    jar = tmp_path / "my-ij.jar"
    shutil.copy(imagej.find_ij_jar(), jar)
    code = textwrap.dedent(f"""
        import json, numpy as np
        from tio2fiji import distribution as D, imagej
        img = np.zeros((20, 30), bool)
        img[[3, 9, 15, 4], [5, 20, 8, 26]] = True
        res = D.biovoxxel_test_imagej(img, ij_jar={str(jar)!r})
        print(json.dumps([res["n"], str(imagej.jvm_info()["jar"])]))
        """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [4, str(jar)]


def test_test_distribution_biovoxxel_backends_agree(ij):
    mask = random_mask(np.random.default_rng(9), 120, 160, 30)
    rows = [D.test_distribution(mask, "biovoxxel", backend=b, pixel_size_m=5e-9) for b in ("native", "imagej")]
    for key in ("n", "area", "df", "test", "classification"):
        assert rows[0][key] == rows[1][key]
    assert rows[0]["statistic"] == pytest.approx(rows[1]["statistic"], rel=1e-12)
    assert rows[0]["area"] == 120 * 160  # BioVoxxel: pixels, whatever the calibration


# --------------------------------------------------------------------------------------------
# Sound tests
# --------------------------------------------------------------------------------------------

def lattice(k=10, s=1.0):
    g = (np.arange(k) + 0.5) * s
    return np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2)


def test_clark_evans_lattice_by_hand():
    # 10 x 10 lattice, spacing 1, window 10 x 10: every NND is 1
    res = D.clark_evans_test(lattice(), (10, 10))
    e = 0.5 * 1 + (0.0514 + 0.041 / 10) * 40 / 100                   # 0.5222
    var = 0.0703 * 100 / 100 ** 2 + 0.037 * 40 * math.sqrt(100 / 100 ** 5)  # 0.000851
    assert res["expected_nnd"] == pytest.approx(0.5222, abs=1e-12) == pytest.approx(e)
    assert res["variance"] == pytest.approx(0.000851, abs=1e-12) == pytest.approx(var)
    assert res["observed_nnd"] == 1.0 and res["ratio"] == pytest.approx(1 / 0.5222)
    assert res["statistic"] == pytest.approx((1 - 0.5222) / math.sqrt(0.000851))
    assert res["classification"] == "regular" and res["p_value"] < 1e-10
    plain = D.clark_evans_test(lattice(), (10, 10), edge_correction="none")
    assert plain["expected_nnd"] == 0.5
    assert plain["variance"] == pytest.approx((4 - math.pi) / (4 * math.pi) * 0.01)


def test_clark_evans_tiny_case_and_cluster():
    # seven points (the fewest with a verdict): NNDs 1, 1, 2, 1, 1, 1, 3 -> mean 10/7
    pts = np.array([[1.0, 1.0], [2.0, 1.0], [4.0, 1.0], [6.0, 1.0], [7.0, 1.0], [8.0, 1.0],
                    [11.0, 1.0]])
    res = D.clark_evans_test(pts, (12, 2))
    assert D.CLARK_EVANS_MIN_POINTS == 7 and res["n"] == 7
    assert res["observed_nnd"] == pytest.approx(10 / 7)
    e = 0.5 * math.sqrt(24 / 7) + (0.0514 + 0.041 / math.sqrt(7)) * 28 / 7  # A = 24, P = 28
    assert res["expected_nnd"] == pytest.approx(e)
    assert res["classification"] in ("random", "regular", "clustered") and res["note"] == ""
    rng = np.random.default_rng(0)
    clustered = rng.normal((50, 50), 2.0, (200, 2))
    assert D.clark_evans_test(clustered, (100, 100))["classification"] == "clustered"


@pytest.mark.parametrize("n", [0, 1, 2, 3, 6])
def test_clark_evans_below_seven_points_is_too_few_not_random(n):
    # before: 2 points at (30, 40) and (70, 60) in 100 x 100 gave z = -0.32, p = 0.75 -> "random";
    # Donnelly's formulas hold from n = 7 (his simulations), so there is no verdict below that
    pts = np.array([[30.0, 40.0], [70.0, 60.0], [10.0, 10.0], [90.0, 90.0], [50.0, 10.0],
                    [10.0, 90.0]])[:n]
    res = D.clark_evans_test(pts.reshape(-1, 2), (100, 100))
    assert res["classification"] == "too few points" and res["n"] == n and res["area"] == 10000
    for key in ("expected_nnd", "ratio", "variance", "statistic", "p_value"):
        assert math.isnan(res[key]), key
    assert "at least 7" in res["note"]
    if n == 2:  # the one distance, by hand
        assert res["observed_nnd"] == pytest.approx(math.hypot(40, 20))
    # the same through test_distribution, as a mask of two (then six) squares
    mask = np.zeros((100, 100), bool)
    for x, y in pts:
        mask[int(y) - 1:int(y) + 2, int(x) - 1:int(x) + 2] = True
    row = D.test_distribution(mask, "clark-evans", points="centroid")
    assert row["n"] == n and row["classification"] == "too few points"
    assert math.isnan(row["statistic"]) and math.isnan(row["p_value"])


def test_monte_carlo_p_and_determinism():
    rng = np.random.default_rng(5)
    pts = rng.random((80, 2)) * (300, 200)
    a = D.monte_carlo_test(pts, (300, 200), n_sim=99, seed=42)
    b = D.monte_carlo_test(pts, (300, 200), n_sim=99, seed=42)
    c = D.monte_carlo_test(pts, (300, 200), n_sim=99, seed=43)
    assert a == b and a["expected_nnd"] != c["expected_nnd"]
    assert 0 < a["p_value"] <= 1
    reg = D.monte_carlo_test(lattice(), (10, 10), n_sim=99, seed=1)
    assert reg["p_value"] == pytest.approx(2 / 100) and reg["classification"] == "regular"
    clu = D.monte_carlo_test(rng.normal(50, 2, (100, 2)), (100, 100), n_sim=49, seed=1)
    assert clu["p_value"] == pytest.approx(2 / 50) and clu["classification"] == "clustered"
    calls = []
    D.monte_carlo_test(pts, (300, 200), n_sim=5, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(i, 5) for i in range(1, 6)]


def test_hardcore_null_places_discs_without_overlap():
    radii = np.random.default_rng(2).uniform(2, 6, 150)
    centres = D.random_sequential_discs(radii, (300, 200), rng=3)
    d = np.hypot(*(centres[:, None, :] - centres[None, :, :]).transpose(2, 0, 1))
    np.fill_diagonal(d, np.inf)
    assert (d >= radii[:, None] + radii[None, :]).all()
    assert (centres >= 0).all() and (centres <= (300, 200)).all()
    assert np.array_equal(centres, D.random_sequential_discs(radii, (300, 200), rng=3))
    # a lattice (spacing 1) is more regular than random discs of radius 0.3 explain
    res = D.monte_carlo_test(lattice(), (10, 10), n_sim=59, null="hardcore", radii=np.full(100, 0.3))
    assert res["null"] == "hardcore" and res["classification"] == "regular"
    assert res["expected_nnd"] > 0.6  # the hard core pushes the null's NND above CSR's ~0.52
    with pytest.raises(InputError, match="no free place"):
        D.random_sequential_discs(np.full(100, 1.0), (10, 10), rng=0, max_tries=200)


def test_g_and_l_by_hand():
    # two points 3 apart in a 10 x 10 window
    pts = np.array([[2.0, 5.0], [5.0, 5.0]])
    r = np.array([1.0, 2.5, 3.0, 4.0])
    w = 100 / ((10 - 3) * (10 - 0))                          # translation weight
    k = 100 / (2 * 1) * 2 * w * (r >= 3)
    np.testing.assert_allclose(D.l_function(pts, (10, 10), r), np.sqrt(k / np.pi))
    # border distances 2 and 5: at r = 2.5 only the second point counts, its NND 3 > 2.5
    np.testing.assert_allclose(D.g_function(pts, (10, 10), r), [0, 0, 1, 1])


def test_envelopes_and_plot(tmp_path):
    pts = np.random.default_rng(8).random((120, 2)) * (400, 300)
    env = D.envelopes(pts, (400, 300), n_sim=19, seed=4)
    for name in ("G", "L"):
        e = env[name]
        assert e["r"].shape == e["observed"].shape == e["low"].shape == e["high"].shape
        assert np.all(e["low"][1:] <= e["high"][1:])
        assert 0 < e["p_value"] <= 1
    assert np.array_equal(env["L"]["theoretical"], env["L"]["r"])
    env2 = D.envelopes(pts, (400, 300), n_sim=19, seed=4)
    assert np.array_equal(env["L"]["high"], env2["L"]["high"])
    from tio2fiji.report import plot_envelopes

    fig = plot_envelopes(env, unit="nm", title="test")
    out = tmp_path / "gl.png"
    fig.savefig(out)
    assert out.stat().st_size > 1000


# --------------------------------------------------------------------------------------------
# test_distribution rows
# --------------------------------------------------------------------------------------------

def test_row_columns_units_and_methods():
    mask = random_mask(np.random.default_rng(12), 160, 200, 40)
    rows = {m: D.test_distribution(mask, m, image="x", pixel_size_m=2e-9, n_sim=19) for m in D.METHODS}
    for m, row in rows.items():
        assert list(row)[:len(D.COLUMNS)] == list(D.COLUMNS)
        assert row["image"] == "x" and row["method"] == m and row["unit"] == "nm"
    n = len(D.ultimate_points(mask)[0])
    assert rows["clark-evans"]["n"] == n == rows["monte-carlo"]["n"]
    assert rows["clark-evans"]["area"] == pytest.approx(160 * 200 * 4.0)   # nm^2
    assert rows["biovoxxel"]["area"] == 160 * 200                           # BioVoxxel: px^2
    px = D.test_distribution(mask, "clark-evans")
    assert px["statistic"] == pytest.approx(rows["clark-evans"]["statistic"])  # z is unit free
    assert rows["clark-evans"]["observed_nnd"] == pytest.approx(2 * px["observed_nnd"])
    assert 0 <= rows["monte-carlo"]["p_value"] <= 1 and math.isnan(rows["biovoxxel"]["p_value"])
    table = D.distribution_table(rows.values())
    assert list(table.columns[:len(D.COLUMNS)]) == list(D.COLUMNS) and len(table) == 3
    assert "ratio" in table.columns and math.isnan(table.loc[2, "ratio"])  # biovoxxel has none


def test_row_inputs():
    labels = np.zeros((50, 50), np.int32)
    labels[5:10, 5:10], labels[5:10, 10:15], labels[30:40, 30:35] = 1, 2, 3
    row = D.test_distribution(labels)
    assert row["points"] == "centroid" and row["n"] == 3  # touching labels stay separate
    pts = np.array([[10.5, 10.5], [20.5, 12.5], [40.5, 40.5]])
    assert D.test_distribution(pts, shape=(50, 50))["n"] == 3
    with pytest.raises(InputError, match="shape"):
        D.test_distribution(pts)
    few = D.test_distribution(np.pad(np.ones((3, 3), bool), 5))
    assert few["n"] == 1 and few["classification"] == "too few points" and math.isnan(few["statistic"])
    with pytest.raises(InputError):
        D.test_distribution(labels > 0, method="ripley")
    with pytest.raises(InputError, match="binary mask"):
        D.test_distribution(np.random.default_rng(0).random((20, 30)))  # a gray image
    # a window without the data-bar rows: the UEP in those rows is left out
    mask = np.zeros((60, 60), bool)
    mask[5:8, 5:8] = mask[20:23, 40:43] = mask[55:58, 30:33] = True
    assert D.test_distribution(mask, shape=(50, 60))["n"] == 2
    assert D.test_distribution(mask, "biovoxxel", shape=(50, 60))["area"] == 3600


def test_kdtree_nnd_equals_brute_force():
    pts = np.random.default_rng(1).random((400, 2)) * 100
    pts[7] = pts[3]  # a duplicate: distance 0 for both
    d = np.hypot(*(pts[:, None] - pts[None]).transpose(2, 0, 1))
    np.fill_diagonal(d, np.inf)
    got, idx = D.nearest_neighbour_distances(pts, return_index=True)
    np.testing.assert_allclose(got, d.min(axis=1))
    assert got[3] == got[7] == 0 and idx[3] == 7 and idx[7] == 3
