"""Scale-aware segmentation (issue 28): a model knows its pixel size, calibrated images are brought
to it and their particles back to the image's grid, so the same field at another magnification
gives the same particles in nm."""

from pathlib import Path

import numpy as np
import pytest
import tifffile

from tio2fiji.errors import InputError
from tio2fiji.io import read_sem
from tio2fiji.metrics import ecd_of_labels
from tio2fiji.models import ModelSettings
from tio2fiji.models.checkpoint import TRAINED_PIXEL_SIZE_M, load_model
from tio2fiji.predict import SCALE_RANGE, particles_on_grid, segment, working_scale
from tio2fiji.transforms import resample_image, resample_labels, scaled_shape

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "data" / "SEM" / "1908248.tif"


def test_resample_labels_by_hand():
    lab = np.array([[1, 2], [3, 0]])
    assert np.array_equal(resample_labels(lab, (4, 4)), np.kron(lab, np.ones((2, 2), int)))
    big = np.kron(lab, np.ones((3, 3), int))
    assert np.array_equal(resample_labels(big, (2, 2)), lab)  # the centre pixel of each 3x3 block
    assert scaled_shape((704, 1024), 0.75) == (528, 768)


def test_particles_on_grid_keeps_touching_particles_apart():
    """Two touching 20x10 particles found at twice the image's pixel count come back as two
    particles on the image grid, with a one-pixel line between them."""
    lab = np.zeros((40, 60), np.int32)
    lab[10:30, 10:30], lab[10:30, 30:50] = 1, 2  # touching, at the model's (finer) scale
    prob = (lab > 0).astype(np.float32) * 0.9
    out, p = particles_on_grid(lab, prob, (20, 30), 0.5)
    assert out.max() == 2 and p.shape == (20, 30)
    areas = np.bincount(out.ravel())[1:]
    assert sorted(areas) == [90, 100]  # 10x10 each, one 10-pixel column line cut from the first
    assert not ((out[:, :-1] > 0) & (out[:, 1:] > 0) & (out[:, :-1] != out[:, 1:])).any()


def test_working_scale_says_what_was_done():
    post = ModelSettings(pixel_size_m=7.34375e-9, pixel_size_source="stored")
    assert not working_scale(None, post)["resampled"] and "uncalibrated" in working_scale(None, post)["why"]
    assert not working_scale(7.4e-9, post)["resampled"]  # within 2 %
    s = working_scale(1.4 * 7.34375e-9, post)
    assert s["resampled"] and s["factor"] == pytest.approx(1.4) and "warning" not in s
    assert "warning" not in working_scale(7.34375e-9 / 3, post)  # 3x finer: brought back well
    far = working_scale(7.34375e-9 * (SCALE_RANGE[1] * 1.5), post)
    assert far["resampled"] and "outside the range" in far["warning"]
    assert not working_scale(2 * 7.34375e-9, post, "none")["resampled"]


def test_older_model_files_are_at_the_bam_pixel_size():
    post = load_model("unet-watershed").settings  # written before models knew their scale
    assert post.pixel_size_m == TRAINED_PIXEL_SIZE_M == 7.34375e-9
    assert post.pixel_size_source.startswith("assumed")
    new = load_model("unet-border").settings  # the border U-Net records its training images'
    assert new.pixel_size_m == 7.34375e-9 and new.pixel_size_source == "stored"
    assert 100 < new.train_ecd["d50_nm"] < 300 and new.train_ecd["particles"] > 2000


def _copy(tmp_path, factor):
    """The example's analysed area resampled by ``factor``, with its calibration set accordingly."""
    sem = read_sem(EXAMPLE)
    area = sem.analysed
    img = resample_image(area, scaled_shape(area.shape, factor))
    per_um = factor / (sem.pixel_size_m * 1e6)
    path = tmp_path / f"x{factor:g}.tif"
    tifffile.imwrite(path, img, imagej=True, resolution=(per_um, per_um), metadata={"unit": "micron"})
    return read_sem(path, data_bar_rows=0)


@pytest.fixture(scope="module")
def model():
    return load_model("default")


@pytest.fixture(scope="module")
def native(model, tmp_path_factory):
    sem = _copy(tmp_path_factory.mktemp("native"), 1.0)
    lab = segment(model, sem).labels
    return lab.max(), np.median(ecd_of_labels(lab)) * sem.pixel_size_m


@pytest.mark.parametrize("factor", [1.5, 2.0])
def test_the_same_field_magnified_gives_the_same_particles(model, native, tmp_path, factor):
    """Fails before issue 28 (1.5x: +25 to +44 % particles on the BAM test images, median ECD
    -12 to -17 %): finer pixels are brought back to the model's scale."""
    sem = _copy(tmp_path, factor)
    seg = segment(model, sem)
    assert seg.info["scale"]["resampled"] and seg.info["scale"]["factor"] == pytest.approx(1 / factor, rel=1e-3)
    assert seg.labels.shape == sem.analysed.shape  # particles on the user's own grid
    n, med = seg.labels.max(), np.median(ecd_of_labels(seg.labels)) * sem.pixel_size_m
    assert abs(n / native[0] - 1) < 0.05
    # issue 28's goal for the median ECD (3 %) holds at 1.5x (measured +1.0 %); at 2x this copy
    # misses 2 of the example's 117 particles and its median is +3.5 % off: checked to 4 % here, the
    # goal by the strict xfail below
    assert abs(med / native[1] - 1) < (0.03 if factor == 1.5 else 0.04)
    # without the scale step, the same copy is cut differently (the defect of issue 28)
    raw = segment(model, sem, scale="none").labels
    assert raw.max() > 1.15 * native[0]
    assert native[0] > 80


@pytest.mark.xfail(strict=True, reason="issue 28 not reached: at 2x the example's median ECD is +3.5 % off "
                                       "(goal 3 %); a pass means the goal is met: drop this mark")
def test_the_median_goal_at_2x(model, native, tmp_path):
    sem = _copy(tmp_path, 2.0)
    labels = segment(model, sem).labels
    assert abs(np.median(ecd_of_labels(labels)) * sem.pixel_size_m / native[1] - 1) < 0.03


def test_scale_option_is_checked(model):
    with pytest.raises(InputError, match="scale must be one of"):
        segment(model, np.zeros((64, 64), np.uint8), scale="auto")


def test_info_says_whether_an_image_lies_within_the_models_scales(tmp_path):
    """`tio2fiji info` compares each calibrated image with the bundled models' pixel size without
    loading them: true only while every bundled file is at that size."""
    from click.testing import CliRunner

    from tio2fiji.cli import main
    from tio2fiji.models.checkpoint import BUNDLED

    for name in BUNDLED:
        assert load_model(name).settings.pixel_size_m == TRAINED_PIXEL_SIZE_M, name
    image = np.full((64, 96), 40, np.uint8)
    lines = {}
    for nm in (7.34375, 3 * 7.34375):
        path = tmp_path / f"at_{nm:.3f}.tif"
        tifffile.imwrite(path, image, imagej=True, resolution=(1 / nm, 1 / nm), metadata={"unit": "nm"})
        res = CliRunner().invoke(main, ["info", "--data-bar-rows", "0", str(path)])
        assert res.exit_code == 0, res.output
        lines[nm] = [x for x in res.output.splitlines() if "scale:" in x][0]
    assert "1.00x the bundled models' 7.34375 nm, within the supported range" in lines[7.34375]
    assert "3.00x" in lines[3 * 7.34375] and "warning" in lines[3 * 7.34375]
    assert "outside the range it supports (0.25x-1.5x)" in lines[3 * 7.34375]
