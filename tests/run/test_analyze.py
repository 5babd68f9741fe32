"""The main job end to end: `tio2fiji demo` / `analyze` on real SEM images with the bundled model.

One run of the demo on the three bundled images (what the README's first command does) checks the
files, their mutual consistency and the report in a browser; small crops of a bundled image check
failures, calibration sources, progress and the ImageJ backend.
"""

import hashlib
import html
import json
import re

import numpy as np
import pandas as pd
import pytest
import tifffile
from click.testing import CliRunner
from scipy import ndimage
from test_complete import use_tiny_classifier
from test_report import browser_dom, table_rows

from tio2fiji.checks import ResultWarning
from tio2fiji.cli import main
from tio2fiji.errors import InputError
from tio2fiji.instances import labels_to_separated_mask
from tio2fiji.io import read_sem
from tio2fiji.models.checkpoint import DEFAULT_MODEL
from tio2fiji.particles import measure
from tio2fiji.run import AnalysisOptions, analyze_images

PS = 7.34375e-9
pytestmark = pytest.mark.usefixtures("one_torch_thread_module")  # the cores are shared


@pytest.fixture(autouse=True)
def tiny_classifier(tmp_path, monkeypatch):
    """The complete columns come from a hand-made classifier, not the bundled one's numbers."""
    return use_tiny_classifier(tmp_path, monkeypatch)


@pytest.fixture(scope="module")
def model():
    from tio2fiji.models.checkpoint import load_model

    return load_model("default")


@pytest.fixture(scope="module")
def crops(example_images, tmp_path_factory):
    """A 320×256 crop with particles, calibrated (ImageJ metadata) and uncalibrated."""
    d = tmp_path_factory.mktemp("crops")
    area = read_sem(example_images[0]).analysed[250:506, 300:620]
    cal, raw = d / "cal" / "crop.tif", d / "raw" / "crop.tif"
    cal.parent.mkdir()
    raw.parent.mkdir()
    tifffile.imwrite(cal, area, imagej=True, resolution=(1e-9 / PS, 1e-9 / PS), metadata={"unit": "nm"})
    tifffile.imwrite(raw, area)
    return cal, raw


def test_demo_writes_consistent_results_and_a_report_that_renders(tmp_path, example_images):
    out = tmp_path / "demo-out"
    res = CliRunner().invoke(main, ["demo", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output
    names = [p.name for p in example_images]
    for n in names:
        assert f"{n}: " in res.output and "(calibration: CZ_SEM)" in res.output
    assert "report.html" in res.output

    particles = pd.read_csv(out / "particles.csv")
    both = pd.read_csv(out / "summary.csv")
    dist = pd.read_csv(out / "distribution.csv")
    meta = json.loads((out / "analysis.json").read_text())
    # per image a row of all particles, then one of its complete particles
    assert list(both["image"]) == [n for n in names for _ in range(2)]
    assert list(both["particles_kind"]) == ["all", "complete"] * 3
    summary = both[both["particles_kind"] == "all"]
    complete_rows = both[both["particles_kind"] == "complete"]
    assert meta["options"]["complete_only"] is False and meta["complete_classifier"]["threshold"] == 0.5
    # analysis.json's options are the library's defaults, recorded field by field (AnalysisOptions)
    assert meta["options"] == AnalysisOptions().recorded(meta["model"]["threshold"])
    assert set(dist["image"]) == set(names) and set(dist["method"]) == {"clark-evans", "monte-carlo"}
    assert [m["pixel_size_source"] for m in meta["images"]] == ["CZ_SEM"] * 3
    # "auto" is the model's own decoding: the default is a distance U-Net since stop 30
    assert [m["separation"] for m in meta["images"]] == ["distance"] * 3
    # the default's smallest particle (10 px at its 7.34375 nm: 539 nm²) and what it dropped are recorded
    for m in meta["images"]:
        assert m["segmentation"]["min_particle"]["nm2"] == pytest.approx(539.3, abs=0.1)
        assert m["segmentation"]["min_particle"]["dropped"] >= 0
    html = (out / "report.html").read_text(encoding="utf-8")
    first = meta["images"][0]["segmentation"]["min_particle"]["dropped"]
    assert f"{first} under 539.3 nm² (10 px)" in html
    assert meta["model"]["sha256"] == hashlib.sha256(DEFAULT_MODEL.read_bytes()).hexdigest()
    assert meta["failures"] == [] and meta["versions"]["torch"]
    for n, row in zip(names, summary.itertuples()):
        stem = n.rsplit(".", 1)[0]
        mask = tifffile.imread(out / f"{stem}_mask.tif")
        labels = tifffile.imread(out / f"{stem}_labels.tif")
        assert mask.shape == labels.shape == (704, 1024)  # the analysed area, data bar removed
        assert set(np.unique(mask)) <= {0, 255}
        # the mask is the particles: labels > 0
        np.testing.assert_array_equal(mask > 0, labels > 0)
        mine = particles[particles["image"] == n]
        # a Fiji user measuring the mask file (4-connected) gets the particles of particles.csv
        again = measure(mask > 0, pixel_size_m=7.34375e-9, connectivity=4)
        num = [c for c in again.columns if c not in ("image", "label", "unit")]
        assert (mine["unit"] == "nm").all()
        np.testing.assert_allclose(again[num].to_numpy(float), mine[num].to_numpy(float), rtol=1e-12)
        # every label is one row, and the summary agrees with the files it summarises
        assert row.particles == len(mine) == len(np.unique(labels)) - 1 > 20
        # coverage counts the thresholded probability: the particles plus the one-pixel cuts
        # between touching ones (background in the mask file, which is labels > 0)
        cover = 100 * np.count_nonzero(mask) / mask.size
        assert cover <= row.area_coverage_pct < 1.05 * cover
        assert row.ECD_median == pytest.approx(np.median(mine["ECD"]))
        done = mine[mine["complete"]]
        crow = complete_rows[complete_rows["image"] == n].iloc[0]
        assert crow["particles"] == len(done) == meta["images"][names.index(n)]["complete_particles"]
        assert 0 < len(done) < len(mine)
        assert crow["ECD_median"] == pytest.approx(np.median(done["ECD"]))
        assert ((mine["complete_score"] >= 0.5) == mine["complete"]).all()
        assert row.ECD_median_ci_low <= row.ECD_median <= row.ECD_median_ci_high
        assert row.circularity_mean == pytest.approx(mine["Circ."].mean())
        assert row.unit == "nm" and row.pixel_size_nm == pytest.approx(7.34375)
        # ECD in nm: the label's pixel count at 7.34375 nm per pixel bounds it from below
        npx = np.bincount(labels.ravel())[1:]
        assert np.sqrt(4 * npx.max() / np.pi) * 7.34375 <= mine["ECD"].max() * (1 + 1e-9)
        for f in (f"{stem}_overlay.png", f"{stem}_envelopes.png"):
            assert (out / "plots" / f).is_file()

    dom, total, decoded, bad = browser_dom(out / "report.html", tmp_path)
    assert total == 5 + 3 + 3 and decoded == total, bad  # overview + 4 summary plots, 3 envelopes, 3 overlays
    # the whole run pooled: every particle of the three images, as numpy computes it from the CSV
    every = pd.read_csv(out / "particles.csv")
    pooled = table_rows(dom, "pooled-table")
    assert [r[0] for r in pooled] == ["all", "complete"]
    for r, t in zip(pooled, (every, every[every["complete"]])):
        assert [int(r[1]), int(r[2]), r[3]] == [3, len(t), "nm"]
        assert [float(v) for v in r[5:8]] == [float(f"{q:.4g}") for q in np.quantile(t["ECD"], [0.1, 0.5, 0.9])]
    rows = table_rows(dom, "summary-table")
    assert [r[0] for r in rows] == list(both["image"]) and [r[1] for r in rows] == list(both["particles_kind"])
    assert [int(r[2]) for r in rows] == list(both["particles"])
    assert len(table_rows(dom, "distribution-table")) == len(dist)
    assert [r[5] for r in table_rows(dom, "images-table")] == ["CZ_SEM"] * 3


def test_failures_are_reported_and_the_others_go_on(tmp_path, model, crops):
    cal, raw = crops
    bad = tmp_path / "bad.tif"
    bad.write_text("not an image")
    calls = []
    with pytest.warns(ResultWarning, match="particles.csv mixes units: 1 image.s. in nm .areas in nm²., "
                                           "1 image.s. in pixel .areas in pixel²."):
        res = analyze_images([cal, bad, tmp_path / "missing.tif", raw], tmp_path / "out", model=model,
                             n_boot=200, envelope_sims=19, progress=lambda *a: calls.append(a),
                             allow_pixels=True)
    assert calls == [(1, 4, "crop.tif"), (2, 4, "bad.tif"), (3, 4, "missing.tif"), (4, 4, "crop.tif")]
    assert [p for p, _ in res.failures] == [str(bad), str(tmp_path / "missing.tif")]
    assert "not a readable TIFF" in res.failures[0][1] and "file not found" in res.failures[1][1]
    assert not res.ok and len(res.images) == 2
    out = tmp_path / "out"
    # the same name in two folders: the folder tells them apart, the second one's files get a suffix
    assert [m["image"] for m in res.images] == ["cal/crop.tif", "raw/crop.tif"]
    assert list(res.summary["image"]) == ["cal/crop.tif"] * 2 + ["raw/crop.tif"] * 2
    assert (out / "crop_mask.tif").is_file() and (out / "crop_2_labels.tif").is_file()
    assert res.images[1]["files"]["labels"].endswith("crop_2_labels.tif")
    # calibration: ImageJ metadata -> nm; none -> pixels, and both say where it came from
    c, r = res.images
    assert (c["pixel_size_source"], c["unit"]) == ("ImageJ", "nm")
    assert r["pixel_size_m"] is None and r["unit"] == "pixel" and r["pixel_size_source"].startswith("none")
    assert any("lengths in pixels (--allow-pixels)" in n and "no burned-in field width or scale bar" in n
               for n in r["notes"])
    s = res.summary[res.summary["particles_kind"] == "all"]
    assert list(s["unit"]) == ["nm", "pixel"]
    # the same pixels: counts and coverage agree, sizes differ by the pixel size
    assert s["particles"].iloc[0] == s["particles"].iloc[1] > 3
    assert s["area_coverage_pct"].iloc[0] == pytest.approx(s["area_coverage_pct"].iloc[1])
    assert s["ECD_median"].iloc[0] == pytest.approx(s["ECD_median"].iloc[1] * 7.34375)
    # issue 31 round two: particles.csv says each row's unit (was no unit column: nm² and px² mixed)
    particles = pd.read_csv(out / "particles.csv")
    by = {u: particles[particles["unit"] == u] for u in ("nm", "pixel")}
    assert list(by["nm"]["image"].unique()) == ["cal/crop.tif"]
    assert list(by["pixel"]["image"].unique()) == ["raw/crop.tif"]
    np.testing.assert_allclose(by["nm"]["Area"].to_numpy(), by["pixel"]["Area"].to_numpy() * 7.34375 ** 2, rtol=1e-12)
    meta = json.loads((out / "analysis.json").read_text())
    assert len(meta["failures"]) == 2 and meta["options"]["n_boot"] == 200
    assert any("particles.csv mixes units" in w for w in meta["images"][1]["warnings"])
    assert not any("mixes units" in w for w in meta["images"][0]["warnings"])
    page = res.report.read_text(encoding="utf-8")
    assert "particles.csv mixes units" in page
    assert "Images that failed" in page and "bad.tif" in page and "ImageJ" in page
    assert page.count("data:image/png;base64,") == 4 + 2 + 2


def test_cli_analyze_exit_code_1_when_an_image_fails(tmp_path, crops):
    cal, _ = crops
    res = CliRunner().invoke(main, ["analyze", str(cal), str(tmp_path / "missing.tif"),
                                    "--out", str(tmp_path / "o"), "--threads", "1"])
    assert res.exit_code == 1
    assert "Traceback" not in res.output
    assert re.search(r"crop\.tif: \d+ particles, [\d.]+ % area, ECD median [\d.]+ nm \[", res.output)
    assert "(calibration: ImageJ)" in res.output
    assert "missing.tif: file not found" in res.output and "1 of 2 file(s) failed" in res.output
    assert (tmp_path / "o" / "report.html").is_file() and (tmp_path / "o" / "summary.csv").is_file()


def test_an_image_nothing_calibrates_is_refused_unless_pixels_or_a_size_are_asked_for(tmp_path, crops):
    """No metadata and no burned-in bar: no silent pixels; --pixel-size fills the gap, --allow-pixels
    measures in pixels."""
    _, raw = crops
    res = CliRunner().invoke(main, ["analyze", str(raw), "--out", str(tmp_path / "o"), "--threads", "1"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "no pixel size (metadata: no calibration in metadata" in res.output
    assert "give it with --pixel-size (e.g. 7.3nm), or measure in pixels with --allow-pixels" in res.output
    res = CliRunner().invoke(main, ["analyze", str(raw), "--out", str(tmp_path / "g"), "--threads", "1",
                                    "--pixel-size", "5nm"])
    assert res.exit_code == 0, res.output
    assert "(calibration: --pixel-size (the file's metadata has none))" in res.output and " nm [" in res.output
    meta = json.loads((tmp_path / "g" / "analysis.json").read_text())
    assert meta["images"][0]["pixel_size_m"] == pytest.approx(5e-9) and meta["options"]["pixel_size_m"] == 5e-9


def test_pixel_size_overrides_the_files_calibration_and_says_so(tmp_path, crops):
    """``--pixel-size 5nm`` on an image calibrated at 7.34375 nm (issue 31 round two, item 9): the
    run measures at 5 nm (each particle's Area is its pixel count in the written label image times
    25 nm²), and every output names the value it replaced (was: 7.34375 nm used, 5e-09 recorded)."""
    cal, _ = crops
    out = tmp_path / "o"
    res = CliRunner().invoke(main, ["analyze", str(cal), "--out", str(out), "--threads", "1",
                                    "--pixel-size", "5nm", "--method", "clark-evans"])
    assert res.exit_code == 0, res.output
    source = "--pixel-size (overrides the file's 7.34375 nm)"
    assert f"(calibration: {source})" in res.output
    meta = json.loads((out / "analysis.json").read_text())
    (image,) = meta["images"]
    assert image["pixel_size_m"] == 5e-9 == meta["options"]["pixel_size_m"]
    assert image["pixel_size_source"] == source and image["calibration_where"] == "--pixel-size"
    assert any("7.34375 nm (ImageJ) not used" in n for n in image["notes"])
    table = pd.read_csv(out / "particles.csv")
    labels = tifffile.imread(out / "crop_labels.tif")
    # 4-connected particles include their holes (as ImageJ): the filled outline's pixels
    pixels = [int(ndimage.binary_fill_holes(labels == lab).sum()) for lab in table["label"]]
    assert len(table) > 10
    np.testing.assert_allclose(table["Area"], np.array(pixels) * 25.0, rtol=1e-12)
    assert html.escape(source) in (out / "report.html").read_text()


def test_a_rerun_with_other_images_keeps_the_earlier_ones_and_says_so(tmp_path, example_images):
    """``analyze a.tif --out D`` where D holds a three-image run (issue 31 round two, item 11): the
    other images' files stay, byte for byte, listed as kept and left out of this run's tables;
    a.tif's kept result is not printed as if just analysed; a later run uses the kept parts."""
    area = read_sem(example_images[0]).analysed
    src = tmp_path / "sem"
    src.mkdir()
    for name, (r, c) in {"a": (250, 300), "b": (300, 480), "c": (450, 700)}.items():
        tifffile.imwrite(src / f"{name}.tif", area[r:r + 200, c:c + 240], imagej=True,
                         resolution=(1e-9 / PS, 1e-9 / PS), metadata={"unit": "nm"})
    out = tmp_path / "D"
    opts = ["--out", str(out), "--threads", "1", "--method", "clark-evans"]

    def run(*names, extra=()):
        res = CliRunner().invoke(main, ["analyze", *[str(src / n) for n in names], *opts, *extra])
        assert res.exit_code == 0, res.output
        return res.output

    run("a.tif", "b.tif", "c.tif")
    first = pd.read_csv(out / "particles.csv")
    count = {n: int((first["image"] == n).sum()) for n in ("a.tif", "b.tif", "c.tif")}
    assert min(count.values()) > 5, count
    others = [f"{s}_{k}" for s in "bc" for k in ("mask.tif", "labels.tif")] + \
        [f"parts/{s}.{k}" for s in "bc" for k in ("json", "csv")] + ["plots/b_overlay.png"]
    before = {rel: hashlib.sha256((out / rel).read_bytes()).hexdigest() for rel in others}

    text = run("a.tif")
    # nothing of b and c is removed (was: all 9 of their files deleted)
    assert {rel: hashlib.sha256((out / rel).read_bytes()).hexdigest() for rel in others} == before
    assert ("kept 2 image(s) of an earlier run in this folder that are not in this run: b.tif, c.tif "
            "(their parts, masks and labels stay; not in this run's tables)") in text
    (line,) = re.findall(r"a\.tif: \d+ particles.*$", text, flags=re.M)  # after the progress bar
    assert line.endswith("(calibration: ImageJ), kept from an earlier run (same image, model and options), "
                         "not analysed now")  # was: ", 1.3 s", the first run's time
    table = pd.read_csv(out / "particles.csv")
    assert set(table["image"]) == {"a.tif"} and len(table) == count["a.tif"]
    meta = json.loads((out / "analysis.json").read_text())
    assert meta["run"]["kept_other_images"] == ["b.tif", "c.tif"] and meta["run"]["skipped_images"] == ["a.tif"]
    total = re.search(r"in \S+ \((\d+) s\)$", text.strip().splitlines()[-1])
    assert total and int(total.group(1)) == round(meta["seconds"])  # this run's time

    # the kept parts stand for their images in a later run; an option that changes numbers redoes a
    text = run("b.tif", "a.tif")
    assert "skipped 2 image(s)" in text and len(pd.read_csv(out / "particles.csv")) == count["a.tif"] + count["b.tif"]
    text = run("a.tif", extra=["--seed", "1"])
    assert "analysed again: a.tif (its earlier results were made from another image, model or options)" in text
    assert re.search(r"replaced \d+ file\(s\) of the earlier run", text)
    assert all((out / rel).is_file() for rel in others)


def test_size_filter_in_analyze_keeps_imagejs_particles_for_every_number(tmp_path, crops):
    """``analyze --size 5000-Infinity`` (ImageJ's size field, nm² on a calibrated image; item 13): the
    particles are the unfiltered run's with Area >= 5000 nm², and the spatial test and summary
    count only them; options and each image record the text and its pixel bounds."""
    cal, _ = crops
    runs = {}
    for name, extra in (("all", []), ("size", ["--size", "5000-Infinity"])):
        out = tmp_path / name
        res = CliRunner().invoke(main, ["analyze", str(cal), "--out", str(out), "--threads", "1",
                                        "--method", "clark-evans", *extra])
        assert res.exit_code == 0, res.output
        runs[name] = (pd.read_csv(out / "particles.csv"), pd.read_csv(out / "distribution.csv"),
                      pd.read_csv(out / "summary.csv"), json.loads((out / "analysis.json").read_text()))
    (every, _, _, _), (kept, dist, summary, meta) = runs["all"], runs["size"]
    expected = every[every["Area"] >= 5000].reset_index(drop=True)
    assert 0 < len(kept) == len(expected) < len(every)
    for col in ("Area", "X", "Y", "complete_score"):
        np.testing.assert_allclose(kept[col], expected[col], rtol=1e-12)
    assert dist["n"].iloc[0] == len(kept)  # the spatial test's points: the kept particles
    assert summary[summary["particles_kind"] == "all"]["particles"].iloc[0] == len(kept)
    assert meta["options"]["size"] == "5000-Infinity"
    assert meta["images"][0]["size"]["size_min_px"] == pytest.approx(5000 / (PS * 1e9) ** 2, rel=1e-12)
    assert f"within --size 5000-Infinity ({5000 / (PS * 1e9) ** 2:.6g}-Infinity px)" in res.output


def test_cli_analyze_bad_option_is_one_line(tmp_path, crops):
    res = CliRunner().invoke(main, ["analyze", str(crops[0]), "--out", str(tmp_path / "o"),
                                    "--model", str(tmp_path / "nothing.pt")])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "nothing.pt: model file not found" in res.output
    assert not (tmp_path / "o").exists()


def test_bad_options_raise_before_any_work(tmp_path, model, crops):
    for kw, msg in (({"separate": "magic"}, "separate"), ({"backend": "fiji"}, "backend"),
                    ({"connectivity": 6}, "connectivity"), ({"methods": ("ripley",)}, "ripley")):
        with pytest.raises(InputError, match=msg):
            analyze_images([crops[0]], tmp_path / "o", model=model, **kw)
    with pytest.raises(InputError, match="no images"):
        analyze_images([], tmp_path / "o", model=model)
    assert not (tmp_path / "o").exists()


def test_imagej_backend_gives_the_native_numbers(tmp_path, model, crops):
    kw = dict(model=model, n_boot=100, envelope_sims=0, report=False, methods=("clark-evans",))
    nat = analyze_images([crops[0]], tmp_path / "n", backend="native", **kw)
    ij = analyze_images([crops[0]], tmp_path / "i", backend="imagej", **kw)
    assert nat.ok and ij.ok
    cols = ["Area", "Perim.", "Circ.", "Solidity", "Feret", "FeretAngle", "MinFeret", "X", "Y", "ECD"]
    a = nat.particles.sort_values(["Y", "X"])[cols].to_numpy()
    b = ij.particles.sort_values(["Y", "X"])[cols].to_numpy()
    assert a.shape == b.shape and len(a) > 3
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)
    # the same particles, so the same complete scores (ImageJ's rows matched to its own particles)
    np.testing.assert_allclose(nat.particles.sort_values(["Y", "X"])["complete_score"].to_numpy(),
                               ij.particles.sort_values(["Y", "X"])["complete_score"].to_numpy(), rtol=1e-12)
    assert "imagej" in json.loads((tmp_path / "i" / "analysis.json").read_text())["versions"]


def test_labels_to_separated_mask_cuts_touching_labels_only():
    from scipy import ndimage as ndi

    lab = np.zeros((8, 12), np.int32)
    lab[1:5, 1:4] = 3
    lab[1:5, 4:7] = 1   # touches label 3 along a side
    lab[6:8, 9:11] = 7  # alone
    lab[5, 8] = 2       # alone, one pixel
    m4 = labels_to_separated_mask(lab, 4)
    n4 = ndi.label(m4)[1]  # 4-connected components
    assert n4 == 4
    assert m4.sum() == (lab > 0).sum() - 4  # one column of four pixels cut between 1 and 3
    assert m4[6:8, 9:11].all() and m4[5, 8]
    diag = np.zeros((4, 4), np.int32)
    diag[0:2, 0:2], diag[2:4, 2:4] = 1, 2  # corner contact
    assert labels_to_separated_mask(diag, 4).sum() == 8  # 4-connected: already apart
    m8 = labels_to_separated_mask(diag, 8)
    assert ndi.label(m8, structure=np.ones((3, 3)))[1] == 2 and m8.sum() == 7


def test_image_without_particles_gives_a_zero_row_not_a_failure(tmp_path, model):
    blank = tmp_path / "blank.tif"
    tifffile.imwrite(blank, np.full((200, 260), 40, np.uint8))  # flat substrate, nothing on it
    res = analyze_images([blank], tmp_path / "o", model=model, n_boot=50, allow_pixels=True)
    assert res.ok and len(res.particles) == 0
    row = res.summary.iloc[0]
    assert row["particles"] == 0 and row["area_coverage_pct"] == 0.0 and np.isnan(row["ECD_median"])
    assert list(res.summary["particles_kind"]) == ["all", "complete"] and res.summary["particles"].iloc[1] == 0
    assert set(res.distribution["classification"]) == {"too few points"}
    assert res.report.is_file() and (tmp_path / "o" / "summary.csv").is_file()


def test_cli_analyze_complete_only(tmp_path, crops):
    """--complete-only: summary, plots and spatial tests of the complete particles; particles.csv
    keeps every particle."""
    out = tmp_path / "o"
    res = CliRunner().invoke(main, ["analyze", str(crops[0]), "--out", str(out), "--threads", "1",
                                    "--method", "clark-evans", "--complete-only"])
    assert res.exit_code == 0, res.output
    particles = pd.read_csv(out / "particles.csv")
    summary = pd.read_csv(out / "summary.csv")
    dist = pd.read_csv(out / "distribution.csv")
    meta = json.loads((out / "analysis.json").read_text())
    done = particles[particles["complete"]]
    assert 0 < len(done) < len(particles) == meta["images"][0]["particles"]
    assert re.search(rf"crop\.tif: {len(done)} complete particles of {len(particles)}, [\d.]+ % area, "
                     r"ECD median [\d.]+ nm \[", res.output)
    assert list(summary["particles_kind"]) == ["complete"] and summary["particles"].iloc[0] == len(done)
    assert summary["ECD_median"].iloc[0] == pytest.approx(np.median(done["ECD"]))
    assert dist["n"].iloc[0] == len(done)  # the centroids of the complete particles
    assert meta["options"]["complete_only"] is True
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "Complete particles only" in page and "(complete particles only)" in page
