"""Reading SEM images and masks: calibration sources, data bar, palettes, and every bad input."""

import numpy as np
import pytest
import tifffile

from tio2fiji.errors import InputError
from tio2fiji.io import (
    detect_data_bar,
    mask_for_image,
    read_labels,
    read_mask,
    read_mask_or_labels,
    read_sem,
    write_labels,
    write_mask,
)
from tio2fiji.transforms import normalize_for_network


def _scene(h=120, w=160, seed=0, dtype=np.uint8):
    """A noisy gray 'micrograph' with bright blobs and no data bar."""
    rng = np.random.default_rng(seed)
    img = rng.normal(60, 12, (h, w))
    yy, xx = np.mgrid[:h, :w]
    for cy, cx, r in [(30, 40, 10), (80, 100, 14), (60, 20, 6)]:
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] += 120
    top = np.iinfo(dtype).max
    return np.clip(img * (top / 255.0), 1, top).astype(dtype)


def _with_bar(img, rows):
    """Append a Zeiss/FEI-like data bar: black panel with bright text strokes."""
    bar = np.zeros((rows, img.shape[1]), img.dtype)
    bar[rows // 3: rows // 3 + 3, 10:60] = np.iinfo(img.dtype).max
    bar[rows // 2, 80:140:3] = np.iinfo(img.dtype).max
    return np.vstack([img, bar])


# ---------------------------------------------------------------- the real BAM example files


def test_bam_example_calibration_and_bar(example_images):
    for path in example_images:
        sem = read_sem(path)
        assert sem.data.shape == (768, 1024)
        assert sem.original_dtype == np.uint8
        assert sem.pixel_size_source == "CZ_SEM"
        assert sem.pixel_size_m == pytest.approx(7.34375e-9, rel=1e-12)
        assert sem.data_bar_rows == 64 and sem.data_bar_source == "detected"
        assert sem.analysed.shape == (704, 1024)
        assert sem.unit == "nm"


def test_bam_palette_read_as_raw_detector_values(example_images):
    path = example_images[0]
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        raw = page.asarray()
        cmap = page.colormap
    overlay = np.arange(9, 244, 9)
    # the colour map: an identity gray ramp except the 27 overlay entries
    ramp = np.arange(256) * 257
    off = np.flatnonzero(~((cmap == ramp).all(axis=0)))
    assert off.tolist() == overlay.tolist()
    sem = read_sem(path)
    np.testing.assert_array_equal(sem.data, raw)
    # overlay entries live only in the data bar
    assert not np.isin(sem.analysed, overlay).any()
    assert np.isin(sem.data[704:], overlay).any()


# ---------------------------------------------------------------- calibration sources


def test_fei_helios_pixel_width(tmp_path):
    p = tmp_path / "fei.tif"
    ini = "[User]\r\nDate=01/01/2024\r\n[Scan]\r\nPixelWidth=2.5e-09\r\nPixelHeight=2.5e-09\r\n"
    tifffile.imwrite(p, _scene(), extratags=[(34682, "s", 0, ini, True)])
    sem = read_sem(p)
    assert sem.pixel_size_m == pytest.approx(2.5e-9)
    assert sem.pixel_size_source == "FEI_HELIOS"


def test_imagej_description_calibration(tmp_path):
    p = tmp_path / "ij.tif"
    tifffile.imwrite(p, _scene(), imagej=True, resolution=(1 / 0.004, 1 / 0.004), metadata={"unit": "micron"})
    sem = read_sem(p)
    assert sem.pixel_size_m == pytest.approx(4e-9)
    assert sem.pixel_size_source == "ImageJ"


def test_tiff_resolution_in_centimetres(tmp_path):
    p = tmp_path / "res.tif"
    tifffile.imwrite(p, _scene(), resolution=(2e6, 2e6), resolutionunit="CENTIMETER")
    sem = read_sem(p)
    assert sem.pixel_size_m == pytest.approx(0.01 / 2e6)
    assert sem.pixel_size_source == "TIFF XResolution"


def test_screen_dpi_is_not_a_calibration(tmp_path):
    p = tmp_path / "dpi.tif"
    tifffile.imwrite(p, _scene(), resolution=(72, 72), resolutionunit="INCH")
    sem = read_sem(p)
    assert sem.pixel_size_m is None
    assert sem.unit == "pixel"
    assert "72" in sem.pixel_size_source and "not an SEM calibration" in sem.pixel_size_source


def test_uncalibrated_png_says_so(tmp_path):
    from PIL import Image

    p = tmp_path / "plain.png"
    Image.fromarray(_scene()).save(p)
    sem = read_sem(p)
    assert sem.pixel_size_m is None and sem.pixel_size_source.startswith("none")


def test_given_pixel_size_overrides_metadata(example_images):
    sem = read_sem(example_images[0], pixel_size_m=5e-9)  # its CZ_SEM tag says 7.34375 nm
    assert sem.pixel_size_m == 5e-9 and sem.pixel_size_source == "--pixel-size (overrides the file's 7.34375 nm)"
    assert "the file's calibration 7.34375 nm (CZ_SEM) not used" in " ".join(sem.notes)
    same = read_sem(example_images[0], pixel_size_m=7.34375e-9)
    assert same.pixel_size_source == "--pixel-size (equal to the file's 7.34375 nm)"


# ---------------------------------------------------------------- data bar


def test_detects_appended_data_bar(tmp_path):
    img = _with_bar(_scene(h=300), rows=40)
    assert detect_data_bar(img) == 40
    p = tmp_path / "bar.tif"
    tifffile.imwrite(p, img)
    sem = read_sem(p)
    assert sem.data_bar_rows == 40 and sem.analysed.shape == (300, 160)


def test_no_bar_on_plain_image():
    assert detect_data_bar(_scene(h=300)) == 0


def test_dark_particle_free_bottom_is_not_a_bar():
    img = _scene(h=300)
    img[-30:] = np.random.default_rng(3).normal(20, 4, (30, img.shape[1])).clip(1, 255)
    assert detect_data_bar(img) == 0


def test_data_bar_override(example_images):
    sem = read_sem(example_images[0], data_bar_rows=100)
    assert sem.data_bar_rows == 100 and sem.data_bar_source == "given"
    assert sem.analysed.shape == (668, 1024)
    # with part of the bar counted as image, its overlay colours are in the analysed area: refused
    with pytest.raises(InputError, match="data-bar"):
        read_sem(example_images[0], data_bar_rows=10)
    with pytest.raises(InputError, match="does not fit"):
        read_sem(example_images[0], data_bar_rows=768)


# ---------------------------------------------------------------- bit depth and colour


def test_16bit_keeps_full_precision(tmp_path):
    img = _scene(dtype=np.uint16)
    img[0, 0] = 65535
    img[0, 1] = 12345
    p = tmp_path / "deep.tif"
    tifffile.imwrite(p, img)
    sem = read_sem(p)
    assert sem.data.dtype == np.uint16 and sem.original_dtype == np.uint16
    np.testing.assert_array_equal(sem.data, img)
    net = normalize_for_network(sem.data)
    assert net.dtype == np.float32 and net.max() == pytest.approx(1.0) and net[0, 1] == pytest.approx(12345 / 65535)


def test_normalize_12bit_in_16bit_container():
    img = np.array([[0, 4095], [2048, 100]], np.uint16)
    net = normalize_for_network(img)
    assert net[0, 1] == pytest.approx(1.0) and net[1, 0] == pytest.approx(2048 / 4095)


def test_normalize_uint8():
    np.testing.assert_allclose(normalize_for_network(np.array([[0, 255, 51]], np.uint8)), [[0, 1, 0.2]], rtol=1e-6)


@pytest.mark.parametrize("divisor", [1, 255], ids=["float 0-255", "float 0-1"])
def test_float_twin_is_the_same_detector_signal(example_images, tmp_path, divisor):
    """Issue 31 round two: a float32 copy of a bundled image (ImageJ's "32-bit" keeps 0-255; a
    [0, 1] copy is the same signal / 255) has the uint8 twin's data bar (64 rows; the 0-1 copy
    had none: its analysis ran over the bar, 472 particles instead of 131), annotations and,
    after the network's scaling, bit for bit its analysed pixels (the 0-255 copy was min-max
    stretched: 121 particles instead of 131)."""
    for path in example_images:
        data = read_sem(path).data
        twin, flt = tmp_path / "u8.tif", tmp_path / "f32.tif"
        tifffile.imwrite(twin, data, imagej=True)  # the same metadata as the float copy
        tifffile.imwrite(flt, data.astype(np.float32) / np.float32(divisor), imagej=True)
        u8, f32 = read_sem(twin), read_sem(flt)
        assert u8.data_bar_rows == f32.data_bar_rows == 64, (path, f32.data_bar_source)
        assert f32.annotation_source == u8.annotation_source
        np.testing.assert_array_equal(normalize_for_network(f32.analysed), normalize_for_network(u8.analysed))
        assert f32.data.dtype == (np.uint8 if divisor == 1 else np.float32)
        assert any("read as the 8-bit signal" in n or "[0, 1] signal" in n for n in f32.notes)


def test_float_rule_16bit_and_refusals(tmp_path):
    img = _scene(dtype=np.uint16)
    p = tmp_path / "f16.tif"
    tifffile.imwrite(p, img.astype(np.float32))
    sem = read_sem(p)
    assert sem.data.dtype == np.uint16
    np.testing.assert_array_equal(sem.data, img)
    for name, arr, why in [("neg.tif", _scene().astype(np.float32) - 100, "negative values"),
                           ("frac.tif", _scene().astype(np.float32) + 0.5, "fractional values above 1"),
                           ("big.tif", _scene().astype(np.float32) * 1000, "values above 65535")]:
        tifffile.imwrite(tmp_path / name, arr)
        with pytest.raises(InputError, match=rf"{name}: float32 image .*\({why}\).*8- or 16-bit") as err:
            read_sem(tmp_path / name)
        assert "\n" not in str(err.value)


def test_gray_rgb_is_accepted(tmp_path):
    img = _scene()
    p = tmp_path / "rgb_gray.tif"
    tifffile.imwrite(p, np.dstack([img, img, img]), photometric="rgb")
    sem = read_sem(p)
    np.testing.assert_array_equal(sem.data, img)
    assert any("identical channels" in n for n in sem.notes)


def test_colour_rgb_is_refused(tmp_path):
    img = _scene()
    p = tmp_path / "rgb.tif"
    tifffile.imwrite(p, np.dstack([img, img // 2, img]), photometric="rgb")
    with pytest.raises(InputError, match=r"rgb\.tif: colour RGB image"):
        read_sem(p)


# ---------------------------------------------------------------- bad files


def test_missing_file():
    with pytest.raises(InputError, match="nope.tif: file not found"):
        read_sem("nope.tif")


def test_not_an_image(tmp_path):
    p = tmp_path / "notes.tif"
    p.write_text("this is not a TIFF")
    with pytest.raises(InputError, match="notes.tif: not a readable TIFF"):
        read_sem(p)
    q = tmp_path / "notes.txt"
    q.write_text("hello")
    with pytest.raises(InputError, match="notes.txt: not an image"):
        read_sem(q)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.tif"
    p.write_bytes(b"")
    with pytest.raises(InputError, match="empty.tif: file is empty"):
        read_sem(p)


def test_truncated_tiff(tmp_path, example_images):
    data = example_images[0].read_bytes()
    p = tmp_path / "cut.tif"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cut.tif: the TIFF is corrupt or truncated"):
        read_sem(p)


def test_zero_size_image(tmp_path):
    p = tmp_path / "zero.tif"
    with pytest.warns(UserWarning):
        tifffile.imwrite(p, np.zeros((0, 5), np.uint8))
    with pytest.raises(InputError, match="zero.tif: .*zero size"):
        read_sem(p)


def test_multipage_stack_refused_unless_page_given(tmp_path):
    p = tmp_path / "stack.tif"
    stack = np.stack([_scene(seed=1), _scene(seed=2), _scene(seed=3)])
    tifffile.imwrite(p, stack, photometric="minisblack")
    with pytest.raises(InputError, match="stack.tif: multi-page TIFF with 3 full-resolution pages"):
        read_sem(p)
    sem = read_sem(p, page=1)
    np.testing.assert_array_equal(sem.data, stack[1])
    assert "page 1 of 3" in sem.notes[0]
    with pytest.raises(InputError, match="page 5 requested"):
        read_sem(p, page=5)


def test_preview_page_is_skipped(tmp_path):
    p = tmp_path / "preview.tif"
    img = _scene()
    with tifffile.TiffWriter(p) as tw:
        tw.write(img)
        tw.write(img[::4, ::4], subfiletype=1)
    sem = read_sem(p)
    np.testing.assert_array_equal(sem.data, img)
    assert "reduced-resolution" in sem.notes[0]


# ---------------------------------------------------------------- masks


@pytest.mark.parametrize("values,dtype", [((0, 255), np.uint8), ((0, 1), np.uint8), ((0, 1), bool), ((0, 7), np.uint8)])
def test_binary_masks(tmp_path, values, dtype):
    m = np.zeros((20, 30), dtype)
    m[5:9, 3:12] = values[1]
    p = tmp_path / "m.tif"
    tifffile.imwrite(p, m)
    out = read_mask(p)
    assert out.dtype == bool and out.sum() == 36 and out[5, 3]


@pytest.mark.parametrize("how", ["miniswhite", "inverting palette", "inverting palette png"])
def test_masks_are_read_by_their_pixel_values_not_their_display(tmp_path, how):
    """ImageJ keeps the stored values of a min-is-white or inverting-palette mask (checked with
    ImageJ 1.53t: getPixel gives 255 on the particles, the LUT is inverted), so 255 is particle
    here too: 36 px, not the 564 px of the inverted display."""
    m = np.zeros((20, 30), np.uint8)
    m[5:9, 3:12] = 255
    inverting = (np.arange(256)[::-1] * 256).astype(np.uint16)  # ImageJ's white-to-black map
    if how == "miniswhite":
        p = tmp_path / "m.tif"
        tifffile.imwrite(p, m, photometric="miniswhite")
    elif how == "inverting palette":
        p = tmp_path / "m.tif"
        tifffile.imwrite(p, m, photometric="palette", colormap=np.stack([inverting] * 3))
    else:
        from PIL import Image

        p = tmp_path / "m.png"
        im = Image.fromarray(m, mode="P")
        im.putpalette([v for i in range(256) for v in (255 - i,) * 3])
        im.save(p)
    out = read_mask(p)
    assert out.sum() == 36 and out[5, 3]
    np.testing.assert_array_equal(read_mask_or_labels(p), out)
    np.testing.assert_array_equal(read_labels(p) > 0, out)


def test_label_image_mask(tmp_path):
    lab = np.zeros((20, 30), np.uint16)
    lab[1:4, 1:4] = 1
    lab[10:12, 10:20] = 2
    lab[15, 25] = 300
    p = tmp_path / "labels.tif"
    tifffile.imwrite(p, lab)
    assert read_mask(p).sum() == 9 + 20 + 1
    np.testing.assert_array_equal(read_labels(p), lab)


def test_non_binary_gray_mask_is_an_error(tmp_path):
    p = tmp_path / "gray_mask.tif"
    tifffile.imwrite(p, _scene())
    with pytest.raises(InputError, match="gray_mask.tif: mask is not binary"):
        read_mask(p)
    m = read_mask(p, threshold=150)
    assert m.dtype == bool and 0 < m.sum() < m.size


def test_full_mask_is_an_error(tmp_path):
    p = tmp_path / "full.tif"
    tifffile.imwrite(p, np.full((10, 10), 255, np.uint8))
    with pytest.raises(InputError, match="every pixel"):
        read_mask(p)


def test_empty_mask_is_all_false(tmp_path):
    p = tmp_path / "empty_mask.tif"
    tifffile.imwrite(p, np.zeros((10, 10), np.uint8))
    assert not read_mask(p).any()


def test_mask_size_must_match_image(example_images, example_masks, tmp_path):
    sem = read_sem(example_images[0])
    full = read_mask(example_masks[0])
    assert mask_for_image(full, sem).shape == (704, 1024)  # full-frame mask cropped to the analysed area
    assert mask_for_image(full[:704], sem).shape == (704, 1024)
    with pytest.raises(InputError, match="small_m.tif: mask is 1000x704 pixels but the image"):
        mask_for_image(full[:704, :1000], sem, mask_name="small_m.tif")


# ---------------------------------------------------------------- writers


def test_write_mask_roundtrip_with_calibration(tmp_path):
    m = np.zeros((40, 50), bool)
    m[10:20, 5:25] = True
    p = write_mask(tmp_path / "out" / "m.tif", m, pixel_size_m=7.34375e-9)
    raw = tifffile.imread(p)
    assert raw.dtype == np.uint8 and set(np.unique(raw)) == {0, 255}
    sem = read_sem(p)
    assert sem.pixel_size_source == "ImageJ" and sem.pixel_size_m == pytest.approx(7.34375e-9, rel=1e-6)
    np.testing.assert_array_equal(read_mask(p), m)
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_write_labels_uint16_and_uint32(tmp_path):
    lab = np.arange(12, dtype=np.int64).reshape(3, 4)
    p16 = write_labels(tmp_path / "l16.tif", lab, pixel_size_m=5e-9)
    assert tifffile.imread(p16).dtype == np.uint16
    assert read_sem(p16).pixel_size_m == pytest.approx(5e-9, rel=1e-6)
    big = lab * 10000  # beyond uint16
    p32 = write_labels(tmp_path / "l32.tif", big, pixel_size_m=5e-9)
    back = tifffile.imread(p32)
    assert back.dtype == np.uint32
    np.testing.assert_array_equal(back, big)
    assert read_sem(p32).pixel_size_m == pytest.approx(5e-9, rel=1e-6)


def test_parse_length():
    from tio2fiji.io import parse_length

    assert parse_length("7.34375nm") == pytest.approx(7.34375e-9)
    assert parse_length("0.5 um") == pytest.approx(5e-7)
    assert parse_length("2µm") == pytest.approx(2e-6)
    for bad in ("7.3", "nm", "-1nm", "3 parsecs"):
        with pytest.raises(InputError, match="pixel size"):
            parse_length(bad)


def test_parse_length_takes_exactly_its_documented_units(tmp_path):
    # before: "7.3 A" was 7.3e-10 m (Angstrom, a unit the message never listed), "0.0073 Mm" was
    # 7.3e-6 m (megametres read as mm), "7.3 NM" 7.3e-9 m; now each is refused in one line
    from click.testing import CliRunner

    from tio2fiji.cli import main
    from tio2fiji.io import parse_length

    # the documented units, by hand: 7.3 nm written five ways (µ: micro sign and Greek mu)
    for text in ("7.3nm", "7.3 nm", "0.0073um", "0.0073\u00b5m", "0.0073\u03bcm", "7.3e-6 mm", "7.3e-9m"):
        assert parse_length(text) == pytest.approx(7.3e-9, rel=1e-12), text
    for bad in ("7.3 A", "7.3 Å", "7.3 Mm", "0.0073 Mm", "7.3 NM", "7.3 Nm", "0.0073 UM", "7.3 pm",
                "7.3 micron", "7.3e"):
        with pytest.raises(InputError) as err:
            parse_length(bad)
        msg = str(err.value)
        assert "\n" not in msg and repr(bad) in msg and "nm, um, \u00b5m, mm, m (lower case)" in msg, msg
    mask = tmp_path / "m.tif"
    tifffile.imwrite(mask, np.pad(np.full((4, 4), 255, np.uint8), 4))
    res = CliRunner().invoke(main, ["measure", str(mask), "--pixel-size", "7.3 A", "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "unknown unit 'A'; use one of nm, um, \u00b5m, mm, m" in res.output
    assert not (tmp_path / "o" / "particles.csv").exists()


def test_read_pixel_size_without_pixels(example_images, example_masks):
    from tio2fiji.io import read_pixel_size

    assert read_pixel_size(example_images[0]) == (pytest.approx(7.34375e-9), "CZ_SEM")
    ps, source = read_pixel_size(example_masks[0])  # BAM masks carry no calibration
    assert ps is None and source.startswith("none")


def test_atomic_writes_have_normal_permissions(tmp_path):
    import os

    p = write_mask(tmp_path / "perm.tif", np.zeros((4, 4), bool))
    umask = os.umask(0)
    os.umask(umask)
    assert (p.stat().st_mode & 0o777) == (0o666 & ~umask)
