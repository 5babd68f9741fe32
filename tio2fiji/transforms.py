"""The numpy rules that training and inference share: how an image becomes network input, where
tiles go, how overlapping tiles are blended, and the augmentation's geometry and photometry.

One module serves both sides (as Cellpose's ``transforms.py`` serves ``core`` and ``train``), so a
tile is scaled, placed and weighted the same way when the network learns and when it predicts.

*Scaling.* :func:`normalize_for_network` is the only place where intensities are rescaled (training
tiles are scaled with the bit depth of their whole source image, :func:`input_bits`, so a tile is
scaled as the full image is at inference).

*Tiles.* :func:`tile_positions` / :func:`axis_positions` place tiles every ``stride`` pixels with
the last one flush with the border (the training tiles and the inference tiling);
:func:`tile_weights` are the raised-cosine blending weights of overlapping inference tiles.

*Non-right rotations.* A 256×256 tile rotated by 120° or 225° needs pixels from outside the tile at
its corners. Filling them with a constant would invent background (or, for a mask, particle) that
is not in the data. We never do that: the tile is cut from the full analysed image with enough
context around it (``tile · (|cos θ| + |sin θ|)``, 363 px for 225°; :func:`context_margin`,
:func:`crop_with_context`), the context window is flipped and rotated (image bilinear, mask
nearest-neighbour so it stays binary, same geometry; :func:`augment_pair`), and the central
256×256 is kept, so every pixel is real data. Where the context is not available (a tile at the
image border, a source smaller than the window) the missing pixels are marked in a ``valid`` mask:
the mask is False and the image 0 there, and losses and metrics must ignore them
(:func:`tio2fiji.metrics.iou` takes ``valid``). We chose this over cropping the inscribed square and
resizing it, which would change the particles' scale by up to √2 and blur the masks.

*Photometric augmentation* (thesis §3.1, :func:`photometric`): with probability 0.4 both a
brightness factor drawn uniformly from [0.9, 1.32] and a Gaussian blur (σ = 1, kernel 3) are
applied, as torchvision's ``RandomApply([ColorJitter(brightness=(0.9, 1.32)), GaussianBlur(3, 1)],
p=0.4)``; to the image only, never to the mask.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from .errors import InputError

__all__ = [
    "TILE", "FLIPS", "THESIS_ANGLES", "THESIS_VARIANTS", "normalize_for_network", "input_bits",
    "axis_positions", "tile_positions", "tile_weights", "flip", "rotation_footprint",
    "context_margin", "rotate_pair", "augment_pair", "crop_with_context", "gaussian_blur",
    "photometric", "DIHEDRAL", "dihedral", "undo_dihedral", "resample_image", "resample_map",
    "resample_labels", "scaled_shape", "coarsen", "SCALES", "SCALE_TOLERANCE", "SCALE_RANGE", "TRAINED_PIXEL_SIZE_M",
    "scale_warning",
]

#: The networks' tile side (thesis: 256×256).
TILE = 256
FLIPS = ("v", "h", "vh")
THESIS_ANGLES = (90, 120, 180, 225, 270)
#: The 18 (flip, angle) variants of one source tile in the thesis: 3 flips × (unrotated + 5 angles).
THESIS_VARIANTS = tuple((f, a) for f in FLIPS for a in (0,) + THESIS_ANGLES)
_BITS = (8, 10, 12, 14, 16, 32)


# --------------------------------------------------------------------------------------------------
# network input


def normalize_for_network(image: np.ndarray, bits: int | None = None) -> np.ndarray:
    """Scale a gray image to float32 in ``[0, 1]``: the networks' input convention.

    This is the only place where intensities are rescaled; measurements never use its output.

    * uint8: divided by 255 (as in training).
    * other unsigned integers: divided by ``2**bits - 1``. ``bits`` defaults to the smallest of
      8, 10, 12, 14, 16 that holds the image's maximum, so 12-bit detector data stored in 16-bit
      containers are not squeezed into the bottom sixteenth of the range.
    * floats already in ``[0, 1]`` are kept; integer-valued floats up to 65535 are the 8- or
      16-bit signal they hold (as :func:`tio2fiji.io.read_sem` reads float files); any other float
      image is refused (never min-max stretched: that would change the signal the network saw).
    """
    img = np.asarray(image)
    if img.dtype == np.uint8:
        out = img.astype(np.float32)
        out /= 255.0  # in place: no second full-size copy
        return out
    if np.issubdtype(img.dtype, np.unsignedinteger) or np.issubdtype(img.dtype, np.signedinteger):
        if np.issubdtype(img.dtype, np.signedinteger) and img.min() < 0:
            raise InputError(f"signed image with negative values (minimum {img.min()}): cannot be a "
                             f"detector signal; save it as unsigned 8- or 16-bit.")
        if bits is None:
            bits = input_bits(img)
        return _scaled_float32(img, float(2 ** bits - 1))
    img = img.astype(np.float32)
    lo, hi = float(img.min()), float(img.max())
    if lo >= 0.0 and hi <= 1.0:
        return img
    if lo >= 0.0 and hi <= 65535.0 and np.array_equal(img, np.round(img)):  # io._pixels.float_signal's rule
        return normalize_for_network(img.astype(np.uint8 if hi <= 255.0 else np.uint16), bits)
    raise InputError(f"float image with values from {lo:g} to {hi:g}: neither a [0, 1] signal nor "
                     f"integers 0-65535; convert it to 8- or 16-bit first.")


def _scaled_float32(img: np.ndarray, scale: float, block: int = 2 ** 18) -> np.ndarray:
    """``img / scale`` computed in float64 and stored as float32, about ``block`` pixels at a time,
    so that a large image never has a full-size float64 copy (8 bytes per pixel); same values as
    at once."""
    if img.ndim == 0 or img.size == 0:
        return (img.astype(np.float64) / scale).astype(np.float32)
    out = np.empty(img.shape, np.float32)
    rows = max(1, block // (img.size // img.shape[0]))
    for r in range(0, img.shape[0], rows):
        out[r:r + rows] = img[r:r + rows].astype(np.float64) / scale
    return out


def input_bits(image: np.ndarray) -> int | None:
    """The bit depth :func:`normalize_for_network` scales an integer image by (None for floats).

    8 for uint8; otherwise the smallest of 8, 10, 12, 14, 16, 32 that holds the image's maximum
    (64 beyond). Training tiles are scaled with the bits of their whole source image, so a tile is
    scaled as the full image is at inference.
    """
    img = np.asarray(image)
    if not np.issubdtype(img.dtype, np.integer):
        return None
    if img.dtype == np.uint8:
        return 8
    top = int(img.max(initial=0))
    return next((b for b in _BITS if top < 2 ** b), 64)


# --------------------------------------------------------------------------------------------------
# tiles


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


def _ramp(n: int, overlap: int, taper_start: bool, taper_end: bool) -> np.ndarray:
    """1-D weights: a raised-cosine rise over ``overlap`` pixels at tapered ends, 1 elsewhere.

    The rise samples ``0.5 - 0.5 cos`` at pixel centres, so no weight is 0 and every pixel covered
    by a tile has a positive total weight.
    """
    w = np.ones(n, np.float64)
    m = min(int(overlap), n // 2)
    if m > 0:
        rise = 0.5 - 0.5 * np.cos(np.pi * (np.arange(m) + 0.5) / m)
        if taper_start:
            w[:m] = rise
        if taper_end:
            w[n - m:] = rise[::-1]
    return w


def tile_weights(tile: int, overlap: int, top: bool, bottom: bool, left: bool, right: bool) -> np.ndarray:
    """2-D blending weights of one tile; a side is tapered when the flag is True (an inner side)."""
    return np.outer(_ramp(tile, overlap, top, bottom), _ramp(tile, overlap, left, right))


# --------------------------------------------------------------------------------------------------
# augmentation geometry


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


#: The 8 symmetries of the square (test-time augmentation): (quarter turns, then transpose or not).
DIHEDRAL = tuple((k, t) for t in (False, True) for k in range(4))


def dihedral(a: np.ndarray, index: int) -> np.ndarray:
    """Symmetry ``index`` of :data:`DIHEDRAL` applied to the last two axes of ``a``."""
    k, t = DIHEDRAL[int(index)]
    out = np.rot90(a, k, axes=(-2, -1))
    return np.swapaxes(out, -2, -1) if t else out


def undo_dihedral(a: np.ndarray, index: int) -> np.ndarray:
    """The inverse of :func:`dihedral`: ``undo_dihedral(dihedral(a, i), i)`` is ``a``."""
    k, t = DIHEDRAL[int(index)]
    out = np.swapaxes(a, -2, -1) if t else a
    return np.rot90(out, -k, axes=(-2, -1))


def rotation_footprint(size: int, angle: float) -> int:
    """Side of the axis-aligned square of source pixels that a ``size``-pixel square needs after a
    rotation by ``angle`` degrees (``size`` for right angles; 363 for 256 at 45°/225°)."""
    if angle % 90 == 0:
        return int(size)
    t = math.radians(angle)
    return int(math.ceil(size * (abs(math.cos(t)) + abs(math.sin(t))) - 1e-9))


def context_margin(size: int, angles) -> int:
    """Margin around a tile that makes every rotation in ``angles`` use real pixels only.

    One extra pixel keeps the bilinear neighbours of the outermost samples inside too.
    """
    need = max(rotation_footprint(size, a) for a in angles)
    return 0 if need == size else (need - size + 1) // 2 + 1


def _as_mask(mask) -> np.ndarray:
    """A binary mask as bool; integer labels (one value per particle) kept as they are."""
    mask = np.asarray(mask)
    return mask if np.issubdtype(mask.dtype, np.integer) else mask.astype(bool)


def _keep_valid(mask: np.ndarray, valid: np.ndarray) -> np.ndarray:
    return mask & valid if mask.dtype == bool else np.where(valid, mask, 0).astype(mask.dtype)


def rotate_pair(image, mask, angle: float, out_shape=None, valid=None, exact: bool = True):
    """Rotate an image and its mask with the same geometry.

    The rotation is counter-clockwise as displayed (like ``np.rot90`` and torchvision) by
    ``angle`` degrees about the array's centre; the output (``out_shape``, default the input's shape
    rotated) is centred on the same point. Right angles are exact (``np.rot90``, no interpolation).
    Other angles resample the image bilinearly and the mask nearest-neighbour (it stays binary;
    integer labels stay labels, so touching particles stay apart whatever the angle).

    Parameters
    ----------
    image : ndarray, 2-D
    mask : ndarray of bool or of integer labels, same shape
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
    mask : ndarray of bool (or the labels' dtype)
        False (0) wherever ``valid`` is False.
    valid : ndarray of bool
        Output pixels computed only from valid input pixels. Elsewhere the image is 0.
    """
    image = np.asarray(image)
    mask = _as_mask(mask)
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
            return (np.ascontiguousarray(img), np.ascontiguousarray(_keep_valid(msk, val)),
                    np.ascontiguousarray(val))
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
    msk = np.zeros((oh, ow), mask.dtype)
    msk[inside] = mask[iy[inside], ix[inside]]
    img[~val] = 0.0
    return img, _keep_valid(msk, val), val


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
    img, msk, val = rotate_pair(flip(image, flip_kind), flip(_as_mask(mask), flip_kind),
                                angle, out_shape=out_shape, valid=v)
    return _restore_dtype(img, dtype), msk, val


def crop_with_context(image, mask, y: int, x: int, size: int, margin: int):
    """Cut the window ``[y - margin, y + size + margin)`` × same for x; pixels outside the image are
    0 in the image, False (0) in the mask (or labels) and False in the returned ``valid``."""
    h, w = image.shape
    mask = _as_mask(mask)
    side = size + 2 * margin
    y0, x0 = y - margin, x - margin
    img = np.zeros((side, side), image.dtype)
    msk = np.zeros((side, side), mask.dtype)
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


# scale: images brought to a model's pixel size and its output back to the image's grid

#: ``segment(scale=...)``: ``"model"`` brings a calibrated image to the model's pixel size,
#: ``"none"`` segments it at its own.
SCALES = ("model", "none")
#: The pixel size (m) of the BAM images every bundled model was trained on: what a model file that
#: does not store its own pixel size is taken to have seen.
TRAINED_PIXEL_SIZE_M = 7.34375e-9
#: Relative pixel-size difference below which an image is not resampled to the model's scale.
SCALE_TOLERANCE = 0.02
#: Image pixel size / model pixel size outside which an image lies beyond the scales the model
#: supports (particles too few pixels wide once resampled, or detail invented by upsampling),
#: measured with ``benchmarks/accuracy/scale_bam.py`` (README, *Magnification*).
SCALE_RANGE = (0.25, 1.5)


def scale_warning(pixel_size_m: float, model_pixel_size_m: float) -> str | None:
    """What to tell a user whose image (``pixel_size_m``) lies outside :data:`SCALE_RANGE` of a
    model's pixel size; None inside it."""
    factor = float(pixel_size_m) / float(model_pixel_size_m)
    lo, hi = SCALE_RANGE
    if lo <= factor <= hi:
        return None
    return (f"pixel size {pixel_size_m * 1e9:.4g} nm is {factor:.2f}x the model's {model_pixel_size_m * 1e9:.4g} nm, "
            f"outside the range it supports ({lo}x-{hi}x): "
            + ("the particles are too few pixels wide to be cut apart reliably"
               if factor > hi else "resampling discards detail the model never saw"))


def scaled_shape(shape, factor: float) -> tuple:
    """``shape`` times ``factor``, rounded, at least 1 pixel per axis."""
    return tuple(max(1, int(round(n * float(factor)))) for n in shape)


#: :func:`resample_image` smooths before shrinking by more than this factor (beyond the scales the
#: models support: :data:`SCALE_RANGE`).
ANTIALIAS_ABOVE = 4.0


def resample_image(image, shape) -> np.ndarray:
    """A gray image resampled to ``shape`` (cubic), in its own dtype (integers rounded and clipped
    to their range).

    Up to :data:`ANTIALIAS_ABOVE` (4×) the cubic kernel alone shrinks: on the BAM test images
    magnified 2× and 3× (cubic) and brought back, skimage's Gaussian anti-aliasing cost 0-4 % (2×)
    and 4-11 % (3×) of the particles and moved the median size by up to 9 %, the cubic kernel
    alone 0-0.4 % and 1 % (``benchmarks/accuracy/scale_bam.py``). Beyond 4× the Gaussian is applied, so that
    detail much finer than the new pixels does not alias.
    """
    from skimage.transform import resize

    img = np.asarray(image)
    shrink = max(img.shape[0] / shape[0], img.shape[1] / shape[1])
    out = resize(img.astype(np.float64), shape, order=3, mode="reflect",
                 anti_aliasing=shrink > ANTIALIAS_ABOVE + 1e-9, preserve_range=True)
    return _restore_dtype(out, img.dtype)


def coarsen(image, factor: float) -> np.ndarray:
    """``image`` as a microscope with ``factor``× coarser pixels would record it, brought back to
    this grid the way :func:`tio2fiji.predict.segment` brings a coarse image to a model's scale
    (:func:`resample_image` down, then up): the training augmentation for images acquired at a
    lower magnification than the model's (``factor`` 1 returns the image unchanged)."""
    img = np.asarray(image)
    if not float(factor) >= 1.0:
        raise InputError(f"coarsen factor must be at least 1, got {factor}.")
    if factor == 1.0:
        return img
    return resample_image(resample_image(img, scaled_shape(img.shape, 1.0 / float(factor))), img.shape)


def resample_map(values, shape) -> np.ndarray:
    """A map (probability, ``(H, W)`` or ``(C, H, W)``) resampled to ``shape`` (bilinear,
    area-averaged when it shrinks), float32."""
    from skimage.transform import resize

    v = np.asarray(values, dtype=np.float32)
    full = tuple(v.shape[:-2]) + tuple(shape)
    shrink = shape[0] < v.shape[-2] or shape[1] < v.shape[-1]
    return resize(v, full, order=1, mode="edge", anti_aliasing=shrink, preserve_range=True).astype(np.float32)


def resample_labels(labels, shape) -> np.ndarray:
    """A label image resampled to ``shape`` by its nearest pixel (labels are never blended)."""
    lab = np.asarray(labels)
    ys = np.minimum(((np.arange(shape[0]) + 0.5) * lab.shape[0] / shape[0]).astype(np.int64), lab.shape[0] - 1)
    xs = np.minimum(((np.arange(shape[1]) + 0.5) * lab.shape[1] / shape[1]).astype(np.int64), lab.shape[1] - 1)
    return lab[ys[:, None], xs[None, :]]
