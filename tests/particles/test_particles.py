"""Native ImageJ-exact particle measurements on shapes whose values can be worked out by hand.

The expected numbers below come from ImageJ's definitions (docs/imagej-spec.md, section A), not
from running the code: traced perimeter with corner counting, hull of the pixel corners, the
equal-area ellipse. The particle-by-particle comparison with the real ImageJ lives in
test_native_vs_imagej.py.
"""

import math

import numpy as np
import pandas as pd
import pytest

from tio2fiji.errors import InputError
from tio2fiji.particles import COLUMNS, label_particles, measure

SQRT2 = math.sqrt(2.0)
CORNER = 2.0 - SQRT2  # what each counted corner takes off the boundary length
SQRT_PI_IJ = 1.772453851  # EllipseFitter's truncated sqrt(pi) for 1-pixel-wide particles


def _canvas(h=20, w=24):
    return np.zeros((h, w), bool)


def _one(df):
    assert len(df) == 1
    return df.iloc[0]


# --------------------------------------------------------------------------- single shapes

def test_single_pixel():
    m = _canvas()
    m[5, 7] = True
    r = _one(measure(m))
    assert r["Area"] == 1
    assert r["Perim."] == pytest.approx(4 - 2 * CORNER)  # = 2*sqrt(2)
    assert r["Perim."] == pytest.approx(2.8284271247461903)
    assert r["Circ."] == 1.0  # 4*pi/8 = 1.57, capped
    # Hull corners from the top-left, counter-clockwise on screen: (7,5) (7,6) (8,6) (8,5).
    # The first longest pair is (7,5)-(8,6): angle atan2(5-6, 8-7) = -45 deg -> 135.
    assert r["Feret"] == pytest.approx(SQRT2)
    assert r["FeretAngle"] == pytest.approx(135.0)
    assert (r["FeretX"], r["FeretY"]) == (7, 5)
    assert r["MinFeret"] == pytest.approx(1.0)
    assert r["Solidity"] == 1.0
    assert r["Major"] == pytest.approx(2 / SQRT_PI_IJ) and r["Minor"] == r["Major"]
    assert r["Angle"] == 0.0
    assert (r["X"], r["Y"]) == (7.5, 5.5)
    assert (r["BX"], r["BY"], r["Width"], r["Height"]) == (7, 5, 1, 1)
    assert r["Extent"] == 1.0


@pytest.mark.parametrize("w,h", [(5, 3), (2, 2), (4, 9), (12, 12)])
def test_rectangle(w, h):
    m = _canvas(30, 30)
    x0, y0 = 3, 4
    m[y0:y0 + h, x0:x0 + w] = True
    r = _one(measure(m))
    assert r["Area"] == w * h
    assert r["Perim."] == pytest.approx(2 * (w + h) - 4 * CORNER)
    assert r["Feret"] == pytest.approx(math.hypot(w, h))
    # First longest pair: top-left to bottom-right corner.
    assert r["FeretAngle"] == pytest.approx(180 - math.degrees(math.atan2(h, w)))
    assert (r["FeretX"], r["FeretY"]) == (x0, y0)
    assert r["MinFeret"] == pytest.approx(min(w, h))
    assert r["Solidity"] == 1.0
    assert r["Extent"] == 1.0
    assert (r["X"], r["Y"]) == pytest.approx((x0 + w / 2, y0 + h / 2))
    assert (r["BX"], r["BY"], r["Width"], r["Height"]) == (x0, y0, w, h)
    # Moments of a uniform w x h box: variances w^2/12 and h^2/12, so the equal-area ellipse
    # has Major = 2*max/sqrt(pi), Minor = 2*min/sqrt(pi) (up to ImageJ's 0.08333333 for 1/12).
    assert r["Major"] == pytest.approx(2 * max(w, h) / math.sqrt(math.pi), rel=1e-6)
    assert r["Minor"] == pytest.approx(2 * min(w, h) / math.sqrt(math.pi), rel=1e-6)
    assert r["AR"] == pytest.approx(max(w, h) / min(w, h), rel=1e-6)
    assert r["Round"] == pytest.approx(1 / r["AR"], rel=1e-9)
    if w != h:
        assert r["Angle"] == pytest.approx(0.0 if w > h else 90.0, abs=1e-9)
    assert r["FeretAR"] == pytest.approx(r["Feret"] / r["MinFeret"])
    assert r["Compact"] == pytest.approx(math.sqrt(r["Round"]), rel=1e-9)


@pytest.mark.parametrize("vertical", [False, True])
@pytest.mark.parametrize("n", [2, 3, 10])
def test_one_pixel_line(n, vertical):
    m = _canvas(20, 20)
    if vertical:
        m[2:2 + n, 6] = True
    else:
        m[6, 2:2 + n] = True
    r = _one(measure(m))
    assert r["Area"] == n
    # The corner count depends on where the trace starts (bottom-right of the first run, heading
    # down). Horizontal: vertices (x+n,y+1) (x,y+1) (x,y) (x+n,y) with incoming edges 1, n, 1, n
    # -> corners counted at 1st, 2nd, 4th = 3. Vertical: the start is no vertex; vertices
    # (x+1,y+n) (x,y+n) (x,y) (x+1,y) with incoming n, 1, n, 1 -> 2 corners.
    corners = 2 if vertical else 3
    assert r["Perim."] == pytest.approx(2 * n + 2 - corners * CORNER)
    assert r["Feret"] == pytest.approx(math.hypot(n, 1))
    assert r["MinFeret"] == pytest.approx(1.0)
    # 1-pixel-wide particles take EllipseFitter's no-mask branch: axes from the box.
    assert r["Major"] == pytest.approx(2 * n / SQRT_PI_IJ)
    assert r["Minor"] == pytest.approx(2 / SQRT_PI_IJ)
    assert r["Angle"] == (90.0 if vertical else 0.0)
    assert r["Solidity"] == 1.0


def test_l_shape_hull_and_calipers():
    m = _canvas(10, 10)
    m[0:3, 0] = True
    m[2, 0:3] = True  # 5 pixels
    r = _one(measure(m))
    # Hull of the pixel corners: (0,0) (0,3) (3,3) (3,2) (1,0); area 9 - 2 = 7.
    assert r["Solidity"] == pytest.approx(5 / 7)
    assert r["Feret"] == pytest.approx(math.sqrt(18))
    assert r["FeretAngle"] == pytest.approx(135.0)
    # Narrowest caliper: across the diagonal edge (3,2)-(1,0), farthest vertex (0,3).
    assert r["MinFeret"] == pytest.approx(2 * SQRT2)
    assert r["touches_edge"]


def test_digital_disk():
    yy, xx = np.mgrid[:61, :61]
    r0 = 20
    m = (yy - 30) ** 2 + (xx - 30) ** 2 <= r0 * r0
    r = _one(measure(m))
    assert r["Area"] == m.sum()
    assert r["Area"] == pytest.approx(math.pi * r0 * r0, rel=0.01)
    assert 0.85 < r["Circ."] < 1.0
    assert r["AR"] == pytest.approx(1.0, abs=1e-3)
    assert (r["X"], r["Y"]) == pytest.approx((30.5, 30.5))
    assert r["Feret"] == pytest.approx(2 * r0 + 1, abs=1.0)
    assert r["MinFeret"] == pytest.approx(2 * r0 + 1, abs=1.0)
    assert 0.95 < r["Solidity"] < 1.0  # pixel count / polygon area of the corner hull
    assert r["ECD"] == pytest.approx(math.sqrt(4 * r["Area"] / math.pi))


# --------------------------------------------------------------------------- holes, edges, order

def _ring_with_island():
    m = _canvas(15, 15)
    m[3:10, 4:11] = True  # 7x7
    m[5:8, 6:9] = False  # 3x3 hole
    m[6, 7] = True  # island in the hole
    return m


def test_holes_excluded_by_default():
    df = measure(_ring_with_island())
    assert list(df["Area"]) == [40, 1]
    ring = df.iloc[0]
    assert ring["Perim."] == pytest.approx(2 * 14 - 4 * CORNER)  # outer outline only
    assert ring["Solidity"] == pytest.approx(40 / 49)


def test_include_holes_fills_and_erases_islands():
    df = measure(_ring_with_island(), include_holes=True)
    ring = _one(df)
    assert ring["Area"] == 49
    assert ring["Solidity"] == 1.0
    assert ring["Perim."] == pytest.approx(2 * 14 - 4 * CORNER)
    labels, n = label_particles(_ring_with_island(), include_holes=True)
    assert n == 1 and (labels > 0).sum() == 49


def test_four_connectivity_forces_include_holes():
    df = measure(_ring_with_island(), connectivity=4, include_holes=False)
    assert list(df["Area"]) == [49]


def test_diagonal_chain_connectivity():
    m = _canvas(12, 12)
    for i in range(6):
        m[2 + i, 3 + i] = True
    eight = measure(m, connectivity=8)
    four = measure(m, connectivity=4)
    assert list(eight["Area"]) == [6]
    assert eight.iloc[0]["Feret"] == pytest.approx(math.hypot(6, 6))
    assert len(four) == 6 and (four["Area"] == 1).all()
    assert list(four["BY"]) == [2, 3, 4, 5, 6, 7]


def test_checkerboard_holes_are_4_connected_background():
    m = _canvas(12, 12)
    m[1:11:2, 1:11:2] = True
    m[2:11:2, 2:11:2] = True  # 10x10 checkerboard, one 8-connected particle of 50 pixels
    assert list(measure(m)["Area"]) == [50]
    # Every background pixel of the patch not on its border is a 4-connected hole: 50 - 18.
    assert list(measure(m, include_holes=True)["Area"]) == [82]


def test_exclude_edges_and_touches_edge():
    m = _canvas(10, 12)
    m[0, 3:5] = True  # top
    m[4:6, 0] = True  # left
    m[9, 8] = True  # bottom
    m[3:5, 11] = True  # right
    m[4:6, 4:7] = True  # inside
    df = measure(m)
    assert len(df) == 5
    assert df["touches_edge"].sum() == 4
    inner = _one(measure(m, exclude_edges=True))
    assert inner["Area"] == 6 and not inner["touches_edge"]
    assert inner["label"] == 1  # ImageJ's row number among the reported particles


def test_raster_order_of_first_pixel():
    m = _canvas(10, 20)
    m[1:8, 1] = True  # starts at row 1
    m[0, 15] = True  # starts at row 0, further right
    m[1, 5:9] = True  # starts at row 1, right of the first
    df = measure(m)
    assert list(df["Area"]) == [1, 7, 4]
    assert list(df["label"]) == [1, 2, 3]
    labels, n = label_particles(m)
    assert n == 3 and labels.dtype == np.int32
    assert labels[0, 15] == 1 and labels[1, 1] == 2 and labels[1, 5] == 3


# --------------------------------------------------------------------------- inputs

def test_label_image_kept_as_given():
    lab = np.zeros((10, 12), np.uint16)
    lab[2:5, 6:9] = 9  # first in raster order
    lab[3:7, 1:4] = 3
    lab[5:7, 4:6] = 4  # touches label 3: still its own particle
    df = measure(lab)
    assert list(df["label"]) == [9, 3, 4]
    assert list(df["Area"]) == [9, 12, 4]
    assert df.iloc[1]["Perim."] == pytest.approx(2 * 7 - 4 * CORNER)


def test_label_image_equals_mask_measurement():
    rng = np.random.default_rng(5)
    m = rng.random((40, 50)) < 0.4
    labels, n = label_particles(m)
    relabelled = np.where(labels > 0, labels * 7 + 100, 0).astype(np.int32)
    a, b = measure(m), measure(relabelled)
    num = [c for c in COLUMNS if c not in ("label", "image")]
    pd.testing.assert_frame_equal(a[num], b[num])
    assert list(b["label"]) == list(np.arange(1, n + 1) * 7 + 100)


@pytest.mark.parametrize("connectivity", [8, 4])
def test_label_in_two_pieces_is_measured_over_both(connectivity):
    # label 5: two 3 x 3 squares, cols 2-4 and 10-12 of rows 2-4 (8 columns apart); label 7: one
    # 3 x 3 square. Before, label 5 got the outline of its first square only: Perim. 9.657 (one
    # square), Feret 4.243 and Solidity 2.0 (18 pixels over one square's 9-pixel hull).
    lab = np.zeros((12, 16), np.int32)
    lab[2:5, 2:5] = lab[2:5, 10:13] = 5
    lab[7:10, 6:9] = 7
    df = measure(lab, connectivity=connectivity).set_index("label")
    square = 2 * (3 + 3) - 4 * CORNER                     # 9.657: one 3 x 3 square, by hand
    two = df.loc[5]
    assert two["Area"] == 18 and df.loc[7]["Perim."] == pytest.approx(square)
    assert two["Perim."] == pytest.approx(2 * square)      # 19.314: both outlines
    # the hull of both squares' pixel corners: the rectangle x 2..13, y 2..5
    assert two["Feret"] == pytest.approx(math.hypot(11, 3)) and two["MinFeret"] == pytest.approx(3)
    assert two["Solidity"] == pytest.approx(18 / 33)
    assert two["Circ."] == pytest.approx(4 * math.pi * 18 / (2 * square) ** 2)
    # the same pixels as a mask: two particles whose perimeters add up to the label's
    pieces = measure(lab == 5, connectivity=connectivity)
    assert len(pieces) == 2 and pieces["Perim."].sum() == pytest.approx(two["Perim."])
    # a label in one piece keeps exactly what it had
    num = [c for c in COLUMNS if c not in ("label", "image", "unit")]
    alone = measure(np.where(lab == 7, 7, 0), connectivity=connectivity).iloc[0]
    np.testing.assert_array_equal(alone[num].to_numpy(float), df.loc[7][num].to_numpy(float))


def test_uint8_masks():
    m = _ring_with_island()
    expected = measure(m)
    pd.testing.assert_frame_equal(measure(m.astype(np.uint8) * 255), expected)
    pd.testing.assert_frame_equal(measure(m.astype(np.uint8)), expected)


def test_non_binary_uint8_rejected():
    img = np.zeros((5, 5), np.uint8)
    img[1, 1] = 128
    img[2, 2] = 255
    with pytest.raises(InputError, match="not binary"):
        measure(img)


@pytest.mark.parametrize("bad", [np.zeros((3, 3, 3), bool), -np.ones((4, 4), np.int32),
                                 np.full((4, 4), 0.5)])
def test_bad_inputs_rejected(bad):
    with pytest.raises(InputError):
        measure(bad)


def test_bad_options_rejected():
    m = _ring_with_island()
    with pytest.raises(InputError):
        measure(m, connectivity=6)
    with pytest.raises(InputError):
        measure(m, pixel_size_m=-1.0)


def test_empty_mask():
    df = measure(np.zeros((8, 8), bool))
    assert list(df.columns) == list(COLUMNS) and len(df) == 0
    assert df.attrs["unit"] == "pixel"
    labels, n = label_particles(np.zeros((8, 8), bool))
    assert n == 0 and not labels.any()


def test_calibration_in_nanometres():
    m = _canvas(20, 20)
    m[3:6, 4:9] = True  # 5 x 3
    px = _one(measure(m))
    df = measure(m, pixel_size_m=7.5e-9, image_name="a.tif")
    nm = _one(df)
    assert df.attrs == {"unit": "nm", "pixel_size_m": 7.5e-9}
    assert nm["Area"] == pytest.approx(15 * 7.5 ** 2)
    for col in ["Perim.", "Feret", "MinFeret", "Major", "Minor", "X", "Y", "BX", "BY", "Width",
                "Height", "ECD"]:
        assert nm[col] == pytest.approx(px[col] * 7.5), col
    for col in ["Circ.", "AR", "Round", "Solidity", "FeretAngle", "Angle", "FeretAR", "Compact",
                "Extent", "FeretX", "FeretY"]:  # FeretX/Y stay pixel corners, as in ImageJ
        assert nm[col] == pytest.approx(px[col]), col
    assert nm["image"] == "a.tif"


def test_columns_and_progress():
    rng = np.random.default_rng(1)
    m = rng.random((50, 60)) < 0.3
    calls = []
    df = measure(m, image_name="m.tif", progress=lambda done, total, name: calls.append((done, total, name)))
    assert list(df.columns) == list(COLUMNS)
    assert calls and calls[-1] == (len(df), len(df), "m.tif")
    assert df["label"].tolist() == list(range(1, len(df) + 1))
    assert df["touches_edge"].dtype == bool


# --------------------------------------------------------------------------- internals

def test_fast_hull_equals_imagej_gift_wrapping():
    """The O(n) hull lists exactly the vertices of the port of FloatPolygon.getConvexHull."""
    from scipy import ndimage as ndi

    from tio2fiji.particles import _scan as S
    from tio2fiji.particles import _shape as P

    rng = np.random.default_rng(3)
    masks = [rng.random((40, 50)) < 0.5,
             ndi.gaussian_filter(rng.random((60, 70)), 2.0) > 0.5,
             _ring_with_island()]
    checked = 0
    for m in masks:
        for conn in (8, 4):
            labels, n = label_particles(m, connectivity=conn)
            count, minx, maxx, miny, maxy, fx, fy, _ = S._scan(labels, n)
            for k in range(1, n + 1):
                size = 4 * count[k] + 8
                xs, ys = np.empty(size, np.int64), np.empty(size, np.int64)
                nv = P._trace(labels, k, fx[k], fy[k], conn == 4, xs, ys)
                rows = maxy[k] - miny[k] + 2
                hx, hy = np.empty(2 * rows + 2), np.empty(2 * rows + 2)
                nh = P._convex_hull(xs, ys, nv, fy[k], rows, np.empty(rows, np.int64),
                                    np.empty(rows, np.int64), hx, hy)
                gx, gy = np.empty(nv), np.empty(nv)
                ng = P._convex_hull_giftwrap(xs, ys, nv, gx, gy)
                assert nh == ng
                assert np.array_equal(hx[:nh], gx[:ng]) and np.array_equal(hy[:nh], gy[:ng])
                checked += 1
    assert checked > 100


def test_trace_starts_where_imagej_starts():
    """Vertices of a 2x2 square: the walk starts below the first run's right end, heading down."""
    from tio2fiji.particles import _shape as P

    m = _canvas(6, 6)
    m[1:3, 2:4] = True
    labels, _ = label_particles(m)
    xs, ys = np.empty(32, np.int64), np.empty(32, np.int64)
    nv = P._trace(labels, 1, 2, 1, False, xs, ys)
    # Start vertex (4, 2) is no corner; first turn at (4, 3), then clockwise on screen.
    assert list(zip(xs[:nv], ys[:nv])) == [(4, 3), (2, 3), (2, 1), (4, 1)]


def test_size_texts_imagej_would_misread_are_refused_in_one_line():
    from tio2fiji.particles import parse_size

    assert parse_size("0-Infinity") is None and parse_size(None) is None  # ImageJ's default: everything
    s = parse_size("10")
    assert (s.minimum, s.maximum, s.unit) == (10.0, float("inf"), None)
    s = parse_size("size=10-500 pixel".removeprefix("size="))
    assert (s.minimum, s.maximum, s.unit) == (10.0, 500.0, "pixel") and s.pixel_bounds(5e-9) == (10.0, 500.0)
    assert parse_size("0.01-Infinity um^2").pixel_bounds(5e-9) == pytest.approx((400.0, float("inf")))
    assert parse_size("100").pixel_bounds(5e-9) == (4.0, float("inf"))  # nm²: 100 / 25
    assert parse_size("100").pixel_bounds(None) == (100.0, float("inf"))  # uncalibrated: pixels
    for text, why in [("500-10", "maximum is below the minimum"), ("1e-3-Infinity", "give MIN-MAX"),
                      ("ten", "is not a size"), ("1-2-3", "give MIN-MAX"), ("5 mm^2", "is not a size")]:
        with pytest.raises(InputError, match=why) as err:
            parse_size(text)
        assert str(err.value).startswith(f"--size {text!r}: ") and "\n" not in str(err.value)
    with pytest.raises(InputError, match="has no pixel size"):
        parse_size("10-Infinity nm^2").pixel_bounds(None)
