"""Issue 15, cases 1 and 6: which calibration wins, and broken pixel sizes are never numbers.

* A print resolution (dpi, inch or cm units) is never an SEM calibration; the microscope's own tag on
  the paired image beats anything on a mask; ImageJ's calibration beats a TIFF resolution.
* A microscope tag whose pixel size is 0, negative, NaN, infinite or absurd is an error naming the
  file, unless the pixel size is given; nothing is written.
"""

import math

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

from tio2fiji.cli import main
from tio2fiji.errors import InputError
from tio2fiji.io import (
    PIXEL_SIZE_RANGE_M,
    RESOLUTION_MAX_PIXEL_M,
    calibration_rank,
    choose_calibration,
    pixel_size_problem,
    read_mask,
    read_pixel_size,
    read_sem,
)
from tio2fiji.run import load_mask_input, measure_files

CZ_SEM, FEI = 34118, 34682
PS = 5e-9  # the test images' microscope pixel size


def cz_sem_text(pixel_size="7.812500e-010", ap="0.781 nm"):
    """A Zeiss SmartSEM ``CZ_SEM`` payload: unnamed values (the 4th is the pixel size in metres),
    then named entries, as SmartSEM writes them. SmartSEM's pixel size refers to a frame 1024
    pixels wide (the real 512-pixel Zeiss file in tests/data/vendor shows it): 7.8125e-10 m for
    this 160-pixel-wide scene is PS = 5 nm per stored pixel."""
    head = "\r\n".join(["0", "0", "0", pixel_size, "5.000000e+004", "6"])
    return f"{head}\r\nAP_PIXEL_SIZE\r\nPixel Size = {ap}\r\nDP_DETECTOR_TYPE\r\nSignal A = InLens\r\n"


def scene(h=120, w=160):
    """A gray 'micrograph' without a data bar (noise and two bright discs)."""
    rng = np.random.default_rng(0)
    img = rng.normal(60, 10, (h, w))
    yy, xx = np.mgrid[:h, :w]
    img[(yy - 40) ** 2 + (xx - 50) ** 2 < 100] += 120
    img[(yy - 80) ** 2 + (xx - 110) ** 2 < 150] += 120
    return np.clip(img, 1, 255).astype(np.uint8)


def write_sem(path, cz=None, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = [(CZ_SEM, "s", 0, cz, True)] if cz is not None else []
    tifffile.imwrite(path, scene(), extratags=extra, **kw)
    return path


def square_mask(h=120, w=160):
    """One 20×20 particle: area 400 px, ECD = 2·sqrt(400/π) = 22.568 px."""
    m = np.zeros((h, w), np.uint8)
    m[30:50, 60:80] = 255
    return m


ECD_PX = 2 * math.sqrt(400 / math.pi)


# ---------------------------------------------------------------- the plausibility rule


@pytest.mark.parametrize("dpi", [72, 96, 150, 300, 600, 1200, 2400, 9600])
@pytest.mark.parametrize("unit", ["INCH", "CENTIMETER"])
def test_print_resolutions_are_never_a_calibration(tmp_path, dpi, unit):
    per_unit = dpi if unit == "INCH" else dpi / 2.54
    p = tmp_path / "dpi.tif"
    tifffile.imwrite(p, scene(), resolution=(per_unit, per_unit), resolutionunit=unit)
    sem = read_sem(p)
    assert sem.pixel_size_m is None and sem.unit == "pixel"
    assert "not an SEM calibration" in sem.pixel_size_source
    assert f"{per_unit:g} pixels per {'inch' if unit == 'INCH' else 'cm'}" in sem.pixel_size_source


def test_imagej_cm_calibration_from_a_print_resolution_is_refused(tmp_path):
    # ImageJ opens a 300 dpi TIFF as unit=cm with 118.11 px/cm and keeps it when saving
    p = tmp_path / "ij_cm.tif"
    tifffile.imwrite(p, scene(), imagej=True, resolution=(118.11, 118.11), metadata={"unit": "cm"})
    sem = read_sem(p)
    assert sem.pixel_size_m is None and "ImageJ calibration 118.11 pixels per cm ignored" in sem.pixel_size_source


def test_plausible_resolutions_are_kept(tmp_path):
    p = tmp_path / "res.tif"
    tifffile.imwrite(p, scene(), resolution=(2e6, 2e6), resolutionunit="CENTIMETER")  # 5 nm
    assert read_sem(p).pixel_size_m == pytest.approx(5e-9)
    q = tmp_path / "ij_um.tif"  # an ImageJ calibration of 2 µm pixels: explicit, within 1 pm..1 mm
    tifffile.imwrite(q, scene(), imagej=True, resolution=(0.5, 0.5), metadata={"unit": "micron"})
    sem = read_sem(q)
    assert sem.pixel_size_m == pytest.approx(2e-6) and sem.pixel_size_source == "ImageJ"


def test_pixel_size_problem_is_the_one_rule():
    assert PIXEL_SIZE_RANGE_M == (1e-12, 1e-3) and RESOLUTION_MAX_PIXEL_M == 1e-6
    for good in (1e-12, 7.34375e-9, 1e-6, 1e-3):
        assert pixel_size_problem(good) is None
    for bad in (0, -7e-9, math.nan, math.inf, -math.inf, 2e-3, 5e-13, "abc", None):
        assert pixel_size_problem(bad) is not None
    assert pixel_size_problem(0.0254 / 300, "TIFF XResolution").startswith("84.67 µm")
    assert pixel_size_problem(0.0254 / 300, "CZ_SEM") is None  # a microscope may have 85 µm pixels
    assert [calibration_rank(s) for s in ("given", "CZ_SEM", "FEI_SFEG", "ImageJ", "TIFF XResolution",
                                          "none: no calibration")] == [4, 3, 3, 2, 1, 0]


# ---------------------------------------------------------------- mask vs image (measure --images)


def test_300_dpi_mask_with_a_cz_sem_image_measures_in_cz_sem_nm(tmp_path):
    write_sem(tmp_path / "img" / "a.tif", cz=cz_sem_text())
    mask = tmp_path / "masks" / "a_m.tif"
    mask.parent.mkdir()
    tifffile.imwrite(mask, square_mask(), resolution=(300, 300), resolutionunit="INCH")
    # alone, the mask's 300 dpi is no calibration (before: 84.7 µm pixels, ECD 1.9 mm)
    alone = load_mask_input(mask)
    assert alone.pixel_size_m is None and "print/screen resolution" in alone.calibration_source
    item = load_mask_input(mask, images_dir=tmp_path / "img")
    assert item.pixel_size_m == pytest.approx(PS) and item.calibration_source == "CZ_SEM of a.tif"
    res = measure_files([mask], images_dir=tmp_path / "img")
    assert res.tables[0]["ECD"].tolist() == pytest.approx([ECD_PX * 5.0], rel=1e-6)  # 112.84 nm
    # the command says which calibration it used
    out = CliRunner().invoke(main, ["measure", str(mask), "--images", str(tmp_path / "img"),
                                    "--out", str(tmp_path / "o")])
    assert out.exit_code == 0, out.output
    assert "CZ_SEM of a.tif" in out.output


def test_sem_image_saved_at_300_dpi_keeps_its_cz_sem(tmp_path):
    p = write_sem(tmp_path / "a.tif", cz=cz_sem_text(), resolution=(300, 300), resolutionunit="INCH")
    sem = read_sem(p)
    assert sem.pixel_size_m == pytest.approx(PS) and sem.pixel_size_source == "CZ_SEM"


def test_the_microscope_tag_beats_a_plausible_mask_calibration_and_says_so(tmp_path):
    write_sem(tmp_path / "img" / "a.tif", cz=cz_sem_text())
    mask = tmp_path / "a_m.tif"
    tifffile.imwrite(mask, square_mask(), imagej=True, resolution=(0.25, 0.25), metadata={"unit": "nm"})  # 4 nm
    item = load_mask_input(mask, images_dir=tmp_path / "img")
    assert item.pixel_size_m == pytest.approx(PS)
    assert item.calibration_source == "CZ_SEM of a.tif (ImageJ of a_m.tif: 4 nm, not used)"


def test_imagej_on_the_mask_beats_a_tiff_resolution_on_the_image(tmp_path):
    write_sem(tmp_path / "img" / "a.tif", resolution=(2e6, 2e6), resolutionunit="CENTIMETER")  # 5 nm
    mask = tmp_path / "a_m.tif"
    tifffile.imwrite(mask, square_mask(), imagej=True, resolution=(0.25, 0.25), metadata={"unit": "nm"})
    item = load_mask_input(mask, images_dir=tmp_path / "img")
    assert item.pixel_size_m == pytest.approx(4e-9)
    assert item.calibration_source.startswith("ImageJ of a_m.tif (TIFF XResolution of a.tif: 5 nm")


def test_choose_calibration_ties_go_to_the_image():
    assert choose_calibration((5e-9, "ImageJ"), (4e-9, "ImageJ"), "a.tif", "a_m.tif") == (
        5e-9, "ImageJ of a.tif (ImageJ of a_m.tif: 4 nm, not used)")
    assert choose_calibration((None, "none: x"), (None, "none: y"), "a.tif", "a_m.tif") == (None, "none: x of a.tif")


# ---------------------------------------------------------------- case 6: broken microscope tags

BROKEN = [("0", "0.000 nm"), ("-7.343750e-009", "-7.344 nm"), ("nan", "nan nm"), ("inf", "inf nm"),
          ("5.0", "5000000000 nm"), ("1e-15", "0.000001 nm")]


@pytest.mark.parametrize("head,ap", BROKEN)
def test_broken_cz_sem_pixel_size_is_an_error_naming_file_and_remedy(tmp_path, head, ap):
    p = write_sem(tmp_path / "broken.tif", cz=cz_sem_text(head, ap))
    with pytest.raises(InputError, match=r"broken\.tif: the microscope's CZ_SEM tag gives the pixel size") as err:
        read_sem(p)
    assert "not a valid calibration" in str(err.value) and "--pixel-size" in str(err.value)
    assert "\n" not in str(err.value)
    # the remedy works: a given pixel size replaces the broken tag
    sem = read_sem(p, pixel_size_m=7e-9)
    assert sem.pixel_size_m == 7e-9 and sem.pixel_size_source == "--pixel-size (the file's calibration is not valid)"
    # metadata-only readers: strict by default, or the reason instead of a number
    with pytest.raises(InputError, match="CZ_SEM"):
        read_pixel_size(p)
    ps, source = read_pixel_size(p, strict=False)
    assert ps is None and source.startswith("none: the microscope's CZ_SEM tag")


def test_a_valid_named_entry_rescues_a_broken_unnamed_value(tmp_path):
    # "Pixel Size" refers to a 1024-pixel frame, as the unnamed entry: x 1024 / 160 columns
    p = write_sem(tmp_path / "half.tif", cz=cz_sem_text("0", "7.344 nm"))
    sem = read_sem(p)
    assert sem.pixel_size_m == pytest.approx(7.344e-9 * 1024 / 160) and sem.pixel_size_source == "CZ_SEM"


@pytest.mark.parametrize("width", ["0", "-2.5e-09", "nan", "inf", "abc", "3.0"])
def test_broken_fei_pixel_width_is_an_error(tmp_path, width):
    p = tmp_path / "fei.tif"
    ini = f"[User]\r\nDate=01/01/2024\r\n[Scan]\r\nPixelWidth={width}\r\n"
    tifffile.imwrite(p, scene(), extratags=[(FEI, "s", 0, ini, True)])
    with pytest.raises(InputError, match=r"fei\.tif: the microscope's FEI_HELIOS tag"):
        read_sem(p)


def test_a_mask_with_a_broken_tag_still_reads_as_a_mask(tmp_path):
    p = tmp_path / "m.tif"
    tifffile.imwrite(p, square_mask(), extratags=[(CZ_SEM, "s", 0, cz_sem_text("0", "0 nm"), True)])
    assert read_mask(p).sum() == 400
    # measured with a good paired image, the image's tag is used
    write_sem(tmp_path / "img" / "m.tif", cz=cz_sem_text())
    assert load_mask_input(p, images_dir=tmp_path / "img").pixel_size_m == pytest.approx(PS)
    # alone, the broken tag is the error (nothing else calibrates it), unless the size is given
    with pytest.raises(InputError, match="CZ_SEM tag gives the pixel size as 0 m"):
        load_mask_input(p)
    assert load_mask_input(p, pixel_size_m=3e-9).calibration_source == \
        "--pixel-size (the file's calibration is not valid)"


def test_info_does_not_print_a_zero_pixel_size(tmp_path):
    p = write_sem(tmp_path / "zero.tif", cz=cz_sem_text("0", "0.000 nm"))
    res = CliRunner().invoke(main, ["info", str(p)])
    assert res.exit_code == 1
    assert "pixel size 0 nm" not in res.output and "Traceback" not in res.output
    assert f"error: {p}: the microscope's CZ_SEM tag gives the pixel size as 0 m" in res.output


def test_measure_with_images_and_a_broken_image_tag_fails_in_one_line_or_uses_the_given_size(tmp_path):
    write_sem(tmp_path / "img" / "a.tif", cz=cz_sem_text("nan", "nan nm"))
    mask = tmp_path / "a_m.tif"
    tifffile.imwrite(mask, square_mask())
    res = CliRunner().invoke(main, ["measure", str(mask), "--images", str(tmp_path / "img"),
                                    "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "CZ_SEM tag gives the pixel size as nan m" in res.output
    res = CliRunner().invoke(main, ["measure", str(mask), "--images", str(tmp_path / "img"),
                                    "--pixel-size", "5nm", "--out", str(tmp_path / "o2")])
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("how", ["imagej", "resolution"])
def test_non_square_pixels_are_never_squared(tmp_path, how):
    """Issue 31 round two: pixels 5 nm wide and 10 nm high (tifffile's X and Y resolutions; ImageJ
    1.53t opens such a file with pixelWidth 5, pixelHeight 10) were measured as 5 x 5 nm: the
    20x20 particle had 400 x 25 = 10000 nm² where its area is 400 x 5 x 10 = 20000 nm², and
    ``info`` said nothing. Now no source gives such a file a pixel size: info names the two
    sizes, analyze's calibration step refuses it in one line (no burned-in bar squares it), measure
    reports pixels (400 px²), and a given pixel size or --allow-pixels is the user's choice."""
    from tio2fiji.io import NOT_SQUARE, calibrate_missing

    kw = ({"imagej": True, "resolution": (1 / 5, 1 / 10), "metadata": {"unit": "nm"}} if how == "imagej"
          else {"resolution": (1e7 / 5, 1e7 / 10), "resolutionunit": "CENTIMETER"})
    img = write_sem(tmp_path / "img" / "a.tif", **kw)
    mask = tmp_path / "a_m.tif"
    tifffile.imwrite(mask, square_mask(), **kw)
    for path in (img, mask):
        ps, source = read_pixel_size(path)
        assert ps is None and NOT_SQUARE in source and "(5 nm wide, 10 nm high)" in source
    # the same file with square pixels keeps its calibration
    square = tmp_path / "square.tif"
    tifffile.imwrite(square, square_mask(), **{**kw, "resolution": (kw["resolution"][0],) * 2})
    assert read_pixel_size(square)[0] == pytest.approx(PS)

    res = CliRunner().invoke(main, ["info", str(img)])
    assert res.exit_code == 0 and "pixel size none (pixels)" in res.output
    assert f"{NOT_SQUARE} (5 nm wide, 10 nm high)" in res.output
    sem = read_sem(img)  # analyze: read_sem, then calibrate_missing
    with pytest.raises(InputError, match=rf"a\.tif: no pixel size .*{NOT_SQUARE}") as err:
        calibrate_missing(sem)
    assert "\n" not in str(err.value) and "burned-in scale bar is not read" in str(err.value)
    assert calibrate_missing(sem, allow_pixels=True).pixel_size_m is None
    assert calibrate_missing(sem, pixel_size_m=7e-9).pixel_size_m == 7e-9

    res = measure_files([mask], out_dir=tmp_path / "m")
    assert res.tables[0]["Area"].tolist() == [400.0]  # pixels, never 10000 "nm²"
    assert res.inputs[0].pixel_size_m is None and NOT_SQUARE in res.inputs[0].calibration_source
    res = measure_files([mask], out_dir=tmp_path / "m2", images_dir=tmp_path / "img")
    assert res.tables[0]["Area"].tolist() == [400.0]


@pytest.mark.parametrize("text", ["0nm", "1e-20nm", "5m", "2mm"])
def test_given_pixel_sizes_follow_the_same_rule(text):
    from tio2fiji.io import parse_length

    with pytest.raises(InputError, match="pixel size"):
        parse_length(text)


def test_read_sem_refuses_a_broken_given_pixel_size(example_images):
    for bad in (0.0, -1e-9, math.nan, math.inf, 1.0):
        with pytest.raises(InputError, match="given pixel size"):
            read_sem(example_images[0], pixel_size_m=bad)


@pytest.mark.slow
def test_segment_and_analyze_stop_before_writing_a_mask(tmp_path):
    p = write_sem(tmp_path / "zero.tif", cz=cz_sem_text("0", "0.000 nm"))
    for cmd in ("segment", "analyze"):
        out = tmp_path / cmd
        res = CliRunner().invoke(main, [cmd, str(p), "--out", str(out), "--threads", "1"])
        assert res.exit_code == 1 and "Traceback" not in res.output
        assert "CZ_SEM tag gives the pixel size as 0 m" in res.output
        assert not list(out.glob("*_mask.tif")) and not list(out.glob("*_labels.tif"))
