"""ImageJ ROI sets written by tio2fiji: read back by the real ImageJ (JVM, no mocking) and by us.

Every particle's ROI must cover exactly its pixels in ImageJ (so ImageJ's Area equals the native
measurement), simple particles must be ImageJ's own traced outlines (so ImageJ's perimeter and
Feret of the ROI equal the native ones), and label images must open in ImageJ calibrated.
"""

import re
import zipfile

import numpy as np
import pytest
import roifile
import tifffile
from scipy import ndimage as ndi

from tio2fiji import imagej
from tio2fiji.errors import InputError
from tio2fiji.io import read_mask, read_sem, write_labels
from tio2fiji.particles import _rois as rois
from tio2fiji.particles import label_particles, measure, wand_trace

PIXEL = 7.34375e-9


@pytest.fixture(scope="module")
def ij():
    imagej.start_imagej()
    return imagej


def compact(labels):
    """Labels renumbered 1..n in ascending order of their values (the ROI file's order)."""
    values = np.unique(labels[labels > 0])
    out = np.zeros(labels.shape, np.int32)
    for i, v in enumerate(values, start=1):
        out[labels == v] = i
    return out


def blob_labels(seed, shape=(90, 120), k=30):
    """Touching random blobs with holes, islands in holes, split and diagonal particles."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    labels = np.zeros(shape, np.int32)
    for i in range(1, k + 1):
        cy, cx = rng.uniform(-3, h + 3), rng.uniform(-3, w + 3)
        a, b, t = rng.uniform(1, 14), rng.uniform(1, 10), rng.uniform(0, np.pi)
        u = ((xx - cx) * np.cos(t) + (yy - cy) * np.sin(t)) / a
        v = (-(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)) / b
        labels[u * u + v * v <= 1] = i  # later blobs overwrite: touching particles
        if a > 5 and b > 5 and rng.random() < 0.5:
            hole = (xx - cx) ** 2 + (yy - cy) ** 2 <= rng.uniform(1, 9)
            labels[hole & (labels == i)] = 0
            if rng.random() < 0.5:
                labels[int(np.clip(cy, 0, h - 1)), int(np.clip(cx, 0, w - 1))] = k + i  # island
    labels[(rng.random(shape) < 0.01) & (labels > 0)] = 0  # pinholes, some on outlines
    labels[2, 2] = labels[3, 3] = 5 * k  # diagonal pair: one 8-connected particle
    labels[h - 3, 2] = labels[h - 2, 6] = 5 * k + 1  # one label in two pieces
    # scatter the values: labels need not be consecutive
    return np.where(labels > 0, labels * 7 + 3, 0).astype(np.uint16)


def example_labels():
    out = []
    for name in ("1908248", "1908256"):
        sem = read_sem(f"examples/data/SEM/{name}.tif")
        mask = read_mask(f"examples/data/masks/{name}_m.tif")[: sem.analysed.shape[0]]
        out.append((name, label_particles(mask, connectivity=4)[0], sem.pixel_size_m))
    return out


# --------------------------------------------------------------------------------------------
# Python round trip and file format
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_roi_zip_round_trip_gives_the_labels_back(tmp_path, seed):
    labels = blob_labels(seed)
    path = rois.write_roi_zip(labels, tmp_path / "p.zip")
    back = rois.read_roi_zip(path)
    values = np.unique(labels[labels > 0])
    assert [r.name for r in back] == [f"{v:04d}-label" for v in values]
    assert np.array_equal(rois.rois_to_labels(back, labels.shape), compact(labels))
    kinds = {r.roitype for r in back}
    assert kinds == {roifile.ROI_TYPE.TRACED, roifile.ROI_TYPE.RECT}  # traced and composite


def test_simple_particle_is_imagej_traced_outline():
    labels = np.zeros((12, 14), np.int32)
    labels[2:7, 3:9] = 4
    labels[7, 8] = 4  # a pixel hanging diagonally: still one 8-connected particle
    labels[4, 9] = 4
    (roi,) = rois.label_rois(labels)
    assert roi.roitype == roifile.ROI_TYPE.TRACED and roi.name == "0004-label"
    xs, ys = np.zeros(200, np.int64), np.zeros(200, np.int64)
    n = wand_trace(labels, 4, 3, 2, False, xs, ys)  # ImageJ's wand from the first pixel
    assert np.array_equal(roi.coordinates(), np.stack([xs[:n], ys[:n]], axis=1))
    assert (roi.left, roi.top, roi.right, roi.bottom) == (3, 2, 10, 8)


def test_particle_with_hole_or_pieces_is_composite():
    labels = np.zeros((20, 20), np.int32)
    labels[2:9, 2:9] = 1
    labels[5, 5] = 0  # hole
    labels[12:14, 2:4] = 2
    labels[16:18, 8:10] = 2  # second piece
    a, b = rois.label_rois(labels)
    assert a.composite and b.composite
    loops = rois.roi_polygons(a)
    assert len(loops) == 2  # outline + hole
    area = [0.5 * np.sum(p[:, 0] * np.roll(p[:, 1], -1) - np.roll(p[:, 0], -1) * p[:, 1])
            for p in loops]
    assert sorted(area) == [-1.0, 49.0]  # outer clockwise on screen, hole the other way round


def test_empty_label_image_gives_an_empty_roi_set(tmp_path):
    path = rois.write_roi_zip(np.zeros((5, 5), np.uint16), tmp_path / "none.zip")
    assert zipfile.ZipFile(path).namelist() == []
    assert rois.read_roi_zip(path) == []


def test_write_is_atomic_and_replaces(tmp_path):
    path = tmp_path / "a" / "b.zip"
    rois.write_roi_zip(blob_labels(1), path)
    rois.write_roi_zip(np.pad(np.ones((2, 2), np.uint8), 1), path)
    assert [r.name for r in rois.read_roi_zip(path)] == ["0001-label"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["b.zip"]  # no temporary left


def test_name_format(tmp_path):
    labels = np.zeros((6, 6), np.int32)
    labels[1, 1], labels[4, 4] = 3, 12345
    names = [r.name for r in rois.label_rois(labels, name_format="p{index}-{label}")]
    assert names == ["p1-3", "p2-12345"]
    assert [r.name for r in rois.label_rois(labels)] == ["00003-label", "12345-label"]
    with pytest.raises(InputError, match="name_format"):
        rois.label_rois(labels, name_format="{nope}")
    with pytest.raises(InputError, match="two ROIs"):
        rois.write_roi_zip(labels, tmp_path / "x.zip", name_format="same")


def test_bad_inputs_raise_input_error(tmp_path):
    with pytest.raises(InputError, match=r"\.zip"):
        rois.write_roi_zip(np.ones((3, 3), np.uint8), tmp_path / "x.roi")
    with pytest.raises(InputError, match="integer"):
        rois.write_roi_zip(np.ones((3, 3), np.float32), tmp_path / "x.zip")
    with pytest.raises(InputError, match="negative"):
        rois.write_roi_zip(-np.ones((3, 3), np.int32), tmp_path / "x.zip")
    with pytest.raises(InputError, match="2-D"):
        rois.write_roi_zip(np.ones((2, 3, 3), np.int32), tmp_path / "x.zip")
    with pytest.raises(InputError, match="no such ROI file"):
        rois.read_roi_zip(tmp_path / "missing.zip")
    (tmp_path / "junk.zip").write_text("not a zip")
    with pytest.raises(InputError, match="not a zip"):
        rois.read_roi_zip(tmp_path / "junk.zip")
    with zipfile.ZipFile(tmp_path / "mixed.zip", "w") as zf:
        zf.writestr("notes.txt", "hello")
    with pytest.raises(InputError, match="notes.txt"):
        rois.read_roi_zip(tmp_path / "mixed.zip")


# --------------------------------------------------------------------------------------------
# ImageJ reads them
# --------------------------------------------------------------------------------------------

def imagej_rois(path):
    """The ROIs of a zip as ImageJ decodes them (ij.io.RoiDecoder, as the ROI Manager does)."""
    import jpype

    decoder = jpype.JClass("ij.io.RoiDecoder")
    out = []
    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            raw = np.frombuffer(zf.read(name), np.int8)
            out.append(decoder(jpype.JArray(jpype.JByte)(raw), name).getRoi())
    return out


def roi_mask(roi, shape):
    """Pixels ImageJ counts as inside the ROI, as a full-size boolean image."""
    r = roi.getBounds()
    full = np.zeros(shape, bool)
    mask = roi.getMask()
    if mask is None:  # a rectangle
        full[r.y:r.y + r.height, r.x:r.x + r.width] = True
        return full
    m = np.array(mask.getPixels(), np.int8).reshape(int(mask.getHeight()), int(mask.getWidth())) != 0
    full[r.y:r.y + r.height, r.x:r.x + r.width] = m
    return full


def check_in_imagej(labels, pixel_size_m, path):
    import jpype

    rois.write_roi_zip(labels, path)
    native = measure(labels, pixel_size_m=pixel_size_m).set_index("label").sort_index()
    imp = imagej.to_imageplus(labels > 0, pixel_size_m=pixel_size_m)
    area_flag = jpype.JClass("ij.measure.Measurements").AREA
    ij_rois = imagej_rois(path)
    assert len(ij_rois) == len(native)
    n_traced = 0
    for roi, (value, row) in zip(ij_rois, native.iterrows()):
        assert str(roi.getName()) == f"{value:0{max(4, len(str(native.index.max())))}d}-label"
        assert np.array_equal(roi_mask(roi, labels.shape), labels == value), value
        imp.setRoi(roi)
        assert float(imp.getStatistics(area_flag).area) == pytest.approx(row["Area"], rel=1e-12)
        if int(roi.getType()) == 4:  # Roi.TRACED_ROI: ImageJ's own outline of the particle
            n_traced += 1
            roi.setImage(imp)  # calibrated lengths
            assert float(roi.getLength()) == pytest.approx(row["Perim."], rel=1e-12), value
            feret = roi.getFeretValues()
            assert float(feret[0]) == pytest.approx(row["Feret"], rel=1e-12), value
            assert float(feret[2]) == pytest.approx(row["MinFeret"], rel=1e-12), value
        else:
            assert str(roi.getClass().getSimpleName()) == "ShapeRoi"
    imp.deleteRoi()
    return n_traced


def test_imagej_reads_roi_zip_of_examples(ij, tmp_path):
    for name, labels, pixel_size_m in example_labels():
        n_traced = check_in_imagej(labels, pixel_size_m, tmp_path / f"{name}.zip")
        assert n_traced > 0.9 * labels.max()


@pytest.mark.parametrize("seed", [1, 2])
def test_imagej_reads_roi_zip_of_generated_labels(ij, tmp_path, seed):
    labels = blob_labels(seed)
    n_traced = check_in_imagej(labels, None if seed == 1 else 5e-9, tmp_path / "g.zip")
    assert 0 < n_traced < len(np.unique(labels)) - 1  # both kinds were checked


def test_roi_areas_equal_particle_areas_from_a_mask(ij, tmp_path):
    # the route of `tio2fiji segment --rois`: mask -> 4-connected labels -> ROIs
    rng = np.random.default_rng(3)
    mask = ndi.binary_opening(rng.random((80, 100)) < 0.55)
    labels, n = label_particles(mask, connectivity=4)
    check_in_imagej(labels, PIXEL, tmp_path / "m.zip")


# --------------------------------------------------------------------------------------------
# Label images open in ImageJ calibrated
# --------------------------------------------------------------------------------------------

def open_in_imagej(path):
    import jpype

    imp = jpype.JClass("ij.IJ").openImage(str(path))
    assert imp is not None, path
    return imp


def test_label_image_calibration_reads_back_in_imagej(ij, tmp_path):
    labels = blob_labels(2)
    path = write_labels(tmp_path / "labels.tif", labels, pixel_size_m=PIXEL)
    imp = open_in_imagej(path)
    cal = imp.getCalibration()
    assert int(imp.getBitDepth()) == 16
    assert float(cal.pixelWidth) == pytest.approx(7.34375, rel=1e-12)
    assert float(cal.pixelHeight) == pytest.approx(7.34375, rel=1e-12)
    assert str(cal.getUnit()) == "nm"
    assert np.array_equal(imagej.from_imageplus(imp), labels)


def test_uncalibrated_label_image_opens_in_pixels(ij, tmp_path):
    path = write_labels(tmp_path / "plain.tif", blob_labels(3))
    cal = open_in_imagej(path).getCalibration()
    assert not bool(cal.scaled()) and float(cal.pixelWidth) == 1.0


def test_uint32_label_image_keeps_its_physical_pixel_size_in_imagej(ij, tmp_path):
    labels = np.arange(1, 260 * 260 + 1, dtype=np.uint32).reshape(260, 260)  # > 65535 labels
    path = write_labels(tmp_path / "many.tif", labels, pixel_size_m=PIXEL)
    assert tifffile.imread(path).dtype == np.uint32
    imp = open_in_imagej(path)
    cal = imp.getCalibration()
    assert int(imp.getBitDepth()) == 32  # ImageJ has no 32-bit integers: float, exact here
    unit_m = {"cm": 1e-2, "mm": 1e-3, "micron": 1e-6, "µm": 1e-6, "nm": 1e-9}[str(cal.getUnit())]
    assert float(cal.pixelWidth) * unit_m == pytest.approx(PIXEL, rel=1e-9)
    assert np.array_equal(imagej.from_imageplus(imp).astype(np.int64), labels.astype(np.int64))


def test_names_parse_back_to_label_values(tmp_path):
    labels = blob_labels(4)
    back = rois.read_roi_zip(rois.write_roi_zip(labels, tmp_path / "n.zip"))
    parsed = [int(re.match(r"(\d+)-label$", r.name).group(1)) for r in back]
    assert parsed == sorted(np.unique(labels[labels > 0]).tolist())
