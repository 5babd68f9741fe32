"""Each particle's distance to its own edge, normalised to 1 at its centre: the third target of a
distance U-Net (border band + distance), and its particles.

A border band (:mod:`._border`) can cover a small particle whole, and a particle without a seed
is grown over by its neighbour. The normalised distance peaks at the centre of every particle,
small or large, so each one keeps a seed of its own.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ..errors import InputError
from ._extrema import h_maxima
from ._labels import check_labels, connected_components, grow_seeds

__all__ = ["DISTANCE_DEFAULTS", "inner_distance", "labels_from_distance"]

#: How a distance U-Net's outputs become particles (:func:`labels_from_distance`); a model file
#: stores those chosen on its validation images. ``border_threshold`` 1.0: the band is not used
#: for the seeds. A network's distance map is noisier than its target: unsmoothed, single-pixel
#: seeds split particles (campaign stage 7's first epochs: validation F1 0.46 with seeds over 0.5,
#: no smoothing; 0.83 with these).
DISTANCE_DEFAULTS = {"seed_threshold": 0.4, "min_seed": 4, "border_threshold": 1.0, "sigma": 1.0, "h": 0.0}


def inner_distance(labels) -> np.ndarray:
    """Per particle, each pixel's Euclidean distance to the nearest pixel outside the particle
    (background or another particle; the image edge counts as outside), divided by the particle's
    largest such distance: 1 at its centre, ``1 / max`` on its edge, 0 on the background.

    Parameters
    ----------
    labels : (H, W) integer array
        0 = background; touching particles carry different labels.

    Returns
    -------
    (H, W) ndarray of float32
    """
    lab = check_labels(labels, "inner_distance").astype(np.int64, copy=False)
    out = np.zeros(lab.shape, np.float64)
    for k, sl in enumerate(ndi.find_objects(lab), 1):
        if sl is None:
            continue
        sl = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in sl)
        inside = lab[sl] == k
        d = ndi.distance_transform_edt(np.pad(inside, 1, constant_values=False))[1:-1, 1:-1]
        out[sl][inside] = d[inside] / d[inside].max()
    return out.astype(np.float32)


def labels_from_distance(probability, border, distance, threshold: float = 0.5,
                         seed_threshold: float = DISTANCE_DEFAULTS["seed_threshold"],
                         min_seed: int = DISTANCE_DEFAULTS["min_seed"],
                         border_threshold: float = DISTANCE_DEFAULTS["border_threshold"],
                         sigma: float = DISTANCE_DEFAULTS["sigma"], h: float = DISTANCE_DEFAULTS["h"]) -> np.ndarray:
    """Particles of a distance U-Net: seeds are the particle centres its distance map marks,
    grown back over the particle mask.

    Each 4-connected region where the particle probability exceeds ``threshold``, the predicted
    normalised distance exceeds ``seed_threshold`` and the border probability does not exceed
    ``border_threshold`` seeds one particle (regions under ``min_seed`` pixels seed none); a
    watershed of the negated distance grows the seeds over the mask (``probability > threshold``)
    and leaves one-pixel lines between particles, like the manual masks. A mask component without
    a seed stays a particle of its own. Particles are numbered in raster order.

    With ``h > 0`` the seeds are instead the regional maxima of the distance inside those regions
    that stand more than ``h`` above their surroundings, one seed each: a region whose distance
    stays over ``seed_threshold`` across the contact of two touching particles is split at its
    saddle.

    Parameters
    ----------
    probability, border, distance : (H, W) float arrays
        The network's three maps (sigmoids).
    threshold : float
        Particle pixels: probability above it.
    seed_threshold : float
        In (0, 1): seed pixels have a predicted distance above it; higher splits more.
    min_seed : int
        Smallest seed (pixels).
    border_threshold : float
        In (0, 1]: seed pixels also have border probability at or below it (1: the band is not
        used).
    sigma : float
        Gaussian smoothing (pixels) of the distance map first (0: none).
    h : float
        0: every seed region is one particle; > 0: one seed per distance maximum higher than ``h``
        (in units of the normalised distance).

    Returns
    -------
    ndarray of uint32
    """
    prob = np.asarray(probability, dtype=np.float32)
    bnd = np.asarray(border, dtype=np.float32)
    dist = np.asarray(distance, dtype=np.float32)
    if prob.ndim != 2 or bnd.shape != prob.shape or dist.shape != prob.shape:
        raise InputError(f"particle {prob.shape}, border {bnd.shape} and distance {dist.shape} maps must "
                         f"be the same 2-D shape.")
    if not 0.0 < float(seed_threshold) < 1.0 or not 0.0 < float(border_threshold) <= 1.0:
        raise InputError(f"seed_threshold must be in (0, 1) and border_threshold in (0, 1], got "
                         f"{seed_threshold}, {border_threshold}.")
    if sigma < 0 or int(min_seed) < 1 or not 0 <= h < 1:
        raise InputError(f"sigma must be >= 0, min_seed >= 1 and h in [0, 1) (got {sigma}, {min_seed}, {h}).")
    if sigma > 0:
        dist = ndi.gaussian_filter(dist, float(sigma))
    mask = prob > threshold
    if not mask.any():
        return np.zeros(prob.shape, np.uint32)
    core = mask & (dist > seed_threshold) & (bnd <= border_threshold)
    if h > 0:
        core = h_maxima(np.where(core, dist, 0).astype(np.float32), float(h)) & core
    seeds = connected_components(core, 8 if h > 0 else 4, dtype=np.int64)
    return grow_seeds(-dist, seeds, mask, min_seed)
