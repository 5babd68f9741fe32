"""Summary table, bootstrap intervals, plots, overlays and the HTML report (in a real browser).

Expected values are computed by hand or from generated data with a known answer; the report is
loaded in headless Chromium, which must decode every embedded image.
"""

import math
import os
import re
import shutil
import subprocess

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from tio2fiji import report as R
from tio2fiji.errors import InputError
from tio2fiji.particles import measure
from tio2fiji.report import _summary as S
from tio2fiji.run import software_versions

# --------------------------------------------------------------------------------------------------
# a headless browser, shared with test_analyze.py

_CHECK_SCRIPT = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var bad = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); });
  var d = document.createElement("div");
  d.id = "img-check";
  d.setAttribute("data-total", imgs.length);
  d.setAttribute("data-decoded", imgs.length - bad.length);
  d.setAttribute("data-bad", bad.map(function (i) { return i.alt; }).join("|"));
  document.body.appendChild(d);
});
</script>"""


def chromium():
    """The Chromium binary; absent only outside CI (scripts/setup.sh installs it)."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI: scripts/setup.sh should have installed it")
        pytest.skip("chromium not installed (apt-get install chromium, or run scripts/setup.sh)")
    return exe


def browser_dom(html_path, tmp_path):
    """Load a copy of the page with an image-decoding check in headless Chromium.

    Returns the DOM after the load event and the check's result: (dom, total, decoded, bad alts).
    """
    page = html_path.read_text(encoding="utf-8")
    assert page.count("</body>") == 1
    probe = tmp_path / f"probe-{html_path.stem}.html"
    probe.write_text(page.replace("</body>", _CHECK_SCRIPT + "</body>"), encoding="utf-8")
    out = subprocess.run(
        [chromium(), "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", "--dump-dom", probe.resolve().as_uri()],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    dom = out.stdout
    m = re.search(r'<div id="img-check" data-total="(\d+)" data-decoded="(\d+)" data-bad="([^"]*)"', dom)
    assert m, "the page's load event never ran (no img-check marker in the DOM)"
    return dom, int(m.group(1)), int(m.group(2)), m.group(3)


def table_rows(dom, table_id):
    """Cell texts of the body rows of the table with this id in a DOM dump."""
    m = re.search(rf'<table id="{table_id}">(.*?)</table>', dom, re.S)
    assert m, f"table {table_id} missing"
    body = re.search(r"<tbody>(.*)</tbody>", m.group(1), re.S).group(1)
    return [re.findall(r"<td[^>]*>(.*?)</td>", r, re.S) for r in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


# --------------------------------------------------------------------------------------------------
# bootstrap


def test_bootstrap_ci_contains_true_median_and_covers_at_nominal_rate():
    true_median = math.log(2.0)  # exponential(1)
    rng = np.random.default_rng(1)
    x = rng.exponential(1.0, 400)
    est, lo, hi = S.bootstrap_ci(x, "median", n=1000, seed=0)
    assert est == pytest.approx(np.median(x))
    assert lo < true_median < hi
    assert lo < est < hi
    # seeded: the same interval again, another seed another interval
    assert S.bootstrap_ci(x, "median", n=1000, seed=0) == (est, lo, hi)
    assert S.bootstrap_ci(x, "median", n=1000, seed=1) != (est, lo, hi)
    # coverage over independent samples is near 95 % (binomial 95 % range for 200 trials: 184-196;
    # the percentile interval of a median undercovers slightly at n = 60)
    hits = sum(lo < true_median < hi for lo, hi in
               (S.bootstrap_ci(rng.exponential(1.0, 60), "median", n=400, seed=k)[1:] for k in range(200)))
    assert 176 <= hits <= 199


def test_bootstrap_ci_quantiles_mean_and_edge_cases():
    rng = np.random.default_rng(2)
    x = rng.normal(10.0, 2.0, 2000)
    est, lo, hi = S.bootstrap_ci(x, 0.9, n=500, seed=0)
    assert est == pytest.approx(np.quantile(x, 0.9))
    assert lo < 10 + 2 * 1.2815515655 < hi  # true D90 of N(10, 2)
    est, lo, hi = S.bootstrap_ci(x, "mean", n=500, seed=0)
    se = x.std(ddof=1) / math.sqrt(x.size)
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.15)  # the textbook interval's width
    assert all(math.isnan(v) for v in S.bootstrap_ci([], "median"))
    est, lo, hi = S.bootstrap_ci([3.0, np.nan], "median")
    assert est == 3.0 and math.isnan(lo) and math.isnan(hi)
    with pytest.raises(InputError, match="stat must be"):
        S.bootstrap_ci(x, "mode")
    with pytest.raises(InputError, match="level"):
        S.bootstrap_ci(x, "mean", level=95)


# --------------------------------------------------------------------------------------------------
# summary table


def tiny_particles():
    """Three particles in image a.tif, none in b.tif; values chosen for easy hand computation."""
    area = np.array([math.pi, 4 * math.pi, 9 * math.pi])  # ECD = 2, 4, 6
    return pd.DataFrame({"image": ["a.tif"] * 3, "Area": area, "Circ.": [0.5, 0.7, 0.9],
                         "Solidity": [0.8, 0.9, 1.0], "FeretAngle": [10.0, 170.0, 90.0],
                         "ECD": np.sqrt(4 * area / math.pi)})


def test_pooled_statistics_are_numpys_quantiles_of_all_chunks_together():
    """Chunked, two passes, constant memory: the same numbers as np.quantile of the concatenation,
    also for ties, single values, values beyond the counting bins and NaNs."""
    rng = np.random.default_rng(3)
    cases = [rng.lognormal(4, 0.6, 20001), np.array([7.0]), np.array([3.0, 3.0, 3.0, 9.0]),
             np.r_[rng.uniform(1e-5, 1e-4, 5), rng.uniform(1e8, 1e9, 5), 42.0],
             np.round(rng.normal(50, 5, 999), 1)]
    qs = (0.0, 0.1, 0.25, 0.5, 0.9, 1.0)
    for values in cases:
        chunks = np.array_split(np.r_[values, np.nan], 5)
        st = S.pooled_statistics(lambda chunks=chunks: iter(chunks), quantiles=qs)
        assert st["n"] == values.size and st["counts"].sum() == values.size
        assert math.isclose(st["mean"], values.mean(), rel_tol=1e-12)
        np.testing.assert_allclose([st["quantiles"][q] for q in qs], np.quantile(values, qs), rtol=1e-15)
    empty = S.pooled_statistics(lambda: iter([np.array([np.nan])]))
    assert empty["n"] == 0 and math.isnan(empty["quantiles"][0.5]) and math.isnan(empty["mean"])


def test_run_overview_plot_of_a_pooled_run(tmp_path):
    st = S.pooled_statistics(lambda: iter([np.array([20.0, 30.0, 40.0, 41.0, 80.0])]))
    per_image = pd.DataFrame({"ECD_median": [30.0, 41.0], "particles": [3, 2]})
    path = R.plot_run_overview(st, per_image, tmp_path / "o.png", "nm")
    assert mpimg.imread(path).shape[:2] == (380, 1100)


def test_summary_table_matches_hand_computation():
    meta = [{"image": "a.tif", "width": 10, "height": 20, "pixel_size_m": None, "foreground_px": 50},
            {"image": "b.tif", "width": 8, "height": 8, "pixel_size_m": 2e-9}]
    s = S.summary_table(tiny_particles(), meta, n_boot=200, seed=0)
    assert list(s.columns) == S.SUMMARY_COLUMNS
    assert list(s["particles_kind"]) == ["all", "all"]  # no complete column: one row per image
    a, b = s.iloc[0], s.iloc[1]
    assert a["particles"] == 3 and b["particles"] == 0
    assert a["area_coverage_pct"] == pytest.approx(25.0)  # 50 of 200 pixels
    assert b["area_coverage_pct"] == 0.0
    assert a["circularity_mean"] == pytest.approx(0.7)
    assert a["solidity_mean"] == pytest.approx(0.9)
    assert a["feret_angle_mean"] == pytest.approx(90.0)  # Table 8's arithmetic mean
    # axial mean: 10° and 170° are nearly the same axis (0°), 90° is perpendicular and cancels
    # part of them: doubled angles 20°, 340°, 180° sum to (2 cos 20° - 1, 0) -> 0°
    assert a["feret_angle_axial_mean"] == pytest.approx(0.0, abs=1e-9) or \
        a["feret_angle_axial_mean"] == pytest.approx(180.0)
    assert a["ECD_mean"] == pytest.approx(4.0)
    assert a["ECD_median"] == pytest.approx(4.0) and a["ECD_D50"] == pytest.approx(4.0)
    assert a["ECD_D10"] == pytest.approx(2.4)  # linear interpolation: 2 + 0.2 * (4 - 2)
    assert a["ECD_D90"] == pytest.approx(5.6)
    assert 2.0 <= a["ECD_mean_ci_low"] <= 4.0 <= a["ECD_mean_ci_high"] <= 6.0
    assert a["unit"] == "pixel" and b["unit"] == "nm" and b["pixel_size_nm"] == pytest.approx(2.0)
    assert math.isnan(b["circularity_mean"]) and math.isnan(b["ECD_median"])


def disc_mask(shape=(120, 160), n=25, seed=3):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    mask = np.zeros(shape, bool)
    for _ in range(n):
        cy, cx, r = rng.uniform(0, shape[0]), rng.uniform(0, shape[1]), rng.uniform(2, 7)
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    return mask


def test_area_coverage_of_generated_mask_is_the_pixel_ratio():
    mask = disc_mask()
    ps = 5e-9
    table = measure(mask, pixel_size_m=ps, connectivity=8, image_name="gen")
    ratio = 100.0 * mask.sum() / mask.size
    meta = {"image": "gen", "width": mask.shape[1], "height": mask.shape[0], "pixel_size_m": ps}
    with_px = S.summary_table(table, [dict(meta, foreground_px=int(mask.sum()))], n_boot=50)
    from_area = S.summary_table(table, [meta], n_boot=50)  # summed Area in nm² over the window
    assert with_px["area_coverage_pct"].iloc[0] == pytest.approx(ratio, rel=1e-12)
    assert from_area["area_coverage_pct"].iloc[0] == pytest.approx(ratio, rel=1e-12)
    assert with_px["particles"].iloc[0] == len(table) > 5
    assert with_px["ECD_median"].iloc[0] == pytest.approx(np.median(table["ECD"]))


def test_summary_table_needs_image_names():
    with pytest.raises(InputError, match="'image'"):
        S.summary_table(tiny_particles(), [{"width": 1, "height": 1}])


# --------------------------------------------------------------------------------------------------
# plots and overlay


def plot_particles():
    rng = np.random.default_rng(4)
    rows = []
    for name, n in (("one.tif", 40), ("two.tif", 60), ("single.tif", 1)):
        area = rng.lognormal(3, 0.5, n)
        rows.append(pd.DataFrame({
            "image": name, "Area": area, "ECD": np.sqrt(4 * area / np.pi),
            "Circ.": rng.uniform(0.5, 1, n), "Solidity": rng.uniform(0.7, 1, n),
            "Compact": rng.uniform(0.6, 1, n), "Round": rng.uniform(0.5, 1, n),
            "FeretAngle": np.concatenate([rng.normal(40, 10, n // 2),
                                          rng.normal(130, 10, n - n // 2)]) % 180}))
    df = pd.concat(rows, ignore_index=True)
    df.attrs["unit"] = "nm"
    return df


def test_plots_write_png_files(tmp_path):
    df = plot_particles()
    names = ["one.tif", "two.tif", "single.tif", "empty.tif"]  # with one and no particles
    paths = [R.plot_area_violin(df, tmp_path / "v.png", names),
             R.plot_feret_angle_kde(df, tmp_path / "k.png", names),
             R.plot_correlation(df, tmp_path / "c.png", names),
             R.plot_ecd_distribution(df, tmp_path / "e.png", names)]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        img = mpimg.imread(p)
        assert img.shape[0] > 200 and img.shape[1] > 300
        assert img[..., :3].std() > 0.05  # something is drawn
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary file


def test_feret_kde_is_a_density_on_the_half_circle():
    grid = np.linspace(0, 180, 1801)
    angles = np.array([2.0, 5.0, 175.0, 178.0, 90.0])
    from tio2fiji.report._plots import _periodic_kde

    dens = _periodic_kde(angles, grid)
    assert np.trapezoid(dens, grid) == pytest.approx(1.0, abs=1e-3)
    assert dens[0] == pytest.approx(dens[-1], rel=1e-9)  # 0° and 180° are the same axis
    assert dens[0] > 2 * dens[900]  # four of five particles lie within 5° of 0°/180°, one at 90°


def test_correlation_matrix_names_and_values():
    df = plot_particles()
    df["Compact"] = np.sqrt(df["Round"])  # monotone: strongly correlated
    c = R.correlation_matrix(df)
    assert list(c.columns) == ["Area", "Solidity", "Circularity", "Compactness", "Roundness", "Feret angle"]
    assert c.loc["Compactness", "Roundness"] > 0.98
    assert c.loc["Area", "Area"] == pytest.approx(1.0)


def test_overlay_colours_outlines_per_particle(tmp_path):
    img = np.full((12, 16), 100, np.uint8)
    img[0, 0] = 7
    lab = np.zeros((12, 16), np.uint32)
    lab[2:7, 2:7] = 5      # two touching squares
    lab[2:7, 7:12] = 9
    lab[9:11, 13:15] = 2   # a 2×2 particle: all outline
    rgb = R.overlay_rgb(img, lab)
    gray = (rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2])
    outline = ~gray
    # interiors and background show the image unchanged
    assert (rgb[4, 4] == 100).all() and (rgb[4, 9] == 100).all() and (rgb[0, 0] == 7).all()
    assert outline[2, 2:12].all() and outline[2:7, 6].all() and outline[2:7, 7].all()
    assert outline[9:11, 13:15].all() and outline.sum() == 16 + 16 + 4
    colours = {tuple(rgb[2, 3]), tuple(rgb[2, 8]), tuple(rgb[9, 13])}
    assert len(colours) == 3  # one colour per particle
    p = R.overlay_image(img, lab, tmp_path / "o.png")
    back = (mpimg.imread(p)[..., :3] * 255).round().astype(np.uint8)
    assert (back == rgb).all()  # full resolution, lossless
    with pytest.raises(InputError, match="same shape"):
        R.overlay_rgb(img, lab[:5])


def test_overlay_of_16_bit_image_is_stretched():
    img = np.linspace(1000, 5000, 20 * 30).reshape(20, 30).astype(np.uint16)
    rgb = R.overlay_rgb(img, np.zeros(img.shape, np.int32))
    assert rgb.dtype == np.uint8 and rgb.min() == 0 and rgb.max() == 255


def test_software_versions():
    from importlib import metadata

    from tio2fiji import __version__

    v = software_versions()
    assert v["tio2fiji"] == __version__ and "torch" in v and "python" in v
    assert v["numpy"] == metadata.version("numpy") == np.__version__


# --------------------------------------------------------------------------------------------------
# the HTML report in a browser


def small_report(tmp_path):
    df = plot_particles()
    df["complete"] = np.arange(len(df)) % 4 != 0  # every fourth particle is not complete
    names = ["one.tif", "two.tif", "single.tif"]
    meta = [{"image": n, "path": f"/data/{n}", "width": 64, "height": 48, "pixel_size_m": 7.34375e-9,
             "pixel_size_source": "CZ_SEM", "data_bar_rows": 0, "particles": int((df["image"] == n).sum())}
            for n in names]
    summary = S.summary_table(df, meta, n_boot=100)
    dist = pd.DataFrame({"image": names, "method": "clark-evans", "points": "centroid", "n": [40, 60, 1],
                         "expected_nnd": [1.0, 2.0, np.nan], "observed_nnd": [1.5, 2.5, np.nan],
                         "statistic": [3.1, 2.2, np.nan], "critical_value": 1.96,
                         "p_value": [0.002, 0.03, np.nan],
                         "classification": ["regular", "regular", "too few points"], "unit": "nm"})
    plots = {"violin <Fig. 34>": R.plot_area_violin(df, tmp_path / "v.png", names),
             "kde": R.plot_feret_angle_kde(df, tmp_path / "k.png", names)}
    lab = np.zeros((48, 64), np.int32)
    lab[10:20, 10:20], lab[30:40, 40:50] = 1, 2
    overlays = {"one.tif": R.overlay_image(np.full((48, 64), 90, np.uint8), lab, tmp_path / "o.png")}
    model = {"model": "default (bundled)", "file": "unet_default.pt", "threshold": 0.5}
    failures = [("/data/bad <1>.tif", "bad <1>.tif: not a readable TIFF file")]
    path = R.write_report(tmp_path / "rep", summary, software_versions(), dist, images=meta, plots=plots,
                          overlays=overlays, model=model, failures=failures, options={"backend": "native"})
    return path, summary


def test_report_tables_and_images_in_headless_browser(tmp_path):
    path, summary = small_report(tmp_path)
    page = path.read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 3 and 'src="file:' not in page  # self-contained
    assert "<1>" not in page and "&lt;1&gt;" in page  # names are escaped
    dom, total, decoded, bad = browser_dom(path, tmp_path)
    assert (total, decoded, bad) == (3, 3, "")
    rows = table_rows(dom, "summary-table")
    # per image a row of all particles and one of the complete ones
    assert [r[0] for r in rows] == ["one.tif", "one.tif", "two.tif", "two.tif", "single.tif", "single.tif"]
    assert [r[1] for r in rows] == ["all", "complete"] * 3
    assert [int(r[2]) for r in rows] == [40, 30, 60, 45, 1, 0]
    assert rows[0][4] == f"{summary['circularity_mean'].iloc[0]:.4g}"
    assert rows[1][4] == f"{summary['circularity_mean'].iloc[1]:.4g}"
    assert "Two rows per image" in dom
    assert len(table_rows(dom, "distribution-table")) == 3
    images = table_rows(dom, "images-table")
    assert all("CZ_SEM" in r for r in images) and images[0][4] == "7.344"
    assert "unet_default.pt" in str(table_rows(dom, "model-table"))
    versions = dict(r[:2] for r in table_rows(dom, "versions-table"))
    assert versions["tio2fiji"] and versions["numpy"]
    size = table_rows(dom, "size-table")
    assert [r[1] for r in size] == ["all", "complete"] * 3
    assert re.fullmatch(r"[\d.]+ \[[\d.]+, [\d.]+\]", size[0][4])  # median [low, high]
    assert size[5][4] == "–"  # no complete particle in single.tif
    assert "not a readable TIFF" in dom


def test_browser_check_sees_a_broken_image(tmp_path):
    """The decoding check is not vacuous: a corrupt embedded PNG is reported."""
    path, _ = small_report(tmp_path)
    page = path.read_text(encoding="utf-8")
    broken = path.with_name("broken.html")
    corrupt = '<img alt="corrupt" src="data:image/png;base64,iVBORw0KGgoAAAA">'
    broken.write_text(page.replace("</body>", corrupt + "</body>"), encoding="utf-8")
    _, total, decoded, bad = browser_dom(broken, tmp_path)
    assert (total, decoded, bad) == (4, 3, "corrupt")


def test_the_scope_of_a_large_run_is_said_under_the_title(tmp_path):
    """A large run's report shows some images; the page says which, escaped, right after the title."""
    note = "This run has 1000 analysed images; the tables below show 24 of them <evenly spaced>."
    page = R.write_report(tmp_path, None, software_versions(), scope=note).read_text(encoding="utf-8")
    first, scope = page.index("<h1>"), page.index("id='scope'")
    assert first < scope < page.index("<h2")
    assert "24 of them &lt;evenly spaced&gt;." in page and "<evenly" not in page
    plain = R.write_report(tmp_path, None, software_versions(), filename="plain.html").read_text(encoding="utf-8")
    assert "id='scope'" not in plain


def test_envelope_plot_titles_give_the_p_of_the_reports_table(tmp_path):
    """Each G/L panel's title states the p of its row in the report's envelope table, from one
    variable (distribution.envelope_tests). Before, the titles were the report's only record of these
    tests (p = 0.025) and named them as if they were the Monte Carlo row of Table 9 (p = 0.01)."""
    from tio2fiji.distribution import envelope_tests, envelopes

    rng = np.random.default_rng(3)
    pts = np.concatenate([rng.normal(c, 3.0, (20, 2)) for c in ((60, 60), (200, 150), (320, 60))])
    env = envelopes(pts, (400, 300), n_sim=39, seed=1)
    tests = envelope_tests(env, "one.tif")
    # by hand: three tight clusters deviate from CSR more than any of the 39 simulations, so the
    # one-sided rank p is 1 / (39 + 1)
    assert [t["p_value"] for t in tests] == [1 / 40, 1 / 40]
    assert [t["min_p_value"] for t in tests] == [1 / 40, 1 / 40]
    fig = R.plot_envelopes(env, unit="nm")
    titles = [ax.get_title() for ax in fig.axes]
    png = R.plot_envelopes_png(env, tmp_path / "env.png", unit="nm")
    meta = [{"image": "one.tif", "width": 400, "height": 300, "particles": 60, "envelope_tests": tests}]
    page = R.write_report(tmp_path, None, software_versions(), images=meta,
                          envelopes={"one.tif": png}).read_text(encoding="utf-8")
    table = re.search(r'<table id="envelope-table">(.*?)</table>', page).group(1)
    heads = re.findall(r"<th[^>]*>(.*?)</th>", table)
    rows = [re.findall(r"<td[^>]*>(.*?)</td>", r) for r in re.findall(r"<tr>(.*?)</tr>", table)[1:]]
    p_col = heads.index("p")
    assert [r[heads.index("Function")] for r in rows] == ["G", "L"]
    for title, row in zip(titles, rows):
        p_title = re.search(r"p = ([^ ]+) ", title).group(1)
        assert p_title == row[p_col] == "0.025", (title, row)
        assert "(39 sims)" in title and row[heads.index("Simulations")] == "39"
    assert "not the Monte Carlo row of Table 9" in page


def test_summary_says_what_the_plain_feret_angle_mean_is(tmp_path):
    df = plot_particles()
    names = ["one.tif", "two.tif", "single.tif"]
    meta = [{"image": n, "width": 64, "height": 48, "pixel_size_m": None,
             "particles": int((df["image"] == n).sum())} for n in names]
    page = R.write_report(tmp_path, S.summary_table(df, meta, n_boot=10), software_versions(),
                          images=meta).read_text(encoding="utf-8")
    assert "Feret angle (°, arithmetic mean, as Table 8: see note)" in page
    assert "Feret axis (°, axial mean)" in page and "id='feret-note'" in page
    assert "5° and 175° average to 90°" in page
