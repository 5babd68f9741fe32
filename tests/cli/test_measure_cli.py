"""`tio2fiji measure`: files in, particles.csv out, same numbers from both backends."""

import json

import numpy as np
import pandas as pd
import pytest
import tifffile
from click.testing import CliRunner
from test_complete import use_tiny_classifier

from tio2fiji.cli import main
from tio2fiji.io import read_mask
from tio2fiji.particles import measure

PIXEL_NM = 7.34375


@pytest.fixture(autouse=True)
def tiny_classifier(tmp_path, monkeypatch):
    """The complete columns come from a hand-made classifier, not the bundled one's numbers."""
    return use_tiny_classifier(tmp_path, monkeypatch)


def _run(args):
    res = CliRunner().invoke(main, ["measure", *map(str, args)])
    return res


def test_bundled_masks_calibrated_from_their_images(tmp_path, example_masks, example_images):
    out = tmp_path / "out"
    res = _run([*example_masks, "--images", example_images[0].parent, "--out", out])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "particles.csv")
    meta = json.loads((out / "particles.json").read_text())
    for mask_path, info in zip(example_masks, meta["images"]):
        assert info["unit"] == "nm" and info["calibration_source"] == f"CZ_SEM of {mask_path.stem[:-2]}.tif"
        assert info["data_bar_rows"] == 64
        # only the analysed area (above the 64-row data bar) is measured
        # the command's default connectivity is 4 (the BAM masks' convention), not ImageJ's 8
        expected = measure(read_mask(mask_path)[:704], pixel_size_m=PIXEL_NM * 1e-9, connectivity=4)
        rows = table[table["image"] == mask_path.name]
        assert len(rows) == len(expected) == info["particles"]
        np.testing.assert_allclose(rows["Area"].to_numpy(), expected["Area"].to_numpy(), rtol=1e-12)
        assert (rows["BY"] + rows["Height"]).max() <= 704 * PIXEL_NM + 1e-6
    # calibrated areas: pixel count times the pixel area
    n_pixels = sum(int(read_mask(m)[:704].sum()) for m in example_masks)
    assert table["Area"].sum() == pytest.approx(n_pixels * PIXEL_NM ** 2, rel=1e-12)


def test_pixel_size_overrides_the_images_calibration_and_says_so(tmp_path, example_masks, example_images):
    """``--pixel-size 5nm`` beside an image calibrated at 7.34375 nm: areas are pixel counts times
    25 nm², and particles.json names the value it replaced (one rule with analyze, item 9)."""
    out = tmp_path / "out"
    res = _run([example_masks[0], "--images", example_images[0].parent, "--pixel-size", "5nm", "--out", out])
    assert res.exit_code == 0, res.output
    source = "--pixel-size (overrides the file's 7.34375 nm)"
    assert f"calibration: {source})" in res.output
    (info,) = json.loads((out / "particles.json").read_text())["images"]
    assert info["pixel_size_m"] == 5e-9 and info["calibration_source"] == source
    table = pd.read_csv(out / "particles.csv")
    assert table["Area"].sum() == pytest.approx(int(read_mask(example_masks[0])[:704].sum()) * 25.0, rel=1e-12)


@pytest.mark.parametrize("backend", ["native", "imagej"])
def test_size_filter_keeps_the_particles_within_it_with_their_own_scores(tmp_path, example_masks, example_images,
                                                                         backend):
    """``--size 5000-Infinity`` (nm², ImageJ's size field; item 13): exactly the rows of the unfiltered
    run whose Area (holes included, 4-connected) is at least 5000 nm², each with the complete score
    it has there; particles.json records the text and the pixel bound (5000 / 7.34375² px)."""
    runs = {}
    for name, extra in (("all", []), ("size", ["--size", "5000-Infinity"])):
        res = _run([example_masks[0], "--images", example_images[0].parent, "--out", tmp_path / name,
                    "--backend", backend, *extra])
        assert res.exit_code == 0, res.output
        runs[name] = pd.read_csv(tmp_path / name / "particles.csv")
    every, kept = runs["all"], runs["size"]
    expected = every[every["Area"] >= 5000].reset_index(drop=True)
    assert 0 < len(kept) == len(expected) < len(every)
    for col in ("Area", "BX", "BY", "complete_score"):
        np.testing.assert_allclose(kept[col], expected[col], rtol=1e-12)
    assert list(kept["label"]) == list(range(1, len(kept) + 1))  # ImageJ numbers the kept rows
    (info,) = json.loads((tmp_path / "size" / "particles.json").read_text())["images"]
    assert json.loads((tmp_path / "size" / "particles.json").read_text())["options"]["size"] == "5000-Infinity"
    assert info["size"] == {"size": "5000-Infinity", "size_unit": "nm^2",
                            "size_min_px": pytest.approx(5000 / PIXEL_NM ** 2, rel=1e-12), "size_max_px": None}
    assert f"particles of --size 5000-Infinity ({5000 / PIXEL_NM ** 2:.6g}-Infinity px)" in res.output
    bad = _run([example_masks[0], "--size", "500-10", "--out", tmp_path / "bad"])
    assert bad.exit_code == 1 and "--size '500-10': the maximum is below the minimum" in bad.output
    assert not (tmp_path / "bad" / "particles.csv").exists()


def test_imagej_backend_gives_the_same_table(tmp_path, example_masks):
    runs = {}
    for backend in ("native", "imagej"):
        out = tmp_path / backend
        res = _run([*example_masks[:2], "--out", out, "--backend", backend, "--connectivity", "4",
                    "--pixel-size", "7.34375nm"])
        assert res.exit_code == 0, res.output
        runs[backend] = pd.read_csv(out / "particles.csv")
    nat, ij = runs["native"], runs["imagej"]
    assert len(nat) == len(ij) > 100
    # every column, complete_score and complete included: each row is scored as its own particle
    assert {"complete_score", "complete"} <= set(ij.columns) and 0 < ij["complete"].sum() < len(ij)
    num = [c for c in nat.columns if c not in ("image", "touches_edge", "unit")]
    assert (nat["unit"] == "nm").all() and (ij["unit"] == "nm").all()
    np.testing.assert_allclose(nat[num].to_numpy(float), ij[num].to_numpy(float), rtol=1e-6, atol=1e-9)
    meta = json.loads((tmp_path / "imagej" / "particles.json").read_text())
    assert meta["versions"]["imagej"].startswith("1.")
    assert meta["options"]["include_holes"] is True  # forced by 4-connectivity, as ImageJ


@pytest.mark.parametrize("backend", ["native", "imagej"])
def test_every_row_says_its_unit_and_mixed_units_are_a_warning(tmp_path, example_masks, backend):
    """Issue 31 round two: particles.csv had no unit column, so a run over a calibrated mask and an
    uncalibrated one mixed nm² and px² in Area silently. Now each row says its unit, the
    calibrated rows are the pixel counts times 7.34375² nm² (by hand, from the same mask), and the
    mix is a warning line and an entry in particles.json."""
    m = (tifffile.imread(example_masks[0]) > 0).astype(np.uint8) * 255
    cal, raw = tmp_path / "cal_m.tif", tmp_path / "raw_m.tif"
    tifffile.imwrite(cal, m, imagej=True, resolution=(1 / PIXEL_NM, 1 / PIXEL_NM), metadata={"unit": "nm"})
    tifffile.imwrite(raw, m)
    res = _run([cal, raw, "--out", tmp_path / "o", "--backend", backend])
    assert res.exit_code == 0, res.output
    assert res.output.count("warning: particles.csv mixes units: 1 image(s) in nm (areas in nm²), "
                            "1 image(s) in pixel (areas in pixel²)") == 1
    table = pd.read_csv(tmp_path / "o" / "particles.csv")
    nm, px = table[table["image"] == "cal_m.tif"], table[table["image"] == "raw_m.tif"]
    assert set(nm["unit"]) == {"nm"} and set(px["unit"]) == {"pixel"} and len(nm) == len(px) > 50
    assert px["Area"].sum() == int((m > 0).sum())  # no holes with 4-connectivity: every pixel counted
    np.testing.assert_allclose(nm["Area"].to_numpy(), px["Area"].to_numpy() * PIXEL_NM ** 2, rtol=1e-12)
    meta = json.loads((tmp_path / "o" / "particles.json").read_text())
    assert [i["unit"] for i in meta["images"]] == ["nm", "pixel"]
    assert not meta["images"][0]["warnings"]
    assert any("mixes units" in w for w in meta["images"][1]["warnings"])
    # one unit: no warning
    res = _run([cal, "--out", tmp_path / "one", "--backend", backend])
    assert res.exit_code == 0 and "mixes units" not in res.output


def test_label_image_keeps_touching_particles_apart(tmp_path):
    lab = np.zeros((20, 20), np.uint16)
    lab[2:8, 2:6] = 1
    lab[2:8, 6:10] = 2  # touches label 1 along a whole side
    p = tmp_path / "labels.tif"
    tifffile.imwrite(p, lab)
    res = _run([p, "--out", tmp_path / "o"])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(tmp_path / "o" / "particles.csv")
    assert table["Area"].tolist() == [24, 24] and table["label"].tolist() == [1, 2]
    res = _run([p, "--out", tmp_path / "o2", "--backend", "imagej"])
    assert res.exit_code == 1 and "label image" in res.output


def test_empty_mask_gives_header_only(tmp_path):
    p = tmp_path / "empty_m.tif"
    tifffile.imwrite(p, np.zeros((16, 16), np.uint8))
    res = _run([p, "--out", tmp_path / "o"])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(tmp_path / "o" / "particles.csv")
    assert len(table) == 0 and "Feret" in table.columns and "ECD" in table.columns
    assert "complete_score" in table.columns and "complete" in table.columns


def test_bad_inputs_are_reported_and_others_go_on(tmp_path, example_masks):
    gray = tmp_path / "gray_m.tif"
    tifffile.imwrite(gray, np.arange(256, dtype=np.uint8).reshape(16, 16))
    res = _run([gray, example_masks[0], "--out", tmp_path / "o"])
    assert res.exit_code == 1
    assert "gray_m.tif: mask is not binary" in res.output and "Traceback" not in res.output
    assert len(pd.read_csv(tmp_path / "o" / "particles.csv")) > 0  # the good mask was measured
    res = _run([example_masks[0], "--images", tmp_path, "--out", tmp_path / "o2"])
    assert res.exit_code == 1 and "no SEM image with the same name" in res.output
    res = _run([example_masks[0], "--pixel-size", "7", "--out", tmp_path / "o3"])
    assert res.exit_code == 1 and "length unit" in res.output
