"""Annotations inside the image area are left out of the analysis, not refused and not measured.

Expectations are where the marks were drawn (by PIL, or by the other tool that wrote the file) and
what the images without marks are: the bundled BAM images and HyperSpy's vendor files have none
above their data bars.
"""

import gzip
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageDraw, ImageFont

from tio2fiji.errors import InputError
from tio2fiji.instances import remove_touching
from tio2fiji.io import detect_annotations, read_sem

VENDOR = Path(__file__).parents[1] / "data" / "vendor"


def _draw_label(area, xy=(600, 500), size=20, text="500 nm"):
    """Crisp (not anti-aliased) white text and a 100 x 5 px scale bar under it, as SEM software draws."""
    im = Image.fromarray(area.copy())
    d = ImageDraw.Draw(im)
    d.fontmode = "1"
    d.text(xy, text, fill=255, font=ImageFont.load_default(size=size))
    bar = (xy[0], xy[1] + size + 6, xy[0] + 100, xy[1] + size + 10)
    d.rectangle(bar, fill=255)
    return np.asarray(im), bar


def test_bundled_images_have_no_annotations(example_images):
    for path in example_images:
        sem = read_sem(path)
        assert sem.annotation_mask is None and sem.annotation_source == ""
        assert sem.analysed_pixels == 704 * 1024


@pytest.mark.parametrize("size", [12, 20, 32])
def test_drawn_text_and_scale_bar_are_masked(example_images, size):
    area = np.asarray(read_sem(example_images[0]).analysed)
    drawn, bar = _draw_label(area, size=size)
    painted = drawn != area
    mask, what = detect_annotations(drawn)
    assert not (painted & ~mask).any(), "every drawn pixel is left out"
    assert "1 scale bar" in what and "5 text marks" in what  # 5 0 0 n m
    # the mask stays near the marks: within the label's box widened by the halo
    rows, cols = np.nonzero(mask)
    assert rows.min() >= 500 - 2 and cols.min() >= 600 - 2 and rows.max() <= bar[3] + 2
    assert mask.sum() < 4 * painted.sum()


def test_saturated_particle_and_lone_stroke_are_not_annotations(example_images):
    area = np.asarray(read_sem(example_images[0]).analysed).copy()
    yy, xx = np.mgrid[: area.shape[0], : area.shape[1]]
    area[(yy - 300) ** 2 + (xx - 300) ** 2 <= 15 ** 2] = 255  # a clipped particle
    area[400, 100:160] = 255  # one thin bright line: a rim, not a line of text
    mask, what = detect_annotations(area)
    assert what == "" and not mask.any()


def test_palette_overlay_in_the_image_area_is_masked(tmp_path, example_images):
    with tifffile.TiffFile(example_images[0]) as tif:
        raw = tif.pages[0].asarray().copy()
        cmap = tif.pages[0].colormap
    raw[100:104, 200:260] = 9  # an overlay (red) entry drawn over the micrograph
    p = tmp_path / "overlay.tif"
    tifffile.imwrite(p, raw, photometric="palette", colormap=cmap)
    sem = read_sem(p)
    assert sem.data_bar_rows == 64
    expected = np.zeros(sem.analysed.shape, bool)
    expected[98:106, 198:262] = True  # the marks and a halo of 2 px
    np.testing.assert_array_equal(sem.annotation_mask, expected)
    assert "palette overlay colours (240 px)" in sem.annotation_source
    assert any("512 px" in n and "left out" in n for n in sem.notes)
    assert sem.analysed_pixels == 704 * 1024 - expected.sum()


def test_overlay_reaching_the_bottom_means_the_data_bar_is_too_short(example_images):
    with pytest.raises(InputError, match="data bar is taller than the 10 rows given"):
        read_sem(example_images[0], data_bar_rows=10)


def test_real_label_box_of_a_tvips_image(tmp_path):
    with zipfile.ZipFile(VENDOR / "TVIPS_bin4.zip") as zf:
        zf.extractall(tmp_path)
    sem = read_sem(tmp_path / "TVIPS_bin4.tif")
    # the file's white box with its black frame, bar and "200 nm": rows 967-1023, columns 0-156
    expected = np.zeros(sem.analysed.shape, bool)
    expected[965:, :159] = True
    np.testing.assert_array_equal(sem.annotation_mask, expected)
    assert sem.annotation_source == "burned-in marks: 1 label box(es)"


@pytest.mark.parametrize("name", ["tiff_Zeiss_SEM.zip", "tiff_FEI_Helios.zip"])
def test_real_sem_files_have_no_annotations_above_their_data_bars(tmp_path, name):
    with zipfile.ZipFile(VENDOR / name) as zf:
        zf.extractall(tmp_path)
    for f in sorted(tmp_path.rglob("*.tif")):
        sem = read_sem(f)
        assert sem.annotation_mask is None, (f.name, sem.annotation_source)


def test_jeol_files_have_no_annotations(tmp_path):
    for f in VENDOR.glob("JEOL*.gz"):
        target = tmp_path / f.stem
        with gzip.open(f) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
        assert read_sem(target).annotation_mask is None


def test_remove_touching_by_hand():
    labels = np.zeros((8, 10), np.uint32)
    labels[1:3, 1:3] = 1  # touches the mask diagonally
    labels[1:3, 6:8] = 2  # away from it
    labels[5:7, 1:4] = 3  # overlaps it
    labels[5:7, 7:9] = 4  # away
    mask = np.zeros(labels.shape, bool)
    mask[3, 3] = True
    mask[6, 3:5] = True
    out, scores, removed = remove_touching(labels, mask, scores=np.array([0.1, 0.2, 0.3, 0.4]))
    assert removed == 2
    assert np.unique(out).tolist() == [0, 1, 2]
    assert (out[1:3, 6:8] == 1).all() and (out[5:7, 7:9] == 2).all()
    np.testing.assert_allclose(scores, [0.2, 0.4])
    same, _, none = remove_touching(labels, np.zeros(labels.shape, bool))
    assert none == 0 and same is labels


def test_paint_out_by_hand():
    from tio2fiji.io import paint_out

    area = np.array([[10, 20, 30], [40, 250, 60]], np.uint8)
    mask = area == 250
    out = paint_out(area, mask)
    assert out[1, 1] == 30 and area[1, 1] == 250  # the median of the five others; a copy
    assert paint_out(area, None) is area


def test_analyze_leaves_an_overlay_and_the_particles_beside_it_out(tmp_path, example_images):
    """End to end: the marks get no particle, coverage is over the specimen, the outputs say so."""
    import json

    import pandas as pd
    from scipy import ndimage as ndi

    from tio2fiji.run import analyze_images

    with tifffile.TiffFile(example_images[0]) as tif:
        raw = tif.pages[0].asarray().copy()
        cmap = tif.pages[0].colormap
    raw[300:310, 300:420] = 9  # an overlay entry across particles
    p = tmp_path / "marked.tif"
    tifffile.imwrite(p, raw, photometric="palette", colormap=cmap)
    expected = np.zeros((704, 1024), bool)
    expected[298:312, 298:422] = True  # the marks and a halo of 2 px

    out = tmp_path / "out"
    analyze_images([p], out, methods=("clark-evans",), n_boot=50, envelope_sims=0)
    meta = json.loads((out / "analysis.json").read_text())["images"][0]
    assert meta["annotations"]["source"].startswith("palette overlay colours (1200 px)")
    assert meta["annotations"]["pixels"] == expected.sum() == 1736
    assert meta["annotations"]["particles_removed"] >= 1
    assert meta["analysed_px"] == 704 * 1024 - 1736

    labels = tifffile.imread(out / "marked_labels.tif")
    near = ndi.binary_dilation(expected, np.ones((3, 3), bool))  # touching, diagonals included
    assert not (labels[near] > 0).any()
    mask = tifffile.imread(out / "marked_mask.tif") > 0
    assert not mask[expected].any()
    row = pd.read_csv(out / "summary.csv").iloc[0]
    assert row["area_coverage_pct"] == pytest.approx(100 * meta["foreground_px"] / (704 * 1024 - 1736))
    html = (out / "report.html").read_text()
    assert "Left out (annotations)" in html and "particles beside them dropped" in html
