"""The border band where two particles meet (the DSB-2018 winners' "touching borders"): the
second target of a border U-Net, and its particles."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import watershed

from ..errors import InputError
from ._extrema import h_maxima
from ._labels import check_labels, connected_components, grow_seeds

__all__ = ["BORDER_DEFAULTS", "BORDER_WIDTH", "border_band", "labels_from_border"]

#: How a border-band U-Net's outputs become particles (:func:`labels_from_border`); a model file
#: stores those chosen on its validation images.
BORDER_DEFAULTS = {"border_threshold": 0.5, "min_seed": 1, "sigma": 0.0, "h": 0.0}
#: Half-width (pixels) of the border band a border U-Net is trained to mark (:func:`border_band`):
#: a pixel whose 5×5 window holds two particles.
BORDER_WIDTH = 2


def border_band(labels, width: int = BORDER_WIDTH) -> np.ndarray:
    """Pixels whose ``(2 width + 1)``-square window holds two or more different particles.

    The band covers the one-pixel gaps of the manual masks and ``width`` pixels on each side of
    them, particle pixels included; outside touching particles it is empty. It is the second
    training target of a border U-Net (:mod:`tio2fiji.training.border`).

    Parameters
    ----------
    labels : (H, W) integer array
        0 = background; touching particles carry different labels.
    width : int
        Half-width in pixels (>= 1).

    Returns
    -------
    (H, W) ndarray of bool
    """
    lab = check_labels(labels, "border_band")
    if int(width) < 1:
        raise InputError(f"border width must be at least 1 pixel, got {width}.")
    lab = lab.astype(np.int64, copy=False)
    size = 2 * int(width) + 1
    top = ndi.maximum_filter(lab, size=size, mode="constant", cval=0)
    none = int(lab.max(initial=0)) + 1  # background never counts as the smallest particle
    low = ndi.minimum_filter(np.where(lab > 0, lab, none), size=size, mode="constant", cval=none)
    return (low < none) & (top > low)




def labels_from_border(probability, border, threshold: float = 0.5,
                       border_threshold: float = BORDER_DEFAULTS["border_threshold"],
                       min_seed: int = BORDER_DEFAULTS["min_seed"],
                       sigma: float = BORDER_DEFAULTS["sigma"], h: float = BORDER_DEFAULTS["h"]) -> np.ndarray:
    """Particles of a border U-Net: seeds are the particle pixels off the border band, grown back
    over the particle mask.

    Each 4-connected region where the particle probability exceeds ``threshold`` and the border
    probability does not exceed ``border_threshold`` seeds one particle (regions under ``min_seed``
    pixels seed none); a watershed on the border probability grows the seeds over the mask
    (``probability > threshold``) and leaves one-pixel lines between particles, like the manual
    masks. A mask component without a seed (a particle smaller than the band) stays a particle of
    its own. Particles are numbered in raster order.

    With ``h > 0`` a seed region is split further where it narrows: each regional maximum of its
    distance to the band or the background that stands more than ``h`` pixels above its
    surroundings seeds its own particle (as :func:`tio2fiji.instances.watershed_split` does on
    the whole mask), for touching particles whose band the network drew with gaps.

    Parameters
    ----------
    probability, border : (H, W) float arrays
        The network's two maps (sigmoids).
    threshold : float
        Particle pixels: probability above it.
    border_threshold : float
        In (0, 1): seed pixels have border probability at or below it; higher splits less.
    min_seed : int
        Smallest seed (pixels); smaller ones are noise in the band.
    sigma : float
        Gaussian smoothing (pixels) of the border map first (0: none).
    h : float
        0: every seed region is one particle; > 0: regions are split at distance maxima higher
        than ``h`` pixels (see above).

    Returns
    -------
    ndarray of uint32
    """
    prob = np.asarray(probability, dtype=np.float32)
    bnd = np.asarray(border, dtype=np.float32)
    if prob.ndim != 2 or bnd.shape != prob.shape:
        raise InputError(f"particle map {prob.shape} and border map {bnd.shape} must be the same 2-D shape.")
    if not 0.0 < float(border_threshold) < 1.0:
        raise InputError(f"border_threshold must be in (0, 1), got {border_threshold}.")
    if sigma < 0 or int(min_seed) < 1 or h < 0:
        raise InputError(f"sigma and h must be >= 0 and min_seed >= 1 (got {sigma}, {h}, {min_seed}).")
    if sigma > 0:
        bnd = ndi.gaussian_filter(bnd, float(sigma))
    mask = prob > threshold
    if not mask.any():
        return np.zeros(prob.shape, np.uint32)
    core = mask & (bnd <= border_threshold)
    seeds = connected_components(core, 4, dtype=np.int64)
    if h > 0 and seeds.max() > 0:
        dist = ndi.distance_transform_edt(core)
        peaks = connected_components(h_maxima(dist, float(h)) & core, 8, dtype=np.int64)
        # regions with peaks are split between them; regions without keep one seed
        split = watershed(-dist, peaks, mask=core)
        seeds = np.where(split > 0, split, np.where(seeds > 0, seeds + split.max(), 0))
    return grow_seeds(bnd, seeds, mask, min_seed)
