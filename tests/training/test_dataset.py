"""Pairs, splits, tiles, the thesis's augmentation, datasets and the COCO export.

Uses the three bundled example pairs (examples/data) and generated arrays only.
"""

import hashlib
import json
import shutil

import numpy as np
import pytest
import tifffile
from conftest import EXAMPLES
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from tio2fiji import training as D
from tio2fiji import transforms as T
from tio2fiji.errors import InputError
from tio2fiji.instances import connected_components
from tio2fiji.io import pair_files
from tio2fiji.training.datasets import resample_mask

# pycocotools' decode trips numpy 2's __array__(copy=...) deprecation; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SEM_DIR = EXAMPLES / "SEM"
MASK_DIR = EXAMPLES / "masks"


# ------------------------------------------------------------------------------------------ pairs


def test_pair_files_on_examples():
    pairs = pair_files(SEM_DIR, MASK_DIR)
    assert [p[0].stem for p in pairs] == ["1908248", "1908252", "1908256"]
    assert all(m.name == f"{i.stem}_m.tif" for i, m in pairs)


def _copy_examples(tmp_path):
    img, msk = tmp_path / "SEM", tmp_path / "masks"
    shutil.copytree(SEM_DIR, img)
    shutil.copytree(MASK_DIR, msk)
    return img, msk


def test_pair_files_reports_unmatched_files(tmp_path):
    img, msk = _copy_examples(tmp_path)
    shutil.copy(msk / "1908248_m.tif", msk / "999_m.tif")
    (img / "1908252.tif").rename(img / "1908252_x.tif")
    with pytest.raises(InputError) as err:
        pair_files(img, msk)
    text = str(err.value)
    assert "999_m.tif" in text and "1908252_m.tif" in text and "1908252_x.tif" in text
    assert len(pair_files(img, msk, strict=False)) == 2


def test_pair_files_reports_size_mismatch(tmp_path):
    img, msk = _copy_examples(tmp_path)
    tifffile.imwrite(msk / "1908256_m.tif", np.zeros((100, 100), np.uint8))
    with pytest.raises(InputError, match="1908256_m.tif is 100x100 pixels but its image"):
        pair_files(img, msk)


# ----------------------------------------------------------------------------------------- splits


def test_make_split_reproducible_disjoint_and_rounded():
    ids = [f"img{k:02d}" for k in range(30)]
    a = D.make_split(ids, seed=3)
    b = D.make_split(list(reversed(ids)), seed=3)  # input order does not matter
    assert a == b
    assert [len(a[k]) for k in ("train", "val", "test")] == [21, 4, 5]
    assert sorted(a["train"] + a["val"] + a["test"]) == ids
    assert D.make_split(ids, seed=4) != a


def test_make_split_counts_and_unused():
    s = D.make_split([str(i) for i in range(10)], counts=(5, 0, 3), seed=0)
    assert [len(s[k]) for k in ("train", "val", "test", "unused")] == [5, 0, 3, 2]
    with pytest.raises(InputError):
        D.make_split(["a", "b"], counts=(2, 1, 0))
    with pytest.raises(InputError):
        D.make_split(["a", "b"], fractions=(0.5, 0.2, 0.2))
    with pytest.raises(InputError):
        D.make_split(["a", "a"])


def test_make_split_small_sets_get_one_of_each():
    s = D.make_split(["a", "b", "c"], seed=0)
    assert [len(s[k]) for k in ("train", "val", "test")] == [1, 1, 1]


def test_write_read_split_roundtrip(tmp_path):
    split = D.make_split([str(i) for i in range(8)], seed=1)
    path = D.write_split(tmp_path / "split.json", split, {"seed": 1, "fractions": [0.7, 0.15, 0.15]})
    got, meta = D.read_split(path)
    assert got == split and meta["seed"] == 1 and meta["fractions"] == [0.7, 0.15, 0.15]
    with pytest.raises(InputError, match="seed"):
        D.write_split(tmp_path / "x.json", split, {})
    with pytest.raises(InputError, match="both"):
        D.write_split(tmp_path / "x.json", {"train": ["a"], "val": ["a"], "test": []}, {"seed": 0})
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(InputError):
        D.read_split(tmp_path / "bad.json")


# ------------------------------------------------------------------------------------------ tiles


def test_tile_positions_cover_the_analysed_area():
    pos = T.tile_positions((704, 1024))  # BAM: 768 rows minus the 64-row data bar
    assert len(pos) == 3 * 4
    assert sorted({y for y, _ in pos}) == [0, 256, 448]  # last row flush with the border
    assert sorted({x for _, x in pos}) == [0, 256, 512, 768]
    covered = np.zeros((704, 1024), bool)
    for y, x in pos:
        covered[y:y + 256, x:x + 256] = True
    assert covered.all()
    assert len(T.tile_positions((512, 512), stride=128)) == 9
    with pytest.raises(InputError):
        T.tile_positions((200, 1024))


# ------------------------------------------------------------------------------------ augmentation


def test_thesis_variants_give_18_tiles_of_which_14_distinct():
    assert len(T.THESIS_VARIANTS) == 18 == 396 // 22
    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, (200, 200)).astype(np.uint8)
    mask = big > 128
    margin = T.context_margin(64, T.THESIS_ANGLES)
    win = T.crop_with_context(big, mask, 60, 60, 64, margin)
    outs = [T.augment_pair(win[0], win[1], f, a, out_size=64, valid=win[2]) for f, a in T.THESIS_VARIANTS]
    assert all(v.all() for _, _, v in outs)  # enough context: no invented pixels at all
    assert len({o[0].tobytes() for o in outs}) == 14  # 4 right-angle variants coincide
    # the v+h flip rotated by 180 degrees is the original tile
    i, m, _ = outs[T.THESIS_VARIANTS.index(("vh", 180))]
    np.testing.assert_array_equal(i, big[60:124, 60:124])
    np.testing.assert_array_equal(m, mask[60:124, 60:124])


def test_generic_rotation_matches_rot90():
    rng = np.random.default_rng(1)
    img = rng.random((12, 9))
    mask = rng.random((12, 9)) > 0.5
    for k in (1, 2, 3):
        i, m, v = T.rotate_pair(img, mask, 90 * k, exact=False)
        np.testing.assert_allclose(i, np.rot90(img, k), atol=1e-12)
        np.testing.assert_array_equal(m, np.rot90(mask, k))
        assert v.all()


@pytest.mark.parametrize("angle", [120, 225])
def test_non_right_rotation_invents_no_mask(angle):
    # an all-particle tile without context: corners have no source data
    img = np.full((64, 64), 200, np.uint8)
    mask = np.ones((64, 64), bool)
    i, m, v = T.augment_pair(img, mask, "h", angle)
    assert m.dtype == bool
    assert not v.all() and v.mean() > 0.5
    assert not (m & ~v).any()  # no particle where the source had no data
    assert m[v].all()  # and no background invented inside the data either
    assert (i[~v] == 0).all() and (i[v] == 200).all()
    # an empty mask stays empty
    _, m0, _ = T.augment_pair(img, np.zeros((64, 64), bool), "v", angle)
    assert not m0.any()


def test_rotation_mask_stays_aligned_with_image():
    # image and mask built from one label image: after any variant the mask must still be
    # exactly where the image is bright (nearest-neighbour mask vs bilinear image, same geometry)
    lab = np.zeros((160, 160), np.int32)
    lab[40:70, 50:90] = 1
    lab[95:120, 60:75] = 2
    img = np.where(lab > 0, 250, 10).astype(np.uint8)
    margin = T.context_margin(64, T.THESIS_ANGLES)
    win = T.crop_with_context(img, lab > 0, 48, 48, 64, margin)
    for f, a in T.THESIS_VARIANTS:
        i, m, v = T.augment_pair(win[0], win[1], f, a, out_size=64, valid=win[2])
        assert v.all()
        assert (i[m] > 128).mean() > 0.97 and (i[~m] < 128).mean() > 0.97, (f, a)


def test_context_size_does_not_change_the_tile():
    rng = np.random.default_rng(2)
    big = rng.random((300, 300))
    mask = big > 0.5
    m1 = T.context_margin(64, [225])
    a = T.crop_with_context(big, mask, 100, 110, 64, m1)
    b = T.crop_with_context(big, mask, 100, 110, 64, m1 + 20)
    ra = T.augment_pair(a[0], a[1], "v", 225, out_size=64, valid=a[2])
    rb = T.augment_pair(b[0], b[1], "v", 225, out_size=64, valid=b[2])
    np.testing.assert_allclose(ra[0], rb[0], atol=1e-9)
    np.testing.assert_array_equal(ra[1], rb[1])


def test_crop_with_context_marks_outside_pixels():
    img = np.ones((10, 10))
    i, m, v = T.crop_with_context(img, img > 0, 0, 0, 6, 3)
    assert i.shape == (12, 12) and not v[:3].any() and v[3:13, 3:13].all()
    assert not (m & ~v).any()


def test_gaussian_blur_kernel_and_photometric_probability():
    delta = np.zeros((5, 5))
    delta[2, 2] = 1.0
    b = T.gaussian_blur(delta, sigma=1.0, kernel=3)
    w = np.exp(-0.5)
    assert b[2, 2] == pytest.approx(1 / (1 + 2 * w) ** 2)
    assert b[1, 2] == pytest.approx(w / (1 + 2 * w) ** 2)
    assert b.sum() == pytest.approx(1.0)
    img = np.full((8, 8), 0.5, np.float32)
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(T.photometric(img, rng, p=0.0), img)
    out = T.photometric(img, rng, p=1.0)
    factor = out[4, 4] / 0.5  # a flat image: blur keeps the brightened value
    assert 0.9 <= factor <= 1.32
    applied = sum(not np.array_equal(T.photometric(img, np.random.default_rng(s)), img)
                  for s in range(400))
    assert 0.3 < applied / 400 < 0.5  # p = 0.4


# -------------------------------------------------------------------------------------- datasets


@pytest.fixture(scope="module")
def samples():
    return D.load_samples(pair_files(SEM_DIR, MASK_DIR))


def test_load_samples_drop_the_data_bar(samples):
    assert all(s.image.shape == (704, 1024) and s.mask.shape == (704, 1024) for s in samples)
    assert all(s.image.dtype == np.float32 and 0 <= s.image.min() and s.image.max() <= 1 for s in samples)


def test_random_crop_dataset_is_seeded(samples):
    ds = D.RandomCropDataset(samples, seed=5)
    assert len(ds) == 3 * 2 * 4
    a = ds.item_arrays(3)
    b = D.RandomCropDataset(samples, seed=5).item_arrays(3)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[3] == b[3]
    ds.set_epoch(1)
    c = ds.item_arrays(3)
    assert a[3] != c[3] or not np.array_equal(a[0], c[0])
    img, msk, val = ds[0]
    assert tuple(img.shape) == tuple(msk.shape) == tuple(val.shape) == (1, 256, 256)
    assert set(np.unique(msk.numpy())) <= {0.0, 1.0}
    # crops are placed so that rotations use real pixels only
    assert all(ds.item_arrays(i)[2].all() for i in range(len(ds)))


def test_random_crop_dataset_mask_is_the_geometric_crop(samples):
    # without photometric augmentation the item is reproducible from its recipe
    ds = D.RandomCropDataset(samples, seed=2, photometric_p=0.0)
    for i in range(6):
        img, msk, val, r = ds.item_arrays(i)
        s = next(x for x in samples if x.name == r["name"])
        margin = T.context_margin(256, [r["angle"]])
        win = T.crop_with_context(s.image, s.mask, r["y"], r["x"], 256, margin)
        ei, em, _ = T.augment_pair(win[0], win[1], r["flip"], r["angle"], out_size=256, valid=win[2])
        np.testing.assert_array_equal(msk, em)
        np.testing.assert_allclose(img, ei, atol=1e-6)


def test_coarsen_keeps_broad_shapes_and_removes_pixel_detail():
    """A disc of radius 30 on a one-pixel checkerboard of amplitude 0.1: coarsened 2x (down, then up
    again, cubic both ways) the checkerboard averages out (cubic samples half-way between pixels
    weigh both alike) while the disc keeps its area (pi r^2 within 2 %); factor 1 is the image."""
    yy, xx = np.mgrid[:128, :128]
    disc = (yy - 63.5) ** 2 + (xx - 63.5) ** 2 <= 30 ** 2
    img = (0.45 + 0.1 * ((yy + xx) % 2) + 0.3 * disc).astype(np.float32)
    assert T.coarsen(img, 1.0) is img
    out = T.coarsen(img, 2.0)
    assert out.shape == img.shape and out.dtype == np.float32
    flat = out[:20, :20]  # background far from the disc: the checkerboard is gone
    assert flat.std() < 0.01 * img[:20, :20].std() + 1e-3 and abs(flat.mean() - 0.5) < 0.01
    assert abs((out > 0.65).sum() / (np.pi * 30 ** 2) - 1) < 0.02
    with pytest.raises(InputError, match="at least 1"):
        T.coarsen(img, 0.5)


def test_resample_mask_keeps_touching_particles_apart():
    """Two 15x15 squares with a one-pixel gap, shrunk to half: nearest-pixel sampling loses the gap
    (one particle), resample_mask redraws it (two); label images are sampled as they are."""
    m = np.zeros((40, 40), bool)
    m[5:20, 5:20] = True
    m[5:20, 21:35] = True
    assert connected_components(T.resample_labels(m, (20, 20)), 4).max() == 1
    half = resample_mask(m, (20, 20))
    assert half.dtype == bool and connected_components(half, 4).max() == 2
    # by hand: rows 5..19 sampled at odd rows (8), columns 8 and 7 -> 64 + 56 pixels, now adjacent
    # (columns 19 and 21 are output columns 9 and 10), less one gap column of 8 pixels
    assert half.sum() == 8 * 8 + 8 * 7 - 8
    lab = connected_components(m, 4).astype(np.uint16)
    assert np.array_equal(resample_mask(lab, (20, 20)), T.resample_labels(lab, (20, 20)))


def _disc_sample(radius=10):
    """A 704x1024 image of discs (value 1 on 0.2) on a 40-px grid, with their labels."""
    from tio2fiji.training.datasets import Sample

    yy, xx = np.mgrid[:704, :1024]
    cy, cx = (yy % 40) - 19.5, (xx % 40) - 19.5
    inside = cy ** 2 + cx ** 2 <= radius ** 2
    labels = np.where(inside, 1 + (yy // 40) * 26 + xx // 40, 0).astype(np.uint16)
    return Sample("discs", np.where(inside, 1.0, 0.2).astype(np.float32), labels)


@pytest.mark.parametrize("zoom", [0.75, 1.5])
def test_zoomed_crops_scale_the_particles(zoom):
    """zoom z on every crop: the whole particles of a crop have z^2 times the area of the
    unzoomed ones, and image and labels stay aligned."""
    sample = _disc_sample()
    plain = D.RandomCropDataset([sample], seed=1, length=4, variants=((None, 0),), photometric_p=0.0)
    zoomed = D.RandomCropDataset([sample], seed=1, length=4, variants=((None, 0),), photometric_p=0.0,
                                 zoom=(zoom, zoom), zoom_p=1.0)

    def median_area(ds):
        areas = []
        for i in range(len(ds)):
            img, lab, val, r = ds.item_arrays(i)
            assert img.shape == lab.shape == (256, 256) and val.all()
            assert img[lab > 0].mean() > 0.95 and img[lab == 0].mean() < 0.3
            inner = np.setdiff1d(np.unique(lab[2:-2, 2:-2]), np.unique(np.r_[lab[:2].ravel(), lab[-2:].ravel(),
                                                                             lab[:, :2].ravel(), lab[:, -2:].ravel()]))
            areas += [int((lab == k).sum()) for k in inner if k]
        return np.median(areas), r

    a0, r0 = median_area(plain)
    a1, r1 = median_area(zoomed)
    assert r0["zoom"] == 1.0 and r1["zoom"] == pytest.approx(zoom)
    assert abs(a0 / (np.pi * 10 ** 2) - 1) < 0.05
    assert abs(a1 / a0 / zoom ** 2 - 1) < 0.06


def test_coarsened_crops_keep_their_masks_and_scale_augmentation_is_off_by_default(samples):
    """Coarsening touches the image only (the same crops, masks identical); with both scale
    augmentations off (the default) the items are those of a dataset that has none."""
    base = D.RandomCropDataset(samples, seed=3, length=4)
    off = D.RandomCropDataset(samples, seed=3, length=4, zoom=(0.8, 1.2), zoom_p=0.0, coarsen_max=2.0)
    coarse = D.RandomCropDataset(samples, seed=3, length=4, coarsen_max=2.0, coarsen_p=1.0)
    for i in range(4):
        a, b, c = base.item_arrays(i), off.item_arrays(i), coarse.item_arrays(i)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[3] == b[3]
        assert np.array_equal(a[1], c[1]) and 1.0 <= c[3]["coarsen"] <= 2.0
        # less fine detail: the coarsened image's pixel-to-pixel differences are smaller
        assert np.abs(np.diff(c[0], axis=1)).mean() < np.abs(np.diff(a[0], axis=1)).mean()
    with pytest.raises(InputError, match="scale augmentation"):
        D.RandomCropDataset(samples, zoom=(1.5, 1.2), zoom_p=0.5)


def test_full_tile_dataset(samples):
    ds = D.FullTileDataset(samples)
    assert len(ds) == 3 * 12
    img, msk, val = ds.item_arrays(len(ds) - 1)
    np.testing.assert_array_equal(msk, samples[2].mask[448:, 768:])
    assert val.all()


# ----------------------------------------------------------------------------------------- COCO


def test_coco_from_masks_one_annotation_per_4_connected_particle(tmp_path):
    m = np.zeros((20, 20), np.uint8)
    m[2:6, 2:6] = 255
    m[6:9, 6:9] = 255  # touches the first only diagonally
    m[12:18, 1:4] = 255
    coco, problems = D.coco_from_masks([m], names=["a"])
    assert problems == []
    assert len(coco["annotations"]) == 3
    assert len(D.coco_from_masks([m], connectivity=8)[0]["annotations"]) == 2
    ann = coco["annotations"][0]
    assert ann["iscrowd"] == 0 and ann["category_id"] == 1 and isinstance(ann["segmentation"]["counts"], str)
    assert ann["bbox"] == [2.0, 2.0, 4.0, 4.0] and ann["area"] == 16
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(coco))
    c = COCO(str(path))
    assert c.loadCats(c.getCatIds())[0]["name"] == "particle"
    decoded = sum(c.annToMask(a) for a in c.loadAnns(c.getAnnIds()))
    np.testing.assert_array_equal(decoded > 0, m > 0)


def test_coco_from_masks_reports_bad_masks():
    good = np.zeros((10, 10), bool)
    good[2:4, 2:4] = True
    gray = np.arange(100).reshape(10, 10)
    empty = np.zeros((10, 10), np.uint8)
    small = np.zeros((5, 5), bool)
    coco, problems = D.coco_from_masks([good, gray, empty, small], names=list("abcd"),
                                       shapes=[(10, 10)] * 4)
    kinds = {p["name"]: p["problem"] for p in problems}
    assert kinds == {"b": "non-binary", "c": "empty", "d": "size mismatch"}
    assert [im["file_name"] for im in coco["images"]] == ["a.png", "c.png"]  # empty kept, bad left out
    assert len(coco["annotations"]) == 1


# ------------------------------------------------------------------------------------------ build


def _digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != "split.json":
            h.update(p.relative_to(folder).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def thesis_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("thesis")
    calls = []
    res = D.build_dataset(SEM_DIR, MASK_DIR, out, mode="thesis", seed=1, n_source=2, n_test=1,
                          n_val=4, progress=lambda d, t, name: calls.append((d, t, name)))
    return res, out, calls


def test_build_thesis_mode_counts_and_files(thesis_build):
    res, out, calls = thesis_build
    assert res.counts() == {"train": 2 * 18 - 4, "val": 4, "test": 1}
    assert [c[:2] for c in calls] == [(k, 37) for k in range(1, 38)] and len(calls) == 37
    assert [c[2] for c in calls] == list(res.tiles["name"])  # each tile's name as it is written
    split, meta = D.read_split(out / "split.json")
    assert meta["mode"] == "thesis" and meta["seed"] == 1
    assert len(split["train"]) == 2 and len(split["test"]) == 1 and "unused" not in split
    assert set(split["test"]).isdisjoint(split["train"])
    assert meta["tile_counts"] == {"train": 32, "val": 4, "test": 1}
    for row in res.tiles.itertuples():
        assert (out / row.image).is_file() and (out / row.mask).is_file()
    assert (res.tiles["valid"] == "").all()  # the examples leave room for every rotation
    assert not list(out.rglob("*.tmp"))


def test_build_thesis_mode_coco_loads_and_matches_tiles(thesis_build):
    res, out, _ = thesis_build
    c = COCO(str(res.coco_path))
    assert len(c.imgs) == 37 and len(c.anns) == res.n_particles == res.tiles["n_particles"].sum()
    from PIL import Image

    row = res.tiles.iloc[7]
    img_id = next(i for i, im in c.imgs.items() if im["file_name"] == row["image"])
    mask = np.asarray(Image.open(out / row["mask"])) > 0
    anns = c.loadAnns(c.getAnnIds(imgIds=[img_id]))
    assert len(anns) == connected_components(mask, 4).max()
    rebuilt = np.zeros_like(mask)
    for a in anns:
        rebuilt |= mask_utils.decode(a["segmentation"]) > 0
    np.testing.assert_array_equal(rebuilt, mask)


def test_build_is_reproducible_from_the_seed(thesis_build, tmp_path):
    res, out, _ = thesis_build
    D.build_dataset(SEM_DIR, MASK_DIR, tmp_path / "again", mode="thesis", seed=1, n_source=2,
                    n_test=1, n_val=4)
    assert _digest(out) == _digest(tmp_path / "again")
    assert D.read_split(out / "split.json")[0] == D.read_split(tmp_path / "again" / "split.json")[0]


def test_thesis_datasets_from_disk(thesis_build):
    _, out, _ = thesis_build
    train, val = D.training_datasets(out, seed=0)
    assert (len(train), len(val)) == (32, 4)
    img, msk, valid = train[0]
    assert tuple(img.shape) == (1, 256, 256) and float(img.max()) <= 1.0
    assert valid.min() == 1


def test_thesis_val_grouping_by_source(tmp_path):
    res = D.build_dataset(SEM_DIR, MASK_DIR, tmp_path, mode="thesis", seed=0, n_source=2, n_test=1,
                          n_val=4, val_grouping="source", fmt="tif")
    val = res.tiles[res.tiles["split"] == "val"]
    assert len(val) == 18 and val["source"].nunique() == 1
    assert val["source"].iloc[0] not in set(res.tiles.loc[res.tiles["split"] == "train", "source"])
    img, msk, valid = D.TileDataset(tmp_path, "val").item_arrays(0)  # TIFF tiles read back
    assert img.shape == (256, 256) and msk.dtype == bool and valid.all()


def test_thesis_mode_needs_enough_images(tmp_path):
    with pytest.raises(InputError, match="22 source"):
        D.build_dataset(SEM_DIR, MASK_DIR, tmp_path, mode="thesis")


def test_build_practical_mode(tmp_path):
    res = D.build_dataset(SEM_DIR, MASK_DIR, tmp_path, mode="practical", seed=0)
    assert res.counts() == {"train": 12, "val": 12, "test": 12}  # 1/1/1 images x 12 tiles
    split, meta = D.read_split(tmp_path / "split.json")
    assert meta["fractions"] == [0.7, 0.15, 0.15] and meta["mode"] == "practical"
    assert all(res.tiles.loc[res.tiles["source"] == i, "split"].eq(s).all()
               for s in ("train", "val", "test") for i in split[s])
    # tiles with no particle are kept (negative examples) but reported
    assert all(p["problem"] == "tile: empty" for p in res.problems)
    train, val = D.training_datasets(tmp_path, seed=0)
    assert isinstance(train, D.RandomCropDataset) and len(val) == 12


def test_build_reports_unusable_pairs(tmp_path):
    img, msk = _copy_examples(tmp_path)
    gray = tifffile.imread(msk / "1908252_m.tif").astype(np.uint8)
    gray[0, :3] = [1, 2, 3]  # not binary any more
    tifffile.imwrite(msk / "1908252_m.tif", gray)
    with pytest.raises(InputError, match="1908252"):
        D.build_dataset(img, msk, tmp_path / "out", mode="practical")
    assert not (tmp_path / "out").exists()  # nothing written before the check
    res = D.build_dataset(img, msk, tmp_path / "out", mode="practical", on_bad="skip")
    assert "1908252" not in res.tiles["source"].values
    assert any(p["problem"] == "unusable pair" and p["name"] == "1908252" for p in res.problems)
    _, meta = D.read_split(tmp_path / "out" / "split.json")
    assert meta["skipped"][0]["name"] == "1908252"
