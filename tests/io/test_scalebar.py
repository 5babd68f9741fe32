"""The pixel size read from the burned-in data bar (field width, scale bar) of images without metadata."""

import sys
from pathlib import Path

import numpy as np
import pytest

from tio2fiji.errors import InputError
from tio2fiji.io import read_sem
from tio2fiji.io._scalebar import BurnedInCalibration, read_burned_in_calibration

pytesseract = pytest.importorskip("pytesseract")

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples" / "data" / "SEM").glob("*.tif"))


def _tesseract_installed() -> bool:
    try:
        pytesseract.get_tesseract_version()
    except (pytesseract.TesseractNotFoundError, OSError):
        return False
    return True


needs_tesseract = pytest.mark.skipif(not _tesseract_installed(), reason="tesseract-ocr is not installed")


@pytest.fixture(scope="module")
def readings():
    """For each example image: its metadata pixel size and the readings of its bare pixel array."""
    out = {}
    for path in EXAMPLES:
        sem = read_sem(path)
        out[path.name] = (sem.pixel_size_m, {m: read_burned_in_calibration(sem.data, method=m)
                                             for m in (None, "field width", "scale bar")})
    return out


def test_examples_are_there():
    assert len(EXAMPLES) == 3


@needs_tesseract
@pytest.mark.parametrize("name", [p.name for p in EXAMPLES])
def test_field_width_equals_the_metadata(readings, name):
    truth, found = readings[name]
    for method in (None, "field width"):  # the preferred reading, and the field width alone
        got = found[method]
        assert isinstance(got, BurnedInCalibration)
        assert got.method == "field width"
        # Zeiss prints the field width to 4 digits: 7.520 µm / 1024 columns = 7.34375 nm, exactly
        assert got.pixel_size_m == pytest.approx(truth, rel=0.005)
        assert "7.520" in got.text and "1024 columns" in got.detail
        assert got.bar_length_px is None and got.bar_value_m is None
    assert "scale bar agrees" in found[None].detail


@needs_tesseract
@pytest.mark.parametrize("name", [p.name for p in EXAMPLES])
def test_scale_bar_alone_is_within_its_precision(readings, name):
    truth, found = readings[name]
    got = found["scale bar"]
    assert got is not None and got.method == "scale bar"
    assert got.bar_value_m == pytest.approx(200e-9) and "200" in got.text
    # The Zeiss bar is short: L = 27 px from tick centre to tick centre for 200 nm (27.23 px at
    # 7.34375 nm). Its length measured to +-1 px gives the pixel size to +-1/L = 3.7 %; tick centres
    # measure it to 0.23 px here (+0.87 %), inside the 2 %.
    assert got.bar_length_px == 27
    error = abs(got.pixel_size_m / truth - 1)
    assert error <= 1 / got.bar_length_px
    assert error < 0.02


@needs_tesseract
def test_no_burned_in_text_gives_none():
    sem = read_sem(EXAMPLES[0])
    area = sem.data[: sem.data.shape[0] - sem.data_bar_rows]  # the micrograph alone
    assert read_burned_in_calibration(area) is None
    assert read_burned_in_calibration(area, data_bar_rows=0) is None
    assert read_burned_in_calibration(np.zeros((768, 1024), np.uint8)) is None
    noise = np.random.default_rng(0).integers(0, 256, (300, 400)).astype(np.uint8)
    assert read_burned_in_calibration(noise) is None


@needs_tesseract
def test_field_width_and_bar_that_disagree_give_none():
    """A bar of the wrong length: one of the two readings is wrong, so neither value is given."""
    data = read_sem(EXAMPLES[0]).data.copy()
    bar = data[-64:]
    bar[26:50, 880:940] = 0  # erase the 27 px bar (rows 28-48), keep its "200 nm" label above it
    rows, x0, length = slice(36, 38), 880, 40  # draw a 40 px one: 5 nm per pixel, not 7.34
    bar[rows, x0:x0 + length + 2] = bar.max()
    bar[28:49, x0:x0 + 2] = bar[28:49, x0 + length:x0 + length + 2] = bar.max()
    scale_bar = read_burned_in_calibration(data, method="scale bar")
    assert scale_bar is not None and scale_bar.bar_length_px == length
    assert read_burned_in_calibration(data) is None
    assert read_burned_in_calibration(data, method="field width").pixel_size_m == pytest.approx(7.34375e-9)


@needs_tesseract
def test_scale_bar_drawn_over_the_image():
    """No data bar: a white bar with its label in a bottom corner of the micrograph."""
    from PIL import Image, ImageDraw, ImageFont

    sem = read_sem(EXAMPLES[0])
    picture = Image.fromarray(sem.data[: sem.data.shape[0] - sem.data_bar_rows].copy())
    draw = ImageDraw.Draw(picture)
    draw.rectangle((40, 660, 40 + 68 - 1, 664), fill=255)  # 68 px, 7.35 nm per pixel
    draw.text((40, 634), "500 nm", fill=255, font=ImageFont.load_default(size=20))
    got = read_burned_in_calibration(np.asarray(picture), data_bar_rows=0)
    assert got is not None and got.method == "scale bar"
    assert got.bar_length_px == 68 and got.pixel_size_m == pytest.approx(500e-9 / 68)


def test_missing_tesseract_is_one_clear_line(monkeypatch):
    monkeypatch.setattr(pytesseract.pytesseract, "tesseract_cmd", "/nonexistent/tesseract")
    with pytest.raises(InputError) as err:
        read_burned_in_calibration(read_sem(EXAMPLES[0]).data)
    message = str(err.value)
    assert "\n" not in message and "tesseract-ocr" in message and "apt-get install" in message


def test_missing_pytesseract_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "pytesseract", None)  # import pytesseract raises ImportError
    with pytest.raises(InputError, match="tesseract-ocr") as err:
        read_burned_in_calibration(read_sem(EXAMPLES[0]).data)
    assert "\n" not in str(err.value)


def test_bad_arguments():
    with pytest.raises(InputError, match="method"):
        read_burned_in_calibration(np.zeros((8, 8)), method="magnification")
    with pytest.raises(InputError, match="2-D"):
        read_burned_in_calibration(np.zeros((4, 8, 8)))
    with pytest.raises(InputError, match="data_bar_rows"):
        read_burned_in_calibration(np.arange(64).reshape(8, 8), data_bar_rows=8)


def test_scale_bar_in_a_label_box_of_a_real_tvips_file(tmp_path):
    """HyperSpy's TVIPS test file: a white box with a black "200 nm" bar over the image; its
    metadata says 1.4208 nm per pixel, so the bar's 200 nm are 140.8 px (end caps included)."""
    import zipfile

    import tifffile

    from tio2fiji.io import calibrate_missing

    with zipfile.ZipFile(Path(__file__).parents[1] / "data" / "vendor" / "TVIPS_bin4.zip") as zf:
        zf.extractall(tmp_path)
    sem = read_sem(tmp_path / "TVIPS_bin4.tif")
    assert sem.pixel_size_m == pytest.approx(1.42080e-9, rel=1e-5)
    reading = read_burned_in_calibration(sem.data, data_bar_rows=0)
    assert reading.method == "scale bar" and reading.bar_value_m == pytest.approx(200e-9)
    assert abs(reading.bar_length_px - 140.8) <= 1.0
    assert reading.pixel_size_m == pytest.approx(sem.pixel_size_m, rel=0.01)
    # the same pixels without their metadata: the fallback reads the box
    bare = tmp_path / "bare.tif"
    tifffile.imwrite(bare, sem.data)
    fixed = calibrate_missing(read_sem(bare))
    assert fixed.pixel_size_m == pytest.approx(sem.pixel_size_m, rel=0.01)
    assert "scale bar" in fixed.pixel_size_source
