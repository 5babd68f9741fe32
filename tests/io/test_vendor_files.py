"""Calibration of real files from other instruments (tests/data/vendor, HyperSpy's test files):
the pixel size tio2fiji reads equals what HyperSpy's own tests assert for each file, the data bar
is found, and what is not a length (a diffraction pattern, an uncalibrated camera) stays pixels."""

import gzip
import shutil
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from tio2fiji.io import read_pixel_size, read_sem

VENDOR = Path(__file__).parents[1] / "data" / "vendor"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Every shipped file, unpacked: name -> path."""
    out = tmp_path_factory.mktemp("vendor")
    paths = {}
    for f in VENDOR.iterdir():
        if f.suffix == ".zip":
            with zipfile.ZipFile(f) as zf:
                zf.extractall(out)
                for n in zf.namelist():
                    paths[Path(n).name] = out / n
        elif f.suffix == ".gz":
            target = out / f.stem
            with gzip.open(f) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            paths[target.name] = target
        else:
            paths[f.name] = f
    return paths


# file, pixel size (m), relative tolerance, source, data-bar rows (None: not checked)
CALIBRATED = [
    ("test_tiff_Zeiss_SEM_512pix.tif", 11.649976e-9, 1e-6, "CZ_SEM", 33),
    ("test_tiff_Zeiss_SEM_1k.tif", 2.614514e-6, 1e-6, "CZ_SEM", 76),
    ("FEI-Helios-Ebeam-8bits.tif", 3.3724e-6, 1e-5, "FEI_HELIOS", 29),
    ("FEI-Helios-Ebeam-16bits.tif", 3.3724e-6, 1e-5, "FEI_HELIOS", 29),
    ("FEI-Helios-navcam.tif", 0.2640e-3, 1e-4, "FEI_HELIOS", 39),
    ("test_loading_image_saved_with_DM.tif", 0.16867e-6, 1e-4, "DigitalMicrograph", 0),
    ("test_dm_image_um_unit.dm3", 0.16867e-6, 1e-4, "DigitalMicrograph", 0),
    ("test_loading_image_saved_with_imageJ.tif", 0.16867e-6, 1e-4, "ImageJ", 0),
    ("JEOL-SightX-TEM-mag-dummy.tif", 1.8208e-9, 1e-3, "JEOL SightX", None),
    ("TVIPS_bin4.tif", 1.42080e-9, 1e-5, "TVIPS", None),
    ("fei_emd_image.emd", 5.30241e-9, 1e-5, "Velox EMD", 0),
]


@pytest.mark.parametrize("name, ps, rel, source, bar", CALIBRATED, ids=[c[0] for c in CALIBRATED])
def test_pixel_size_is_the_vendors(files, name, ps, rel, source, bar):
    sem = read_sem(files[name])
    assert sem.pixel_size_m == pytest.approx(ps, rel=rel)
    assert sem.pixel_size_source == source and sem.calibration_where
    assert read_pixel_size(files[name]) == (pytest.approx(ps, rel=rel), source)
    if bar is not None:
        assert sem.data_bar_rows == bar, sem.data_bar_source


def test_fei_data_bar_agrees_with_its_recorded_height(files):
    """FEI records the bar's height itself ([PrivateFei] DatabarHeight): 29 and 39 rows; tio2fiji
    takes it from [Image] ResolutionY, another entry."""
    import tifffile

    for name in ("FEI-Helios-Ebeam-8bits.tif", "FEI-Helios-navcam.tif"):
        with tifffile.TiffFile(files[name]) as tif:
            recorded = int(tif.fei_metadata["PrivateFei"]["DatabarHeight"])
        assert read_sem(files[name]).data_bar_rows == recorded


def test_zeiss_512_image_with_an_overlay_data_bar_is_read_not_refused(files):
    sem = read_sem(files["test_tiff_Zeiss_SEM_512pix.tif"])
    assert "overlay colours" in sem.data_bar_source
    assert any("5.965 µm / 512 columns = 11.65 nm agrees" in n for n in sem.notes)
    assert (sem.magnification, sem.beam_energy_kv) == (50000.0, 5.0)


@pytest.mark.parametrize("name, why", [
    ("JEOL-SightX-SAED-dummy.tif", "reciprocal space"),
    ("FEI-Helios-navcam-with-no-IRBeam.tif", "holds no pixel size"),
])
def test_what_is_not_a_length_stays_pixels(files, name, why):
    sem = read_sem(files[name])
    assert sem.pixel_size_m is None and sem.unit == "pixel"
    assert sem.pixel_size_source.startswith("none") and why in sem.pixel_size_source


def test_info_prints_vendor_tag_and_value(files):
    from tio2fiji.cli import main

    res = CliRunner().invoke(main, ["info", str(files["test_tiff_Zeiss_SEM_512pix.tif"]),
                                    str(files["fei_emd_image.emd"])])
    assert res.exit_code == 0, res.output
    assert "pixel size 11.65 nm [CZ_SEM]" in res.output
    assert "calibration: 11.65 nm from Zeiss CZ_SEM tag" in res.output and "(rosettasciio)" in res.output
    assert "pixel size 5.30241 nm [Velox EMD]" in res.output
    assert "instrument: magnification 40000x, beam 200 kV" in res.output
