"""Particles (a label image) from a probability map: connected components, or a split of touching
particles by a distance-transform watershed.

A semantic network such as the U-Net gives each pixel a particle probability; touching particles
then merge into one connected component (the thesis's Fig. 31). :func:`watershed_split` cuts them
apart where the particle narrows: the Euclidean distance to the background, optionally weighted by
the probability (a network trained to mark the one-pixel gaps between particles, as the bundled
model is, lowers the probability there), is smoothed, its regional maxima higher than ``h`` pixels
above their surroundings become one seed each, and a watershed grows the seeds over the mask,
leaving one-pixel lines between particles like the BAM manual masks.

The default parameters were chosen on the four validation images of the bundled model's split
(BAM TiO2, 1908260/284/292/306) by mean instance IoU; see ``benchmarks/separation.py``.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError

__all__ = ["SEPARATIONS", "WATERSHED_DEFAULTS", "connected_components", "watershed_split",
           "label_particles"]

SEPARATIONS = ("none", "watershed")
#: chosen on the validation images (benchmarks/separation.py): h in px of distance, sigma in px
WATERSHED_DEFAULTS = {"h": 0.75, "sigma": 1.0, "weight_by_probability": True}


def _check_mask(mask, name="mask") -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise InputError(f"{name} must be 2-D, got shape {mask.shape}.")
    return mask.astype(bool, copy=False)


def connected_components(mask, connectivity: int = 4) -> np.ndarray:
    """Label the connected components of a binary mask.

    Parameters
    ----------
    mask : ndarray of bool, 2-D
    connectivity : {4, 8}

    Returns
    -------
    ndarray of uint32
        0 = background, particles 1..n in raster order of their first pixel.
    """
    from skimage.measure import label

    if connectivity not in (4, 8):
        raise InputError(f"connectivity must be 4 or 8, got {connectivity}.")
    mask = _check_mask(mask)
    return label(mask, connectivity=1 if connectivity == 4 else 2).astype(np.uint32)


def watershed_split(mask, probability=None, h: float = WATERSHED_DEFAULTS["h"],
                    sigma: float = WATERSHED_DEFAULTS["sigma"],
                    weight_by_probability: bool = WATERSHED_DEFAULTS["weight_by_probability"],
                    watershed_line: bool = True) -> np.ndarray:
    """Split touching particles of a binary mask by a distance-transform watershed.

    Parameters
    ----------
    mask : ndarray of bool, 2-D
        Particle pixels.
    probability : ndarray of float, optional
        Particle probability of the same shape; with ``weight_by_probability`` the distance map is
        multiplied by it, so low-probability gaps become valleys.
    h : float
        Minimum height (pixels of distance) of a maximum above the saddle to its neighbour for it to
        seed its own particle. Smaller splits more.
    sigma : float
        Gaussian smoothing (pixels) of the distance map before the seeds are found; 0 for none.
    weight_by_probability : bool
    watershed_line : bool
        Leave one background pixel between touching particles (as the manual masks do).

    Returns
    -------
    ndarray of uint32
        0 = background, particles 1..n in raster order.
    """
    from scipy import ndimage as ndi
    from skimage.measure import label
    from skimage.morphology import h_maxima
    from skimage.segmentation import relabel_sequential, watershed

    mask = _check_mask(mask)
    if h <= 0 or sigma < 0:
        raise InputError(f"watershed needs h > 0 and sigma >= 0 (got h={h}, sigma={sigma}).")
    if not mask.any():
        return np.zeros(mask.shape, np.uint32)
    dist = ndi.distance_transform_edt(mask)
    if weight_by_probability and probability is not None:
        probability = np.asarray(probability, dtype=np.float64)
        if probability.shape != mask.shape:
            raise InputError(f"probability map {probability.shape} and mask {mask.shape} differ in size.")
        dist = dist * probability
    if sigma:
        dist = ndi.gaussian_filter(dist, sigma)
    seeds = label(h_maxima(dist, h), connectivity=2)
    lab = watershed(-dist, seeds, mask=mask, watershed_line=watershed_line)
    # components without a seed (flat, tiny) keep their own label instead of vanishing
    rest = mask & (lab == 0)
    if watershed_line:
        # line pixels are background on purpose; only whole unseeded components are added back
        comp = label(mask, connectivity=1)
        seeded = np.unique(comp[lab > 0])
        rest = np.isin(comp, seeded, invert=True) & mask
    if rest.any():
        extra = label(rest, connectivity=1)
        lab = np.where(extra > 0, extra + lab.max(), lab)
    lab = _raster_order(lab)
    return relabel_sequential(lab)[0].astype(np.uint32)


def _raster_order(labels: np.ndarray) -> np.ndarray:
    """Renumber labels by the raster position of their first pixel (ImageJ's scan order)."""
    flat = labels.ravel()
    ids, first = np.unique(flat, return_index=True)
    keep = ids > 0
    ids, first = ids[keep], first[keep]
    order = ids[np.argsort(first)]
    lut = np.zeros(int(labels.max()) + 1, np.int64)
    lut[order] = np.arange(1, len(order) + 1)
    return lut[labels]


def label_particles(probability, threshold: float = 0.5, separate: str = "watershed",
                    connectivity: int = 4, **params) -> np.ndarray:
    """Label image of the particles of a probability map.

    Parameters
    ----------
    probability : ndarray of float, 2-D
    threshold : float
        Pixels with probability above it are particle.
    separate : {"none", "watershed"}
        ``"none"``: connected components (``connectivity``); ``"watershed"``:
        :func:`watershed_split` with ``params`` (defaults :data:`WATERSHED_DEFAULTS`).
    connectivity : {4, 8}

    Returns
    -------
    ndarray of uint32
    """
    probability = np.asarray(probability)
    mask = probability > threshold
    if separate == "none":
        return connected_components(mask, connectivity)
    if separate == "watershed":
        return watershed_split(mask, probability, **params)
    raise InputError(f"separate must be one of {', '.join(SEPARATIONS)}, not {separate!r}.")
