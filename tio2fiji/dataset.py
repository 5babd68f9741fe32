"""Training data: image/mask pairs, splits, 256×256 tiles, the thesis's augmentation, COCO export.

Two ways to make training data, both reproducible from one seed and recorded in ``split.json``:

``mode="thesis"`` (:func:`build_dataset`) reproduces the thesis's data set (§3.1): 22 source tiles of
256×256 from 22 different images become 396 tiles, split 380 for training and 16 for validation, and
6 tiles from 6 other images form the test set.

*How 22 → 396 arises.* The thesis flips each source tile vertically, horizontally, and both ways,
and "each flipped image variant was randomly rotated with the angles 90, 120, 180, 225, 270".
396 = 22 × 18 and 18 = 3 × 6: each of the 3 flipped variants is kept as it is *and* rotated by each
of the 5 angles, 3 × (1 + 5) = 18 (:data:`THESIS_VARIANTS`). The other readings do not give 396: with
the unflipped original as a fourth variant 4 × 6 = 24 (528 tiles); rotated copies only 3 × 5 = 15
(330); one random angle per variant 3 × 2 = 6 (132). The original itself is among the 18 (the
v+h flip rotated by 180°). Four of the 18 are exact copies of others (v∘R180 = h, h∘R180 = v,
v∘R90 = h∘R270, v∘R270 = h∘R90), so a source tile gives 14 distinct tiles (308 of the 396).
The 16 validation tiles are drawn at random from the 396, as the thesis's numbers imply (16 is not
a multiple of 18): every validation tile has flipped/rotated siblings in the training set, so the
thesis's validation IoU measures fit rather than generalisation. ``val_grouping="source"`` holds out
whole source tiles instead (18 tiles per source). Only the 6 test tiles are independent.

``mode="practical"`` splits whole images (default 70/15/15 %) and writes every image's full
deterministic tiling; training draws random 256×256 crops on the fly with the same augmentation
(:class:`RandomCropDataset`), validation uses the full tiles (:class:`FullTileDataset`).

*Non-right rotations.* A 256×256 tile rotated by 120° or 225° needs pixels from outside the tile at
its corners. Filling them with a constant would invent background (or, for a mask, particle) that
is not in the data. We never do that: the tile is cut from the full analysed image with enough
context around it (``tile · (|cos θ| + |sin θ|)``, 363 px for 225°), the context window is flipped
and rotated (image bilinear, mask nearest-neighbour so it stays binary, same geometry), and the
central 256×256 is kept, so every pixel is real data. Where the context is not available (a tile at
the image border, a source smaller than the window) the missing pixels are marked in a ``valid``
mask: the mask is False and the image 0 there, and losses and metrics must ignore them
(:func:`tio2fiji.metrics.iou` takes ``valid``). We chose this over cropping the inscribed square
and resizing it, which would change the particles' scale by up to √2 and blur the masks.

*Photometric augmentation* (thesis §3.1): with probability 0.4 both a brightness factor drawn
uniformly from [0.9, 1.32] and a Gaussian blur (σ = 1, kernel 3) are applied, as torchvision's
``RandomApply([ColorJitter(brightness=(0.9, 1.32)), GaussianBlur(3, 1)], p=0.4)``; to the image
only, never to the mask. It is applied on the fly during training (it is not written to disk).

All images are scaled to ``[0, 1]`` by :func:`tio2fiji.io.normalize_for_network` with the bit depth
of the whole source image, so a tile is scaled as the full image is at inference.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from .batch import IMAGE_SUFFIXES, find_image_for_mask
from .errors import InputError, Tio2FijiError
from .io import (_atomic_write, mask_for_image, normalize_for_network, read_mask, read_sem,
                 write_csv, write_json)

__all__ = [
    "FLIPS", "THESIS_ANGLES", "THESIS_VARIANTS", "pair_files", "make_split", "write_split",
    "read_split", "tile_positions", "axis_positions", "flip", "rotation_footprint", "rotate_pair",
    "augment_pair",
    "crop_with_context", "gaussian_blur", "photometric", "coco_from_masks", "Sample",
    "load_samples", "RandomCropDataset", "FullTileDataset", "TileDataset", "training_datasets",
    "BuildResult", "build_dataset",
]

TILE = 256
FLIPS = ("v", "h", "vh")
THESIS_ANGLES = (90, 120, 180, 225, 270)
#: The 18 (flip, angle) variants of one source tile in the thesis: 3 flips × (unrotated + 5 angles).
THESIS_VARIANTS = tuple((f, a) for f in FLIPS for a in (0,) + THESIS_ANGLES)
SPLIT_NAMES = ("train", "val", "test")
_SPLIT_FORMAT = "tio2fiji-split"


# --------------------------------------------------------------------------------------------------
# pairs and splits


def _image_shape(path: Path) -> tuple[int, int]:
    """Height and width from the file header, without decoding the pixels."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                shape = tif.pages[0].shape
            return int(shape[0]), int(shape[1])
        from PIL import Image

        with Image.open(path) as im:
            return im.size[1], im.size[0]
    except Exception as exc:  # corrupt files raise many types
        raise InputError(f"{path}: cannot read the image header ({exc}).") from exc


def pair_files(images_dir, masks_dir, strict: bool = True, check_sizes: bool = True) -> list:
    """Pair every mask in ``masks_dir`` with its SEM image in ``images_dir``.

    A mask ``<id>_m.tif`` (or ``_mask``, ``_cm``, ...) belongs to the image ``<id>.tif``/``.png``/...
    (:func:`tio2fiji.batch.find_image_for_mask`).

    Parameters
    ----------
    images_dir, masks_dir : path
    strict : bool
        Raise when a mask has no image or an image has no mask. False returns the pairs found.
    check_sizes : bool
        Compare the sizes in the file headers: a mask must have its image's width and at most its
        height (it may leave out the data bar; the exact check is made when the pair is loaded).

    Returns
    -------
    list of (Path, Path)
        ``(image_path, mask_path)``, sorted by image name.

    Raises
    ------
    InputError
        Missing folders, no masks, unmatched files (``strict``), size mismatches; the message lists
        every offending file.
    """
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    for d, what in ((images_dir, "images"), (masks_dir, "masks")):
        if not d.is_dir():
            raise InputError(f"{d}: {what} folder not found.")
    masks = sorted(p for p in masks_dir.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    if not masks:
        raise InputError(f"{masks_dir}: no mask files (.tif/.png/...) found.")
    pairs, no_image = [], []
    for m in masks:
        img = find_image_for_mask(m, images_dir)
        if img is None:
            no_image.append(m.name)
        else:
            pairs.append((img, m))
    used = {p[0].resolve() for p in pairs}
    no_mask = sorted(p.name for p in images_dir.iterdir()
                     if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                     and not p.name.startswith(".") and p.resolve() not in used)
    seen: dict = {}
    dup = []
    for img, m in pairs:
        if img in seen:
            dup.append(f"{seen[img].name} and {m.name} -> {img.name}")
        seen[img] = m
    problems = []
    if dup:
        problems.append("several masks for one image: " + "; ".join(dup))
    if strict and no_image:
        problems.append(f"{len(no_image)} mask(s) without an image in {images_dir}: "
                        + ", ".join(no_image[:10]) + (" ..." if len(no_image) > 10 else ""))
    if strict and no_mask:
        problems.append(f"{len(no_mask)} image(s) without a mask in {masks_dir} (expected "
                        f"<name>_m.tif): " + ", ".join(no_mask[:10]) + (" ..." if len(no_mask) > 10 else ""))
    if check_sizes:
        for img, m in pairs:
            hi, wi = _image_shape(img)
            hm, wm = _image_shape(m)
            if wm != wi or hm > hi:
                problems.append(f"{m.name} is {wm}x{hm} pixels but its image {img.name} is {wi}x{hi}")
    if problems:
        raise InputError("cannot pair images and masks: " + " | ".join(problems))
    return sorted(pairs, key=lambda p: p[0].name)


def _counts_from_fractions(n: int, fractions) -> list:
    """Largest-remainder rounding; ties go to test, then val (a larger test set is more useful)."""
    raw = [f * n for f in fractions]
    base = [math.floor(r + 1e-9) for r in raw]
    left = n - sum(base)
    frac = [round(r - b, 9) for r, b in zip(raw, base)]
    for i in sorted(range(3), key=lambda i: (-frac[i], -i))[:left]:
        base[i] += 1
    # every split asked for gets at least one id when there are enough
    if n >= sum(f > 0 for f in fractions):
        for i in range(3):
            if fractions[i] > 0 and base[i] == 0:
                j = int(np.argmax(base))
                base[j] -= 1
                base[i] += 1
    return base


def make_split(ids, fractions=(0.7, 0.15, 0.15), seed: int = 0, counts=None) -> dict:
    """Split ids into train/val/test at random, reproducibly from ``seed``.

    Parameters
    ----------
    ids : sequence of str
        Unique ids (image names); their order does not matter (they are sorted first).
    fractions : 3 floats summing to 1
        Train, validation and test fractions; counts are rounded by largest remainder (30 ids with
        the default give 21/4/5).
    seed : int
    counts : 3 ints, optional
        Exact sizes instead of fractions. Ids beyond their sum go to ``"unused"``.

    Returns
    -------
    dict
        ``{"train": [...], "val": [...], "test": [...]}`` (each sorted), plus ``"unused"`` when
        ``counts`` leave ids over.
    """
    ids = sorted(str(i) for i in ids)
    if len(set(ids)) != len(ids):
        raise InputError("make_split: ids must be unique.")
    n = len(ids)
    if counts is not None:
        counts = [int(c) for c in counts]
        if len(counts) != 3 or min(counts) < 0:
            raise InputError(f"counts must be 3 non-negative integers (train, val, test), got {counts}.")
        if sum(counts) > n:
            raise InputError(f"counts {counts} ask for {sum(counts)} ids but there are {n}.")
    else:
        fractions = [float(f) for f in fractions]
        if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
            raise InputError(f"fractions must be 3 non-negative numbers summing to 1, got {fractions}.")
        counts = _counts_from_fractions(n, fractions)
    order = np.random.default_rng(seed).permutation(n)
    out, start = {}, 0
    for name, c in zip(SPLIT_NAMES, counts):
        out[name] = sorted(ids[i] for i in order[start:start + c])
        start += c
    if start < n:
        out["unused"] = sorted(ids[i] for i in order[start:])
    return out


def write_split(path, split: dict, meta: dict | None = None) -> Path:
    """Write a split to ``split.json`` (atomically) with what is needed to reproduce it.

    Parameters
    ----------
    path : path
    split : dict
        ``{"train": [...], "val": [...], "test": [...]}`` (more keys allowed, e.g. ``"unused"``).
    meta : dict
        Must hold ``"seed"``; should hold ``"fractions"`` or ``"counts"``. Written at the top level.
    """
    meta = dict(meta or {})
    if "seed" not in meta:
        raise InputError("write_split: meta must record the 'seed' the split was drawn with.")
    _check_split(split)
    doc = {"format": _SPLIT_FORMAT, "version": 1, **meta,
           "splits": {k: list(v) for k, v in split.items()}}
    return write_json(path, doc)


def _check_split(split: dict) -> None:
    for name in SPLIT_NAMES:
        if name not in split:
            raise InputError(f"split has no {name!r} list.")
    seen: dict = {}
    for name, ids in split.items():
        for i in ids:
            if i in seen:
                raise InputError(f"split: {i!r} is in both {seen[i]!r} and {name!r}.")
            seen[i] = name


def read_split(path) -> tuple[dict, dict]:
    """Read ``split.json``; returns ``(split, meta)`` as written by :func:`write_split`."""
    import json

    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError(f"{path}: split file not found.") from exc
    except ValueError as exc:
        raise InputError(f"{path}: not a JSON split file ({exc}).") from exc
    if not isinstance(doc, dict) or doc.get("format") != _SPLIT_FORMAT or "splits" not in doc:
        raise InputError(f"{path}: not a tio2fiji split file (no format '{_SPLIT_FORMAT}').")
    split = doc.pop("splits")
    _check_split(split)
    return split, doc


# --------------------------------------------------------------------------------------------------
# geometry


def tile_positions(shape, tile: int = TILE, stride: int | None = None) -> list:
    """Top-left corners of the tiles that cover an image.

    Tiles start every ``stride`` pixels (default ``tile``, no overlap) and the last tile of each row
    and column is placed flush with the border, so every pixel is covered and no tile leaves the
    image (the last ones overlap their neighbours instead of being padded).

    Parameters
    ----------
    shape : (int, int)
        Height and width (of the analysed area: pass ``sem.analysed.shape``).
    tile : int
    stride : int, optional

    Returns
    -------
    list of (int, int)
        ``(y, x)`` in row-major order.
    """
    h, w = int(shape[0]), int(shape[1])
    stride = tile if stride is None else int(stride)
    if tile <= 0 or stride <= 0:
        raise InputError(f"tile and stride must be positive, got {tile} and {stride}.")
    if h < tile or w < tile:
        raise InputError(f"image of {w}x{h} pixels is smaller than a {tile}x{tile} tile.")

    return [(y, x) for y in axis_positions(h, tile, stride) for x in axis_positions(w, tile, stride)]


def axis_positions(n: int, tile: int, stride: int) -> list:
    """Tile starts along one axis of length ``n >= tile``: every ``stride`` pixels, the last one
    flush with the border (:func:`tile_positions` per axis; also the inference tiling)."""
    pos = list(range(0, n - tile + 1, stride))
    if pos[-1] != n - tile:
        pos.append(n - tile)
    return pos


def flip(a: np.ndarray, kind) -> np.ndarray:
    """Flip an array: ``"v"`` upside down, ``"h"`` left-right, ``"vh"`` both, None/``""`` not at all."""
    if kind in (None, "", "none"):
        return a
    if kind == "v":
        return a[::-1]
    if kind == "h":
        return a[:, ::-1]
    if kind == "vh":
        return a[::-1, ::-1]
    raise InputError(f"flip must be 'v', 'h', 'vh' or None, not {kind!r}.")


def rotation_footprint(size: int, angle: float) -> int:
    """Side of the axis-aligned square of source pixels that a ``size``-pixel square needs after a
    rotation by ``angle`` degrees (``size`` for right angles; 363 for 256 at 45°/225°)."""
    if angle % 90 == 0:
        return int(size)
    t = math.radians(angle)
    return int(math.ceil(size * (abs(math.cos(t)) + abs(math.sin(t))) - 1e-9))


def _context_margin(size: int, angles) -> int:
    """Margin around a tile that makes every rotation in ``angles`` use real pixels only.

    One extra pixel keeps the bilinear neighbours of the outermost samples inside too.
    """
    need = max(rotation_footprint(size, a) for a in angles)
    return 0 if need == size else (need - size + 1) // 2 + 1


def rotate_pair(image, mask, angle: float, out_shape=None, valid=None, exact: bool = True):
    """Rotate an image and its mask with the same geometry.

    The rotation is counter-clockwise as displayed (like ``np.rot90`` and torchvision) by
    ``angle`` degrees about the array's centre; the output (``out_shape``, default the input's shape
    rotated) is centred on the same point. Right angles are exact (``np.rot90``, no interpolation).
    Other angles resample the image bilinearly and the mask nearest-neighbour (it stays binary).

    Parameters
    ----------
    image : ndarray, 2-D
    mask : ndarray of bool, same shape
    angle : float
        Degrees.
    out_shape : (int, int), optional
    valid : ndarray of bool, optional
        Which input pixels hold data (default: all).
    exact : bool
        Rotate right angles with ``np.rot90`` (False resamples them like any angle; for tests).

    Returns
    -------
    image : ndarray of float64 (or the input dtype for exact right-angle rotations)
    mask : ndarray of bool
        False wherever ``valid`` is False.
    valid : ndarray of bool
        Output pixels computed only from valid input pixels. Elsewhere the image is 0.
    """
    image = np.asarray(image)
    mask = np.asarray(mask, dtype=bool)
    if image.shape != mask.shape:
        raise InputError(f"image is {image.shape} but mask is {mask.shape}.")
    valid = np.ones(mask.shape, bool) if valid is None else np.asarray(valid, dtype=bool)
    h, w = image.shape
    k = int(round(angle / 90.0))
    right = abs(angle - 90 * k) < 1e-9
    if right and exact:
        rshape = (h, w) if k % 2 == 0 else (w, h)
        oh, ow = rshape if out_shape is None else (int(out_shape[0]), int(out_shape[1]))
        dy, dx = rshape[0] - oh, rshape[1] - ow
        if dy >= 0 and dx >= 0 and dy % 2 == 0 and dx % 2 == 0:
            sl = (slice(dy // 2, dy // 2 + oh), slice(dx // 2, dx // 2 + ow))
            img = np.rot90(image, k)[sl]
            msk = np.rot90(mask, k)[sl]
            val = np.rot90(valid, k)[sl]
            img = np.where(val, img, 0).astype(image.dtype, copy=False)
            return np.ascontiguousarray(img), np.ascontiguousarray(msk & val), np.ascontiguousarray(val)
    oh, ow = (h, w) if out_shape is None else (int(out_shape[0]), int(out_shape[1]))
    if out_shape is None and right and k % 2:
        oh, ow = w, h
    t = math.radians(angle)
    c, s = math.cos(t), math.sin(t)
    yy, xx = np.mgrid[0:oh, 0:ow].astype(np.float64)
    dy = yy - (oh - 1) / 2.0
    dx = xx - (ow - 1) / 2.0
    # output offset d maps to input offset (c*dy + s*dx, -s*dy + c*dx): counter-clockwise on screen
    ry = (h - 1) / 2.0 + c * dy + s * dx
    rx = (w - 1) / 2.0 - s * dy + c * dx
    coords = np.stack([ry, rx])
    # Remove floating-point noise (cos 90° = 6e-17, |cos 225°| != |sin 225°| in the last bit) so
    # that grid points and exact half-way points sample the same whatever the window's offset.
    coords = np.round(coords, 9)
    # A pixel is valid when every bilinear neighbour with non-zero weight is valid input.
    # "grid-constant" treats outside pixels as cval *with* interpolation ("constant" would return
    # cval for any point beyond the edge).
    val = ndimage.map_coordinates(valid.astype(np.float64), coords, order=1, mode="grid-constant",
                                  cval=0.0) >= 1.0 - 1e-6
    img = ndimage.map_coordinates(image.astype(np.float64), coords, order=1, mode="nearest")
    # Nearest neighbour with ties rounded up (floor(c + 0.5)), not scipy's order=0 rounding,
    # whose choice at exact .5 ties depends on the integer part, i.e. on where the window starts.
    iy = np.floor(coords[0] + 0.5).astype(np.int64)
    ix = np.floor(coords[1] + 0.5).astype(np.int64)
    inside = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
    msk = np.zeros((oh, ow), bool)
    msk[inside] = mask[iy[inside], ix[inside]]
    img[~val] = 0.0
    return img, msk & val, val


def _restore_dtype(img: np.ndarray, dtype) -> np.ndarray:
    dtype = np.dtype(dtype)
    if img.dtype == dtype:
        return img
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(img), info.min, info.max).astype(dtype)
    return img.astype(dtype)


def augment_pair(image, mask, flip_kind, angle: float, out_size: int | None = None, valid=None):
    """Flip, then rotate, an image and its mask; keep the central ``out_size`` square.

    Give a window larger than ``out_size`` (see :func:`crop_with_context`) and the rotated corners
    come from real data. Returns ``(image, mask, valid)`` as :func:`rotate_pair`; the image keeps
    its dtype (rounded after interpolation).
    """
    image = np.asarray(image)
    dtype = image.dtype
    v = None if valid is None else flip(np.asarray(valid, bool), flip_kind)
    out_shape = None if out_size is None else (out_size, out_size)
    img, msk, val = rotate_pair(flip(image, flip_kind), flip(np.asarray(mask, bool), flip_kind),
                                angle, out_shape=out_shape, valid=v)
    return _restore_dtype(img, dtype), msk, val


def crop_with_context(image, mask, y: int, x: int, size: int, margin: int):
    """Cut the window ``[y - margin, y + size + margin)`` × same for x; pixels outside the image are
    0 in the image, False in the mask and False in the returned ``valid``."""
    h, w = image.shape
    side = size + 2 * margin
    y0, x0 = y - margin, x - margin
    img = np.zeros((side, side), image.dtype)
    msk = np.zeros((side, side), bool)
    val = np.zeros((side, side), bool)
    sy0, sx0 = max(y0, 0), max(x0, 0)
    sy1, sx1 = min(y0 + side, h), min(x0 + side, w)
    if sy1 > sy0 and sx1 > sx0:
        dst = (slice(sy0 - y0, sy1 - y0), slice(sx0 - x0, sx1 - x0))
        img[dst] = image[sy0:sy1, sx0:sx1]
        msk[dst] = mask[sy0:sy1, sx0:sx1]
        val[dst] = True
    return img, msk, val


# --------------------------------------------------------------------------------------------------
# photometric augmentation


def gaussian_blur(image, sigma: float = 1.0, kernel: int = 3) -> np.ndarray:
    """Gaussian blur with a ``kernel``-wide kernel, borders reflected (torchvision's GaussianBlur)."""
    if kernel % 2 != 1 or kernel < 1:
        raise InputError(f"blur kernel must be an odd positive size, got {kernel}.")
    r = kernel // 2
    x = np.arange(-r, r + 1, dtype=np.float64)
    wts = np.exp(-0.5 * (x / sigma) ** 2)
    wts /= wts.sum()
    out = ndimage.correlate1d(np.asarray(image, np.float64), wts, axis=0, mode="mirror")
    return ndimage.correlate1d(out, wts, axis=1, mode="mirror")


def photometric(image, rng, p: float = 0.4, brightness=(0.9, 1.32), sigma: float = 1.0,
                kernel: int = 3) -> np.ndarray:
    """The thesis's visual augmentation of a ``[0, 1]`` image (never applied to masks).

    With probability ``p``: multiply by a brightness factor uniform in ``brightness`` (clipped to
    ``[0, 1]``), then blur (σ = ``sigma``, ``kernel`` wide). Otherwise the image is returned as is.

    Parameters
    ----------
    image : ndarray of float, values in [0, 1]
    rng : numpy.random.Generator
    """
    image = np.asarray(image, dtype=np.float32)
    if rng.random() >= p:
        return image
    factor = rng.uniform(brightness[0], brightness[1])
    out = np.clip(image * factor, 0.0, 1.0)
    return gaussian_blur(out, sigma, kernel).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# COCO


def _binary_problem(mask, shape, name):
    """Return (bool mask, None) or (None, problem dict)."""
    a = np.asarray(mask)
    if a.ndim != 2:
        return None, {"name": name, "problem": "not 2-D", "detail": f"shape {a.shape}"}
    if shape is not None and tuple(a.shape) != tuple(shape):
        return None, {"name": name, "problem": "size mismatch",
                      "detail": f"mask is {a.shape[1]}x{a.shape[0]}, image {shape[1]}x{shape[0]}"}
    if a.dtype == bool:
        return a, None
    values = np.unique(a)
    if values.size > 2 or (values.size == 2 and values[0] != 0) or (values.size == 1 and values[0] != 0):
        shown = ", ".join(str(v) for v in values[:5]) + (", ..." if values.size > 5 else "")
        return None, {"name": name, "problem": "non-binary",
                      "detail": f"{values.size} distinct values ({shown}); expected 0 and one value"}
    return a != 0, None


def coco_from_masks(masks, names=None, file_names=None, shapes=None, image_info=None,
                    connectivity: int = 4, first_image_id: int = 1) -> tuple[dict, list]:
    """COCO instance annotations, one per particle, from binary masks.

    Particles are the connected components of each mask (4-connected by default: the BAM masks
    separate touching particles by 1-pixel gaps that only 4-connectivity respects). Each becomes an
    annotation with an RLE ``segmentation`` (``counts`` as a str), ``bbox`` ``[x, y, w, h]``,
    ``area`` (pixels), ``iscrowd`` 0 and the single category ``"particle"`` (id 1). The result, saved
    as JSON, loads with ``pycocotools.coco.COCO``.

    Parameters
    ----------
    masks : sequence of array_like
        Binary masks (bool, or 0 and one other value).
    names : sequence of str, optional
        Names used in problem reports (default ``image_<k>``).
    file_names : sequence of str, optional
        ``file_name`` of each image entry (default ``<name>.png``).
    shapes : sequence of (int, int), optional
        The image size each mask must have.
    image_info : sequence of dict, optional
        Extra fields for each image entry (e.g. ``{"split": "train"}``).
    connectivity : {4, 8}
    first_image_id : int

    Returns
    -------
    coco : dict
        ``images``, ``annotations``, ``categories``, ``info``.
    problems : list of dict
        ``{"name", "problem", "detail"}`` for every bad mask. Non-binary, not 2-D and size-mismatched
        masks are left out of ``coco``; empty masks are kept as images without annotations (a valid
        negative example) but reported, so that an all-black mask by mistake is noticed.
    """
    from .metrics import label_instances, rle_from_labels

    masks = list(masks)
    n = len(masks)
    names = [f"image_{k}" for k in range(n)] if names is None else [str(s) for s in names]
    file_names = [f"{nm}.png" for nm in names] if file_names is None else list(file_names)
    images, anns, problems = [], [], []
    for k, m in enumerate(masks):
        shape = None if shapes is None else shapes[k]
        b, prob = _binary_problem(m, shape, names[k])
        if prob is not None:
            problems.append(prob)
            continue
        img_id = first_image_id + k
        entry = {"id": img_id, "file_name": file_names[k], "height": int(b.shape[0]),
                 "width": int(b.shape[1])}
        if image_info is not None:
            entry.update(image_info[k])
        images.append(entry)
        lab = label_instances(b, connectivity)
        n_lab = int(lab.max(initial=0))
        if n_lab == 0:
            problems.append({"name": names[k], "problem": "empty", "detail": "no particle pixels"})
            continue
        from pycocotools import mask as mask_utils

        rles = rle_from_labels(lab, n_lab)
        areas = np.bincount(lab.ravel(), minlength=n_lab + 1)[1:]
        boxes = mask_utils.toBbox([{"size": r["size"], "counts": r["counts"].encode()} for r in rles])
        for j, r in enumerate(rles):
            anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": 1,
                         "segmentation": r, "area": int(areas[j]),
                         "bbox": [float(v) for v in boxes[j]], "iscrowd": 0})
    coco = {
        "info": {"description": "tio2fiji particle annotations", "connectivity": connectivity},
        "images": images,
        "annotations": anns,
        "categories": [{"id": 1, "name": "particle", "supercategory": "particle"}],
    }
    return coco, problems


# --------------------------------------------------------------------------------------------------
# in-memory samples and torch datasets


@dataclass
class Sample:
    """One image of the analysed area, scaled to [0, 1], with its mask."""

    name: str
    image: np.ndarray  # float32 in [0, 1]
    mask: np.ndarray  # bool
    image_path: Path | None = None
    mask_path: Path | None = None


def _bits_for(image: np.ndarray) -> int | None:
    """The bit depth normalize_for_network uses for this (whole) image; None for float images."""
    if not np.issubdtype(image.dtype, np.integer):
        return None
    if image.dtype == np.uint8:
        return 8
    top = int(image.max(initial=0))
    return next((b for b in (8, 10, 12, 14, 16, 32) if top < 2 ** b), 64)


def _load_pair(image_path, mask_path, data_bar_rows=None):
    sem = read_sem(image_path, data_bar_rows=data_bar_rows)
    mask = mask_for_image(read_mask(mask_path), sem, mask_name=str(mask_path))
    return sem, np.ascontiguousarray(sem.analysed), mask


def load_samples(pairs, data_bar_rows: int | None = None) -> list:
    """Read image/mask pairs into :class:`Sample` objects (data bar removed, image in [0, 1])."""
    out = []
    for img_path, mask_path in pairs:
        _, raw, mask = _load_pair(img_path, mask_path, data_bar_rows)
        out.append(Sample(name=Path(img_path).stem, image=normalize_for_network(raw), mask=mask,
                          image_path=Path(img_path), mask_path=Path(mask_path)))
    return out


def _to_tensors(image, mask, valid):
    import torch

    return (torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None],
            torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None],
            torch.from_numpy(np.ascontiguousarray(valid, dtype=np.float32))[None])


class RandomCropDataset:
    """Random augmented 256×256 crops from whole training images, drawn on the fly (map-style).

    Item ``i`` of epoch ``e`` is drawn from ``numpy.random.default_rng([seed, e, i])``: the same
    for any number of DataLoader workers, different every epoch once the training loop calls
    :meth:`set_epoch` (without it every epoch sees the same crops). Each item: an image chosen with
    probability proportional to its area, one of the thesis's 18 (flip, angle) variants, a crop
    position chosen so that the rotated crop lies inside the image (no invented pixels: ``valid``
    is all ones unless an image is smaller than the rotation needs), then :func:`photometric`.

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
        Default :data:`THESIS_VARIANTS`.
    photometric_p : float
        Probability of the brightness + blur augmentation (0 turns it off).
    """

    def __init__(self, samples, tile: int = TILE, length: int | None = None, seed: int = 0,
                 variants=THESIS_VARIANTS, photometric_p: float = 0.4):
        if not samples:
            raise InputError("RandomCropDataset needs at least one image.")
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

    def __len__(self) -> int:
        return self.length

    def item_arrays(self, index: int):
        """The item as numpy arrays ``(image float32, mask bool, valid bool)`` and its recipe."""
        if not 0 <= index < self.length:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        k = int(rng.choice(len(self.samples), p=self._weights))
        s = self.samples[k]
        flip_kind, angle = self.variants[int(rng.integers(len(self.variants)))]
        margin = _context_margin(self.tile, [angle])
        side = self.tile + 2 * margin
        h, w = s.image.shape
        # window top-left so that the whole window lies inside the image when it fits
        wy = int(rng.integers(0, h - side + 1)) if h >= side else -((side - h) // 2)
        wx = int(rng.integers(0, w - side + 1)) if w >= side else -((side - w) // 2)
        img, msk, val = crop_with_context(s.image, s.mask, wy + margin, wx + margin, self.tile, margin)
        img, msk, val = augment_pair(img, msk, flip_kind, angle, out_size=self.tile, valid=val)
        img = photometric(img, rng, p=self.photometric_p)
        img = np.where(val, img, 0.0).astype(np.float32)
        return img, msk, val, {"name": s.name, "y": wy + margin, "x": wx + margin, "flip": flip_kind,
                               "angle": angle}

    def __getitem__(self, index: int):
        img, msk, val, _ = self.item_arrays(index)
        return _to_tensors(img, msk, val)


class FullTileDataset:
    """Deterministic tiles covering whole images (:func:`tile_positions`), no augmentation.

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


def _read_tile(path: Path) -> np.ndarray:
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        return tifffile.imread(path)
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im)


class TileDataset:
    """Tiles written by :func:`build_dataset`, read from disk (the thesis mode's data).

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
        raw = _read_tile(self.out_dir / row["image"])
        bits = int(row["bits"]) if str(row["bits"]) not in ("", "nan") else None
        img = normalize_for_network(raw, bits=bits)
        msk = _read_tile(self.out_dir / row["mask"]) > 0
        val = (_read_tile(self.out_dir / row["valid"]) > 0) if row["valid"] else np.ones(msk.shape, bool)
        if self.photometric_p > 0:
            rng = np.random.default_rng([self.seed, self.epoch, int(index)])
            img = np.where(val, photometric(img, rng, p=self.photometric_p), 0.0).astype(np.float32)
        return img, msk, val

    def __getitem__(self, index: int):
        return _to_tensors(*self.item_arrays(index))


def training_datasets(out_dir, seed: int = 0, images_dir=None, masks_dir=None, length=None):
    """The training and validation datasets of a folder written by :func:`build_dataset`.

    Thesis mode: :class:`TileDataset` ``"train"`` (photometric augmentation on) and ``"val"``.
    Practical mode: :class:`RandomCropDataset` over the training images (read from the folders
    recorded in ``split.json``, or ``images_dir``/``masks_dir``) and :class:`FullTileDataset` over
    the validation images.

    Returns
    -------
    (train, val)
    """
    out_dir = Path(out_dir)
    split, meta = read_split(out_dir / "split.json")
    if meta.get("mode") == "thesis":
        return TileDataset(out_dir, "train", seed=seed), TileDataset(out_dir, "val", seed=seed)
    images_dir = Path(images_dir or meta["images_dir"])
    masks_dir = Path(masks_dir or meta["masks_dir"])
    pairs = {Path(i).stem: (i, m) for i, m in pair_files(images_dir, masks_dir, strict=False)}
    missing = [i for i in split["train"] + split["val"] if i not in pairs]
    if missing:
        raise InputError(f"images of the split not found in {images_dir}: {', '.join(missing[:10])}")
    bar = meta.get("data_bar_rows")
    train = load_samples([pairs[i] for i in split["train"]], data_bar_rows=bar)
    val = load_samples([pairs[i] for i in split["val"]], data_bar_rows=bar)
    tile = int(meta.get("tile", TILE))
    return (RandomCropDataset(train, tile=tile, seed=seed, length=length),
            FullTileDataset(val, tile=tile))


# --------------------------------------------------------------------------------------------------
# building a data set on disk


@dataclass
class BuildResult:
    """What :func:`build_dataset` wrote."""

    out_dir: Path
    mode: str
    split: dict  # image ids per split
    tiles: object  # pandas DataFrame, one row per tile (tiles.csv)
    split_path: Path
    coco_path: Path
    n_particles: int
    problems: list = field(default_factory=list)

    def counts(self) -> dict:
        """Number of tiles per split."""
        return {k: int((self.tiles["split"] == k).sum()) for k in SPLIT_NAMES}


def _write_image(path: Path, arr: np.ndarray) -> None:
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        _atomic_write(path, lambda p: tifffile.imwrite(p, arr))
        return
    from PIL import Image

    _atomic_write(path, lambda p: Image.fromarray(arr).save(p, format="PNG"))


def _rng_for(seed: int, name: str) -> np.random.Generator:
    """A generator per (seed, image): positions do not depend on which other images exist."""
    return np.random.default_rng([int(seed), zlib.crc32(name.encode("utf-8"))])


def _pick_position(mask, tile, yr, xr, rng, min_fraction, tries: int = 100):
    """A random tile position whose tile holds particles (the thesis's crops show particles).

    Draws until the tile's particle fraction reaches ``min_fraction``; after ``tries`` draws the
    draw with the most particle pixels is used.
    """
    best, best_frac = None, -1.0
    for _ in range(tries):
        y, x = int(rng.integers(yr[0], yr[1] + 1)), int(rng.integers(xr[0], xr[1] + 1))
        frac = float(mask[y:y + tile, x:x + tile].mean())
        if frac >= min_fraction:
            return y, x
        if frac > best_frac:
            best, best_frac = (y, x), frac
    return best


def build_dataset(images_dir, masks_dir, out_dir, mode: str = "thesis", seed: int = 0,
                  tile: int = TILE, fractions=(0.7, 0.15, 0.15), n_source: int = 22, n_test: int = 6,
                  n_val: int = 16, val_grouping: str = "tile", min_particle_fraction: float = 0.02,
                  fmt: str = "png",
                  connectivity: int = 4, data_bar_rows: int | None = None, on_bad: str = "raise",
                  progress=None) -> BuildResult:
    """Write 256×256 tile pairs, ``tiles.csv``, ``split.json`` and ``coco.json`` to ``out_dir``.

    Parameters
    ----------
    images_dir, masks_dir : path
        SEM images and their masks (paired by :func:`pair_files`).
    out_dir : path
        Gets ``images/<tile>.png``, ``masks/<tile>.png`` (0/255), ``valid/<tile>.png`` for tiles
        with invented pixels (none when every tile has enough context), ``tiles.csv``,
        ``split.json``, ``coco.json``. Every file is written atomically; files of earlier builds
        with other names are left in place (``tiles.csv`` lists this build's tiles).
    mode : {"thesis", "practical"}
        See the module docstring.
    seed : int
        Determines the image split, the tile positions and the tile split.
    tile : int
    fractions : 3 floats
        Practical mode: train/val/test fractions of the images.
    n_source, n_test, n_val : int
        Thesis mode: source images (one tile each, 18 tiles per source), test images (one
        unaugmented tile each), validation tiles (drawn from the augmented tiles).
    val_grouping : {"tile", "source"}
        Thesis mode: ``"tile"`` draws ``n_val`` validation tiles at random, as the thesis;
        ``"source"`` holds out whole sources (``ceil(n_val / 18)`` of them, all their tiles).
    min_particle_fraction : float
        Thesis mode: a source or test tile is drawn at a random position where at least this
        fraction of its pixels are particle (the thesis's crops show particles; several BAM images
        are sparse and a blind crop can be empty).
    fmt : {"png", "tif"}
    connectivity : {4, 8}
        Particles for ``coco.json``.
    data_bar_rows : int, optional
        Data-bar height for all images; detected per image when None.
    on_bad : {"raise", "skip"}
        A pair that cannot be used (unreadable, non-binary or mis-sized mask, image too small):
        ``"raise"`` stops with every such pair listed; ``"skip"`` leaves it out and reports it in
        ``problems`` (and in ``split.json``).
    progress : callable, optional
        ``progress(done, total)`` after each tile written.

    Returns
    -------
    BuildResult
    """
    import pandas as pd

    if mode not in ("thesis", "practical"):
        raise InputError(f"mode must be 'thesis' or 'practical', not {mode!r}.")
    if fmt not in ("png", "tif"):
        raise InputError(f"fmt must be 'png' or 'tif', not {fmt!r}.")
    if val_grouping not in ("tile", "source"):
        raise InputError(f"val_grouping must be 'tile' or 'source', not {val_grouping!r}.")
    if on_bad not in ("raise", "skip"):
        raise InputError(f"on_bad must be 'raise' or 'skip', not {on_bad!r}.")
    out_dir = Path(out_dir)
    pairs = pair_files(images_dir, masks_dir)
    by_id = {Path(i).stem: (Path(i), Path(m)) for i, m in pairs}
    problems: list = []

    # read everything first, so that a bad pair stops the build before anything is written
    loaded = {}
    for name, (ip, mp) in by_id.items():
        try:
            sem, raw, mask = _load_pair(ip, mp, data_bar_rows)
            if raw.shape[0] < tile or raw.shape[1] < tile:
                raise InputError(f"{ip}: analysed area {raw.shape[1]}x{raw.shape[0]} is smaller "
                                 f"than a {tile}x{tile} tile.")
            if not mask.any():
                problems.append({"name": name, "problem": "empty", "detail": f"{mp.name} has no particles"})
            loaded[name] = (raw, mask, _bits_for(raw), sem.data_bar_rows)
        except Tio2FijiError as exc:
            problems.append({"name": name, "problem": "unusable pair", "detail": str(exc)})
    bad = [p for p in problems if p["problem"] == "unusable pair"]
    if bad and on_bad == "raise":
        raise InputError(f"{len(bad)} unusable image/mask pair(s): "
                         + " | ".join(p["detail"] for p in bad))
    ids = sorted(loaded)

    # Tiles are planned first (a record and a function that makes the arrays) and made one at a
    # time while writing, so that memory holds the source images but never all tiles.
    rows = []
    ext = "png" if fmt == "png" else "tif"

    def add(name, split, source, y, x, flip_kind, angle, make, bits):
        rec = {"name": name, "split": split, "source": source, "y": y, "x": x, "flip": flip_kind or "",
               "angle": angle, "image": f"images/{name}.{ext}", "mask": f"masks/{name}.{ext}",
               "valid": "", "bits": "" if bits is None else bits}
        rows.append((rec, make))

    def plain(raw, mask, y, x):
        sl = (slice(y, y + tile), slice(x, x + tile))
        return lambda: (raw[sl], mask[sl], np.ones((tile, tile), bool))

    def augmented(win, flip_kind, angle):
        return lambda: augment_pair(win[0], win[1], flip_kind, angle, out_size=tile, valid=win[2])

    if mode == "thesis":
        if n_source + n_test > len(ids):
            raise InputError(f"thesis mode needs {n_source} source + {n_test} test images (one tile "
                             f"from each), but {len(ids)} usable pairs were found; lower n_source/n_test.")
        split = make_split(ids, counts=(n_source, 0, n_test), seed=seed)
        margin = _context_margin(tile, THESIS_ANGLES)
        for name in split["train"]:
            raw, mask, bits, _ = loaded[name]
            rng = _rng_for(seed, name)
            h, w = raw.shape
            # position with room for the rotation context when the image allows it
            lo_y, hi_y = (margin, h - tile - margin) if h >= tile + 2 * margin else (0, h - tile)
            lo_x, hi_x = (margin, w - tile - margin) if w >= tile + 2 * margin else (0, w - tile)
            y, x = _pick_position(mask, tile, (lo_y, hi_y), (lo_x, hi_x), rng, min_particle_fraction)
            win = crop_with_context(raw, mask, y, x, tile, margin)
            for flip_kind, angle in THESIS_VARIANTS:
                add(f"{name}_{flip_kind}_r{angle:03d}", "train", name, y, x, flip_kind, angle,
                    augmented(win, flip_kind, angle), bits)
        for name in split["test"]:
            raw, mask, bits, _ = loaded[name]
            rng = _rng_for(seed, name)
            y, x = _pick_position(mask, tile, (0, raw.shape[0] - tile), (0, raw.shape[1] - tile), rng,
                                  min_particle_fraction)
            add(f"{name}_y{y:04d}_x{x:04d}", "test", name, y, x, None, 0, plain(raw, mask, y, x), bits)
        # the tile-level validation split
        aug = [k for k, r in enumerate(rows) if r[0]["split"] == "train"]
        rng = np.random.default_rng([int(seed), 1])
        if val_grouping == "tile":
            if n_val > len(aug):
                raise InputError(f"n_val={n_val} but only {len(aug)} augmented tiles.")
            chosen = set(np.asarray(aug)[rng.permutation(len(aug))[:n_val]].tolist())
        else:
            n_src = math.ceil(n_val / len(THESIS_VARIANTS))
            if n_src >= len(split["train"]):
                raise InputError(f"val_grouping='source' with n_val={n_val} would hold out every source.")
            held = set(rng.permutation(split["train"])[:n_src].tolist())
            chosen = {k for k in aug if rows[k][0]["source"] in held}
        for k in chosen:
            rows[k][0]["split"] = "val"
        meta = {"mode": "thesis", "seed": seed, "fractions": None,
                "counts": {"source_images": n_source, "test_images": n_test, "val_tiles": n_val,
                           "tiles_per_source": len(THESIS_VARIANTS)},
                "val_grouping": val_grouping,
                "variants": [list(v) for v in THESIS_VARIANTS],
                "note": ("splits lists image ids: 'train' are the source images of the train and val "
                         "tiles, 'test' the images of the test tiles. With val_grouping='tile' (the "
                         "thesis) validation tiles have flipped/rotated siblings in the training set.")}
    else:
        split = make_split(ids, fractions=fractions, seed=seed)
        which = {i: s for s, lst in split.items() for i in lst}
        for name in ids:
            raw, mask, bits, _ = loaded[name]
            for y, x in tile_positions(raw.shape, tile):
                add(f"{name}_y{y:04d}_x{x:04d}", which[name], name, y, x, None, 0,
                    plain(raw, mask, y, x), bits)
        meta = {"mode": "practical", "seed": seed, "fractions": list(fractions), "counts": None}

    total = len(rows)
    coco, coco_problems = None, []
    for done, (rec, make) in enumerate(rows, 1):
        img, msk, val = make()
        _write_image(out_dir / rec["image"], img)
        _write_image(out_dir / rec["mask"], msk.astype(np.uint8) * 255)
        if not val.all():
            rec["valid"] = f"valid/{rec['name']}.{ext}"
            _write_image(out_dir / rec["valid"], val.astype(np.uint8) * 255)
        rec["valid_fraction"] = float(val.mean())
        part, probs = coco_from_masks([msk], names=[rec["name"]], file_names=[rec["image"]],
                                      image_info=[{"split": rec["split"], "source": rec["source"]}],
                                      connectivity=connectivity, first_image_id=done)
        rec["n_particles"] = len(part["annotations"])
        if coco is None:
            coco = part
        else:
            coco["images"] += part["images"]
            for a in part["annotations"]:
                a["id"] = len(coco["annotations"]) + 1
                coco["annotations"].append(a)
        coco_problems += probs
        if progress is not None:
            progress(done, total)

    if coco is None:  # nothing usable
        coco = coco_from_masks([], connectivity=connectivity)[0]
    table = pd.DataFrame([r[0] for r in rows], columns=["name", "split", "source", "y", "x", "flip",
                                                       "angle", "image", "mask", "valid", "bits",
                                                       "valid_fraction", "n_particles"])
    n_particles = len(coco["annotations"])
    coco["info"].update({"mode": mode, "seed": seed,
                         "source_data": "see the licence of the images the tiles were cut from"})
    tiles = {s: list(table.loc[table["split"] == s, "name"]) for s in SPLIT_NAMES}
    meta.update({
        "tile": tile, "connectivity": connectivity,
        "images_dir": str(Path(images_dir).resolve()), "masks_dir": str(Path(masks_dir).resolve()),
        "data_bar_rows": data_bar_rows,
        "tiles": tiles,
        "tile_counts": {s: len(v) for s, v in tiles.items()},
        "skipped": [p for p in problems if p["problem"] == "unusable pair"],
    })
    coco_path = write_json(out_dir / "coco.json", coco)
    write_csv(out_dir / "tiles.csv", table)
    split_path = write_split(out_dir / "split.json", split, meta)
    return BuildResult(out_dir=out_dir, mode=mode, split=split, tiles=table, split_path=split_path,
                       coco_path=coco_path, n_particles=n_particles,
                       problems=problems + [dict(p, problem=f"tile: {p['problem']}") for p in coco_problems])
