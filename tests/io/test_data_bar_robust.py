"""Issue 15, cases 2 and 3: the data bar is found on JPEGs and never invented on bar-less images.

The Zeiss bar of the bundled images is a black panel (rows 712-765) with white and coloured text,
inset in a data zone of 768 / 12 = 64 rows; BAM's masks exclude those 64 rows.
"""

import io
import json

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from PIL import Image

from tio2fiji.cli import main
from tio2fiji.io import detect_data_bar, read_sem


def jpeg_bytes(array, quality):
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def as_jpeg(array, quality=85):
    return np.asarray(Image.open(io.BytesIO(jpeg_bytes(array, quality))))


@pytest.fixture(scope="module")
def frames(example_images):
    """The three bundled frames (768×1024, data bar included)."""
    return [read_sem(p).data for p in example_images]


def scene(h, w=160, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.normal(60, 12, (h, w))
    yy, xx = np.mgrid[:h, :w]
    for cy, cx, r in [(30, 40, 10), (80, 100, 14), (60, 20, 6)]:
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] += 120
    return np.clip(img, 1, 255).astype(np.uint8)


def with_bar(img, rows):
    """A black panel with two white text lines appended under ``img``."""
    bar = np.zeros((rows, img.shape[1]), img.dtype)
    bar[rows // 3: rows // 3 + 3, 10:60] = 255
    bar[rows // 2, 80:140:3] = 255
    return np.vstack([img, bar])


# ---------------------------------------------------------------- case 2: JPEG


@pytest.mark.parametrize("quality", [75, 85, 95])
def test_jpeg_of_a_zeiss_image_keeps_the_64_row_bar(tmp_path, example_images, quality):
    # before: 40 (q 75, 85) or 56 (q 95) rows, the rest of the bar's text measured as particles
    for path in example_images:
        jpg = tmp_path / f"{path.stem}_q{quality}.jpg"
        jpg.write_bytes(jpeg_bytes(read_sem(path).data, quality))
        sem = read_sem(jpg)
        assert sem.pixel_size_m is None  # a JPEG has no CZ_SEM tag: the layout alone gives the zone
        assert (sem.data_bar_rows, sem.data_bar_source) == (64, "detected")
        assert sem.analysed.shape == (704, 1024)


@pytest.mark.parametrize("height", [397, 400, 401, 404])
@pytest.mark.parametrize("quality", [75, 95])
def test_jpeg_of_an_appended_bar_at_any_offset(height, quality):
    # the panel's top edge at every position in an 8-row JPEG block (bars under 15 % of the frame:
    # a taller one is image, MAX_BAR_FRACTION)
    for rows in (30, 40, 56):
        assert detect_data_bar(as_jpeg(with_bar(scene(height), rows), quality)) == rows


def test_png_and_tiff_of_the_same_frame_agree(tmp_path, frames):
    p = tmp_path / "f.png"
    Image.fromarray(frames[1]).save(p)
    t = tmp_path / "f.tif"
    tifffile.imwrite(t, frames[1])
    assert read_sem(p).data_bar_rows == read_sem(t).data_bar_rows == 64


# ---------------------------------------------------------------- case 3: no bar, dark bottom


def _bottoms(area):
    """Bar-less frames whose bottom quarter (176 of 704 rows) is black, uniform or clipped."""
    out = {}
    for name, value in (("black", 0), ("uniform 44", 44), ("white", 255)):
        b = area.copy()
        b[-176:] = value
        out[name] = b
    for cut in (20, 60, 100):  # clipped to black below the cut: only the particles' tops remain
        b = area.copy()
        b[-176:] = np.clip(b[-176:].astype(int) - cut, 0, 255)
        out[f"clipped -{cut}"] = b
    out["clipped frame"] = np.clip(area.astype(int) - 60, 0, 255).astype(np.uint8)
    out["black, JPEG"] = as_jpeg(out["black"], 80)
    return out


def test_bar_less_frames_with_a_dark_bottom_keep_every_row(frames):
    # before: 176 rows (22 % of the particles) cut off the black and clipped ones
    for frame in frames:
        area = frame[:704].copy()
        assert detect_data_bar(area) == 0
        for name, img in _bottoms(area).items():
            assert detect_data_bar(img) == 0, name


def test_natural_images_have_no_bar():
    from skimage import data

    for name in ("camera", "moon", "coins", "page", "text"):
        img = getattr(data, name)()
        assert detect_data_bar(img) == 0, name
        img = img.copy()
        img[-img.shape[0] // 5:] = img.min()
        assert detect_data_bar(img) == 0, f"{name} with a black bottom"


def test_a_black_bottom_written_as_a_file_keeps_its_rows(tmp_path, frames):
    p = tmp_path / "nobar.tif"
    area = frames[0][:704].copy()
    area[-176:] = 0
    tifffile.imwrite(p, area)
    sem = read_sem(p)
    assert (sem.data_bar_rows, sem.data_bar_source) == (0, "none found")
    assert sem.analysed.shape == (704, 1024)


def test_a_real_bar_is_still_found_in_16_bit_and_with_a_dark_image(frames):
    f16 = frames[0].astype(np.uint16) * 257
    assert detect_data_bar(f16) == 64
    assert detect_data_bar(with_bar(scene(300) // 4 + 1, 40)) == 40


def test_text_needs_two_rows_and_a_clean_edge():
    img = scene(300)
    bar = np.zeros((40, img.shape[1]), np.uint8)
    bar[20, 10:150] = 255  # one stroke: a line, not text
    assert detect_data_bar(np.vstack([img, bar])) == 0
    bar = np.zeros((40, img.shape[1]), np.uint8)
    bar[0:3, 10:40] = 255  # ink on the edge: an object cut by the frame, not a panel
    bar[20:23, 10:60] = 255
    assert detect_data_bar(np.vstack([img, bar])) == 0


# ---------------------------------------------------------------- analyze --data-bar-rows


def test_analyze_refuses_a_negative_data_bar_in_one_line(tmp_path, frames):
    p = tmp_path / "a.tif"
    tifffile.imwrite(p, frames[0][:128, :128])
    res = CliRunner().invoke(main, ["analyze", str(p), "--out", str(tmp_path / "o"), "--data-bar-rows", "-1"])
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "--data-bar-rows" in res.output and not (tmp_path / "o").exists()


@pytest.mark.slow
def test_analyze_data_bar_rows_is_used_and_recorded(tmp_path, frames):
    p = tmp_path / "a.tif"
    tifffile.imwrite(p, frames[0][400:528, 300:460])  # 128×160, no bar
    for rows, height in ((None, 128), (0, 128), (28, 100)):
        out = tmp_path / f"o{rows}"
        args = ["analyze", str(p), "--out", str(out), "--threads", "1", "--allow-pixels"]
        args += [] if rows is None else ["--data-bar-rows", str(rows)]
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 0, res.output
        meta = json.loads((out / "analysis.json").read_text())
        assert meta["options"]["data_bar_rows"] == rows
        assert (meta["images"][0]["data_bar_rows"], meta["images"][0]["height"]) == (rows or 0, height)
