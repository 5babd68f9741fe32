"""Training data in memory and on disk, as map-style torch datasets.

* :class:`RandomCropDataset`: random augmented 256×256 crops of whole training images, drawn on
  the fly (practical mode);
* :class:`FullTileDataset`: the deterministic tiles covering whole images (validation, testing);
* :class:`TileDataset`: the tiles :func:`tio2fiji.training.build_dataset` wrote (thesis mode);
* :func:`training_datasets`: the training and validation datasets of a data folder.

Items are ``(image, mask, valid)`` float32 tensors ``(1, H, W)``; every item depends only on
``(seed, epoch, index)``, so any number of DataLoader workers, and a resumed run, see the same data.
The classes import torch only when an item is made.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..instances import connected_components, labels_to_separated_mask
from ..io import atomic_write, mask_for_image, pair_files, read_mask, read_sem
from ..transforms import (
    THESIS_VARIANTS,
    TILE,
    augment_pair,
    coarsen,
    context_margin,
    crop_with_context,
    normalize_for_network,
    photometric,
    resample_image,
    resample_labels,
    tile_positions,
)
from .splits import read_split

__all__ = ["Sample", "load_pair", "load_samples", "SCALE_AUGMENTATION", "resample_mask", "RandomCropDataset",
           "FullTileDataset", "TileDataset", "split_pairs", "training_datasets", "read_tile", "write_tile"]


@dataclass
class Sample:
    """One image of the analysed area, scaled to [0, 1], with its mask."""

    name: str
    image: np.ndarray  # float32 in [0, 1]
    mask: np.ndarray  # bool
    image_path: Path | None = None
    mask_path: Path | None = None
    pixel_size_m: float | None = None  # the image's calibration (None: uncalibrated)


def load_pair(image_path, mask_path, data_bar_rows=None):
    """``(SemImage, analysed area as read, mask of the analysed area)`` of one image/mask pair."""
    sem = read_sem(image_path, data_bar_rows=data_bar_rows)
    mask = mask_for_image(read_mask(mask_path), sem, mask_name=str(mask_path))
    return sem, np.ascontiguousarray(sem.analysed), mask


def load_samples(pairs, data_bar_rows: int | None = None) -> list:
    """Read image/mask pairs into :class:`Sample` objects (data bar removed, image in [0, 1])."""
    out = []
    for img_path, mask_path in pairs:
        sem, raw, mask = load_pair(img_path, mask_path, data_bar_rows)
        out.append(Sample(name=Path(img_path).stem, image=normalize_for_network(raw), mask=mask,
                          image_path=Path(img_path), mask_path=Path(mask_path), pixel_size_m=sem.pixel_size_m))
    return out


def _to_tensors(image, mask, valid):
    import torch

    return (torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None],
            torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None],
            torch.from_numpy(np.ascontiguousarray(valid, dtype=np.float32))[None])


#: The scale augmentation of ``train unet|border --scale-augment`` (campaign stage 4): half the
#: crops zoomed 0.75-1.33x, 30 % coarsened 1-2x (images down to half the magnification, brought to
#: the model's scale).
SCALE_AUGMENTATION = {"zoom": (0.75, 1.33), "zoom_p": 0.5, "coarsen_max": 2.0, "coarsen_p": 0.3}


def resample_mask(mask, shape) -> np.ndarray:
    """A training mask resampled to ``shape`` by its nearest pixel, touching particles kept apart.

    Label images are resampled as they are (:func:`tio2fiji.transforms.resample_labels`). A binary
    mask's particles (4-connected, one-pixel gaps between touching ones) are labelled first and
    the gaps redrawn afterwards (:func:`tio2fiji.instances.labels_to_separated_mask`): shrunk by
    nearest pixel, a one-pixel gap would otherwise vanish and two particles become one.
    """
    mask = np.asarray(mask)
    if mask.dtype != bool:
        return resample_labels(mask, shape)
    labels = resample_labels(connected_components(mask, 4), shape)
    return labels_to_separated_mask(labels, 4) > 0


class RandomCropDataset:
    """Random augmented 256×256 crops from whole training images, drawn on the fly (map-style).

    Item ``i`` of epoch ``e`` is drawn from ``numpy.random.default_rng([seed, e, i])``: the same
    for any number of DataLoader workers, different every epoch once the training loop calls
    :meth:`set_epoch` (without it every epoch sees the same crops). Each item: an image chosen with
    probability proportional to its area, one of the thesis's 18 (flip, angle) variants, a crop
    position chosen so that the rotated crop lies inside the image (no invented pixels: ``valid``
    is all ones unless an image is smaller than the rotation needs), then
    :func:`tio2fiji.transforms.photometric`.

    Items are ``(image, mask, valid)`` float32 tensors of shape ``(1, tile, tile)``. The class
    implements the map-style ``torch.utils.data.Dataset`` protocol (``__len__``, ``__getitem__``)
    and imports torch only when an item is made.

    Parameters
    ----------
    samples : list of Sample
    tile : int
    length : int, optional
        Items per epoch; default the number of non-overlapping tiles that cover the images.
    seed : int
    variants : sequence of (flip, angle)
        Default :data:`tio2fiji.transforms.THESIS_VARIANTS`.
    photometric_p : float
        Probability of the brightness + blur augmentation (0 turns it off).
    zoom : (float, float)
        Range of magnifications (log-uniform) applied, with probability ``zoom_p``, to the crop
        before it is rotated: a window ``tile / zoom`` wide is cut and resampled to ``tile``
        (:func:`~tio2fiji.transforms.resample_image`, labels by
        :func:`~tio2fiji.transforms.resample_labels`): particles at other sizes, as at another
        magnification.
    coarsen_max : float
        With probability ``coarsen_p`` the crop's image (not its mask) is
        :func:`~tio2fiji.transforms.coarsen`-ed by a factor drawn uniformly from
        ``[1, coarsen_max]``: what a coarser image looks like once brought to the model's scale.
        Both scale augmentations are off by default (``zoom_p = coarsen_p = 0``) and then draw
        nothing, so earlier runs' crops are unchanged.
    """

    def __init__(self, samples, tile: int = TILE, length: int | None = None, seed: int = 0,
                 variants=THESIS_VARIANTS, photometric_p: float = 0.4, zoom=(1.0, 1.0), zoom_p: float = 0.0,
                 coarsen_max: float = 1.0, coarsen_p: float = 0.0):
        if not samples:
            raise InputError("RandomCropDataset needs at least one image.")
        lo, hi = (float(z) for z in zoom)
        if not (0.25 <= lo <= hi <= 4.0) or not (0.0 <= zoom_p <= 1.0 and 0.0 <= coarsen_p <= 1.0) \
                or not 1.0 <= float(coarsen_max) <= 4.0:
            raise InputError(f"scale augmentation: zoom range within 0.25-4 (got {lo}-{hi}), coarsen_max within "
                             f"1-4 (got {coarsen_max}) and probabilities within 0-1 (got {zoom_p}, {coarsen_p}).")
        self.zoom, self.zoom_p = (lo, hi), float(zoom_p)
        self.coarsen_max, self.coarsen_p = float(coarsen_max), float(coarsen_p)
        self.samples = list(samples)
        self.tile = int(tile)
        self.seed = int(seed)
        self.variants = tuple(variants)
        self.photometric_p = float(photometric_p)
        self.epoch = 0
        areas = np.array([s.image.size for s in self.samples], dtype=np.float64)
        self._weights = areas / areas.sum()
        if length is None:
            length = sum(max(1, (s.image.shape[0] // tile)) * max(1, (s.image.shape[1] // tile))
                         for s in self.samples)
        self.length = int(length)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose crops the items are (call once per epoch before iterating)."""
        self.epoch = int(epoch)

    def scale_settings(self) -> dict:
        """The scale augmentation as a model file records it (``train_scale``)."""
        return {"zoom": list(self.zoom), "zoom_p": self.zoom_p, "coarsen_max": self.coarsen_max,
                "coarsen_p": self.coarsen_p}

    def __len__(self) -> int:
        return self.length

    def item_arrays(self, index: int):
        """The item as numpy arrays ``(image float32, mask bool, valid bool)`` and its recipe."""
        if not 0 <= index < self.length:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        zoom = self._draw_zoom(rng)
        k = int(rng.choice(len(self.samples), p=self._weights))
        s = self.samples[k]
        flip_kind, angle = self.variants[int(rng.integers(len(self.variants)))]
        size = self.tile if zoom == 1.0 else max(8, int(round(self.tile / zoom)))
        margin = context_margin(size, [angle])
        side = size + 2 * margin
        wy, wx = self._window_origin(rng, k, side)
        img, msk, val = crop_with_context(s.image, s.mask, wy + margin, wx + margin, size, margin)
        img, msk, val = augment_pair(img, msk, flip_kind, angle, out_size=size, valid=val)
        if size != self.tile:
            shape = (self.tile, self.tile)
            img, msk, val = resample_image(img, shape), resample_mask(msk, shape), resample_labels(val, shape)
        img = photometric(img, rng, p=self.photometric_p)
        factor = 1.0
        if self.coarsen_p > 0 and rng.random() < self.coarsen_p:
            factor = float(rng.uniform(1.0, self.coarsen_max))
            img = coarsen(img, factor)
        img = np.where(val, img, 0.0).astype(np.float32)
        return img, msk, val, {"name": s.name, "y": wy + margin, "x": wx + margin, "flip": flip_kind,
                               "angle": angle, "zoom": zoom, "coarsen": factor}

    def _window_origin(self, rng, k: int, side: int) -> tuple[int, int]:
        """Top-left of a ``side``-wide window in image ``k``, inside the image when it fits."""
        h, w = self.samples[k].image.shape
        wy = int(rng.integers(0, h - side + 1)) if h >= side else -((side - h) // 2)
        wx = int(rng.integers(0, w - side + 1)) if w >= side else -((side - w) // 2)
        return wy, wx

    def _draw_zoom(self, rng) -> float:
        if self.zoom_p <= 0 or not rng.random() < self.zoom_p:
            return 1.0
        lo, hi = self.zoom
        return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))

    def __getitem__(self, index: int):
        img, msk, val, _ = self.item_arrays(index)
        return _to_tensors(img, msk, val)


class FullTileDataset:
    """Deterministic tiles covering whole images (:func:`tio2fiji.transforms.tile_positions`), no
    augmentation.

    For validation and testing. Items are ``(image, mask, valid)`` float32 tensors ``(1, t, t)``;
    ``index`` lists ``(name, y, x)`` of each item.
    """

    def __init__(self, samples, tile: int = TILE, stride: int | None = None):
        self.samples = list(samples)
        self.tile = int(tile)
        self.index = [(k, y, x) for k, s in enumerate(self.samples)
                      for (y, x) in tile_positions(s.image.shape, tile, stride)]

    def __len__(self) -> int:
        return len(self.index)

    def item_arrays(self, index: int):
        k, y, x = self.index[index]
        s = self.samples[k]
        sl = (slice(y, y + self.tile), slice(x, x + self.tile))
        return s.image[sl], s.mask[sl], np.ones((self.tile, self.tile), bool)

    def __getitem__(self, index: int):
        return _to_tensors(*self.item_arrays(index))


def read_tile(path: Path) -> np.ndarray:
    """The pixels of a tile file (PNG or TIFF) as stored."""
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        return tifffile.imread(path)
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im)


def write_tile(path: Path, arr: np.ndarray) -> None:
    """Write a tile (PNG, or TIFF for a ``.tif`` name) atomically."""
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        atomic_write(path, lambda p: tifffile.imwrite(p, arr))
        return
    from PIL import Image

    atomic_write(path, lambda p: Image.fromarray(arr).save(p, format="PNG"))


class TileDataset:
    """Tiles written by :func:`tio2fiji.training.build_dataset`, read from disk (thesis mode).

    Parameters
    ----------
    out_dir : path
        The folder :func:`build_dataset` wrote.
    split : {"train", "val", "test"}
    photometric_p : float, optional
        Default 0.4 for ``"train"``, 0 otherwise.
    seed : int
        Item ``i`` of epoch ``e`` draws its photometric augmentation from
        ``default_rng([seed, e, i])``; call :meth:`set_epoch` every epoch.
    """

    def __init__(self, out_dir, split: str = "train", photometric_p: float | None = None, seed: int = 0):
        import pandas as pd

        self.out_dir = Path(out_dir)
        index = self.out_dir / "tiles.csv"
        if not index.is_file():
            raise InputError(f"{self.out_dir}: no tiles.csv; build the data set first "
                             f"(tio2fiji dataset build).")
        table = pd.read_csv(index, keep_default_na=False)
        self.table = table[table["split"] == split].reset_index(drop=True)
        self.photometric_p = (0.4 if split == "train" else 0.0) if photometric_p is None else photometric_p
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.table)

    def item_arrays(self, index: int):
        row = self.table.iloc[index]
        raw = read_tile(self.out_dir / row["image"])
        bits = int(row["bits"]) if str(row["bits"]) not in ("", "nan") else None
        img = normalize_for_network(raw, bits=bits)
        msk = read_tile(self.out_dir / row["mask"]) > 0
        val = (read_tile(self.out_dir / row["valid"]) > 0) if row["valid"] else np.ones(msk.shape, bool)
        if self.photometric_p > 0:
            rng = np.random.default_rng([self.seed, self.epoch, int(index)])
            img = np.where(val, photometric(img, rng, p=self.photometric_p), 0.0).astype(np.float32)
        return img, msk, val

    def __getitem__(self, index: int):
        return _to_tensors(*self.item_arrays(index))


def split_pairs(out_dir, images_dir=None, masks_dir=None):
    """The training and validation (image, mask) pairs of a practical-mode data folder.

    Read from the folders recorded in ``split.json`` (or ``images_dir``/``masks_dir``).

    Returns
    -------
    (train_pairs, val_pairs, meta)
        ``meta`` is ``split.json``'s (mode, data_bar_rows, tile, ...).
    """
    split, meta = read_split(Path(out_dir) / "split.json")
    images_dir = Path(images_dir or meta["images_dir"])
    masks_dir = Path(masks_dir or meta["masks_dir"])
    pairs = {Path(i).stem: (i, m) for i, m in pair_files(images_dir, masks_dir, strict=False)}
    missing = [i for i in split["train"] + split["val"] if i not in pairs]
    if missing:
        raise InputError(f"images of the split not found in {images_dir}: {', '.join(missing[:10])}")
    return [pairs[i] for i in split["train"]], [pairs[i] for i in split["val"]], meta


def training_datasets(out_dir, seed: int = 0, images_dir=None, masks_dir=None, length=None,
                      scale_augmentation: dict | None = None):
    """The training and validation datasets of a data folder (:func:`tio2fiji.training.build_dataset`).

    Thesis mode: :class:`TileDataset` ``"train"`` (photometric augmentation on) and ``"val"``.
    Practical mode: :class:`RandomCropDataset` over the training images (read from the folders
    recorded in ``split.json``, or ``images_dir``/``masks_dir``) and :class:`FullTileDataset` over
    the validation images. ``scale_augmentation``: :class:`RandomCropDataset`'s ``zoom``,
    ``zoom_p``, ``coarsen_max``, ``coarsen_p`` (practical mode only).

    Returns
    -------
    (train, val)
    """
    out_dir = Path(out_dir)
    _, meta = read_split(out_dir / "split.json")
    if meta.get("mode") == "thesis":
        if scale_augmentation:
            raise InputError(f"{out_dir}: a thesis-mode data folder (fixed tiles); scale augmentation "
                             f"draws crops from whole images (dataset build --mode practical).")
        return TileDataset(out_dir, "train", seed=seed), TileDataset(out_dir, "val", seed=seed)
    train_pairs, val_pairs, meta = split_pairs(out_dir, images_dir, masks_dir)
    bar = meta.get("data_bar_rows")
    train = load_samples(train_pairs, data_bar_rows=bar)
    val = load_samples(val_pairs, data_bar_rows=bar)
    tile = int(meta.get("tile", TILE))
    return (RandomCropDataset(train, tile=tile, seed=seed, length=length, **(scale_augmentation or {})),
            FullTileDataset(val, tile=tile))
