"""Connected components (the one labelling rule), the distance-transform watershed of a
probability map, particle scores, and the label-image helpers every other rule shares."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import relabel_sequential, watershed

from ..errors import InputError
from ._extrema import h_maxima

__all__ = ["CONNECTIVITY", "SEPARATE", "SEPARATIONS", "WATERSHED_DEFAULTS", "connected_components",
           "watershed_split", "labels_from_probability", "particle_scores", "labels_to_separated_mask",
           "remove_touching", "drop_small", "check_mask", "check_labels", "raster_order", "add_unseeded",
           "grow_seeds"]

#: Particle connectivity used by default everywhere (segmentation, measurement, scoring): the BAM
#: manual masks, and ours, keep touching particles apart by one-pixel lines that are 8-connected,
#: so particles are 4-connected. ImageJ's own default is 8 (``--connectivity 8``).
CONNECTIVITY = 4
#: How a probability map becomes particles (:func:`labels_from_probability`).
SEPARATIONS = ("none", "watershed")
#: The choices of ``segment``/``analyze``: ``"auto"`` is the model's own way (watershed for a
#: U-Net; a Mask R-CNN's detected instances).
SEPARATE = ("auto",) + SEPARATIONS
#: chosen on the validation images (benchmarks/accuracy/separation.py): h in px of distance, sigma in px
WATERSHED_DEFAULTS = {"h": 0.75, "sigma": 1.0, "weight_by_probability": True}

_STRUCTURES = {8: np.ones((3, 3), dtype=bool), 4: ndi.generate_binary_structure(2, 1)}


def check_mask(mask, name="mask") -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise InputError(f"{name} must be 2-D, got shape {mask.shape}.")
    return mask.astype(bool, copy=False)


def check_labels(labels, name: str) -> np.ndarray:
    """``labels`` as an array, or an error naming ``name`` when it is not a 2-D integer label image."""
    lab = np.asarray(labels)
    if lab.ndim != 2 or not np.issubdtype(lab.dtype, np.integer):
        raise InputError(f"{name} needs a 2-D integer label image, got {lab.dtype} {lab.shape}.")
    return lab


def connected_components(mask, connectivity: int = CONNECTIVITY, dtype=np.uint32) -> np.ndarray:
    """Label the connected components of a binary mask: the one labelling rule of tio2fiji.

    Parameters
    ----------
    mask : ndarray, 2-D
        Non-zero = particle.
    connectivity : {4, 8}
        Pixel neighbourhood. 4 keeps particles that touch only diagonally, or are separated by a
        1-pixel gap drawn with 8-connected lines, apart (the BAM masks need this).
    dtype : numpy dtype
        Of the result (``np.int32`` for the measurement kernels).

    Returns
    -------
    ndarray
        0 = background, particles 1..n in raster order of their first pixel (top row first, then
        leftmost): ImageJ's results-table order.
    """
    if connectivity not in (4, 8):
        raise InputError(f"connectivity must be 4 or 8, not {connectivity!r}.")
    mask = check_mask(mask)
    labels, _ = ndi.label(mask, structure=_STRUCTURES[connectivity], output=np.int32)
    return labels.astype(dtype, copy=False)


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
    mask = check_mask(mask)
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
    seeds = connected_components(h_maxima(dist, h), 8, dtype=np.int32)
    lab = watershed(-dist, seeds, mask=mask, watershed_line=watershed_line)
    # components without a seed (flat, tiny) keep their own label instead of vanishing
    lab = add_unseeded(lab, mask, whole=watershed_line)
    lab = raster_order(lab)
    return relabel_sequential(lab)[0].astype(np.uint32)


def add_unseeded(labels, mask, whole: bool = True) -> np.ndarray:
    """``labels`` with the particle pixels no seed reached labelled too, after the others.

    ``whole``: only mask components (4-connected) that hold no labelled pixel at all get labels,
    one each (a watershed's line pixels stay background on purpose); otherwise every unlabelled
    mask pixel does, by its 4-connected component.
    """
    lab = np.asarray(labels)
    rest = mask & (lab == 0)
    if whole:
        comp = connected_components(mask, 4, dtype=np.int64)
        rest = np.isin(comp, np.unique(comp[lab > 0]), invert=True) & mask
    if not rest.any():
        return lab
    extra = connected_components(rest, 4, dtype=np.int64)
    return np.where(extra > 0, extra + lab.max(), lab)


def grow_seeds(landscape, seeds, mask, min_seed: int = 1) -> np.ndarray:
    """Particles grown from ``seeds`` over ``mask``: the rule the border and distance U-Nets share.

    Seeds under ``min_seed`` pixels are dropped; a watershed of ``landscape`` (low first) grows the
    rest over the mask with one-pixel lines between particles, like the manual masks; a mask
    component no seed reached stays a particle of its own. Returns uint32 labels numbered in raster
    order, 4-connected (a watershed line is 8-connected: 4-connectivity sees the same particles).
    ``seeds`` (int64 labels) is changed in place.
    """
    if int(min_seed) > 1 and seeds.max() > 0:
        small = np.bincount(seeds.ravel()) < int(min_seed)
        small[0] = False
        seeds[small[seeds]] = 0
    lab = watershed(landscape, seeds, mask=mask, watershed_line=True).astype(np.int64)
    lab = add_unseeded(lab, mask)  # the line pixels stay background
    lab = connected_components(labels_to_separated_mask(lab, 4), 4, dtype=np.int64)
    return lab.astype(np.uint32)


def raster_order(labels: np.ndarray) -> np.ndarray:
    """Renumber labels by the raster position of their first pixel (ImageJ's scan order)."""
    flat = labels.ravel()
    ids, first = np.unique(flat, return_index=True)
    keep = ids > 0
    ids, first = ids[keep], first[keep]
    order = ids[np.argsort(first)]
    lut = np.zeros(int(labels.max()) + 1, np.int64)
    lut[order] = np.arange(1, len(order) + 1)
    return lut[labels]


def labels_from_probability(probability, threshold: float = 0.5, separate: str = "watershed",
                            connectivity: int = CONNECTIVITY, **params) -> np.ndarray:
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


def particle_scores(labels, probability) -> np.ndarray:
    """Score of each particle: its mean probability (index ``j`` = label ``j + 1``)."""
    lab = np.asarray(labels)
    probs = np.asarray(probability, dtype=np.float64)
    if probs.shape != lab.shape:
        raise InputError(f"probability map is {probs.shape} but the label image is {lab.shape}.")
    n = int(lab.max(initial=0))
    area = np.bincount(lab.ravel(), minlength=n + 1)[1:]
    total = np.bincount(lab.ravel(), weights=probs.ravel(), minlength=n + 1)[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(area > 0, total / np.maximum(area, 1), 0.0)


def remove_touching(labels, mask, scores=None):
    """Remove the particles that overlap or touch (8-neighbours) the True pixels of ``mask``.

    A particle beside an annotation burned into the image (:func:`tio2fiji.io.detect_annotations`)
    is partly hidden by it, as a particle at the image edge is cut by it; neither is measured whole.

    Parameters
    ----------
    labels : ndarray of int
        Label image in raster order (0 = background).
    mask : ndarray of bool
        Same shape.
    scores : ndarray, optional
        Per-particle values (``scores[i - 1]`` belongs to label ``i``), kept for the particles kept.

    Returns
    -------
    labels : ndarray
        The kept particles, renumbered 1..n in their original order (so raster order is kept).
    scores : ndarray or None
    removed : int
        How many particles were removed.
    """
    lab = np.asarray(labels)
    mask = np.asarray(mask, bool)
    if mask.shape != lab.shape:
        raise InputError(f"mask is {mask.shape} but the label image is {lab.shape}.")
    if not mask.any():
        return lab, scores, 0
    near = ndi.binary_dilation(mask, structure=_STRUCTURES[8])
    hit = np.unique(lab[near])
    hit = hit[hit > 0]
    if hit.size == 0:
        return lab, scores, 0
    keep = np.ones(int(lab.max()) + 1, bool)
    keep[hit] = False
    keep[0] = True
    out = np.where(keep[lab], lab, 0)
    out = relabel_sequential(out)[0].astype(lab.dtype, copy=False)
    if scores is not None:
        scores = np.asarray(scores)[keep[1:len(scores) + 1]]
    return out, scores, int(hit.size)


def labels_to_separated_mask(labels, connectivity=4) -> np.ndarray:
    """A binary mask in which touching labels stay separate particles for ImageJ.

    ImageJ's Analyze Particles measures binary masks, where two labels that touch would merge.
    Each pixel that touches a pixel of a *higher* label (4-neighbours for ``connectivity=4``,
    8-neighbours for 8) is cleared, which leaves a one-pixel cut between them, as ImageJ's own
    *Binary > Watershed* draws. Labels that do not touch are unchanged.

    Parameters
    ----------
    labels : (H, W) integer array
        0 = background.
    connectivity : {4, 8}

    Returns
    -------
    (H, W) ndarray of bool
    """
    lab = np.asarray(labels)
    if connectivity not in (4, 8):
        raise InputError(f"connectivity must be 4 or 8, not {connectivity!r}.")
    cut = np.zeros(lab.shape, bool)
    shifts = [(0, 1), (1, 0), (0, -1), (-1, 0)]
    if connectivity == 8:
        shifts += [(1, 1), (1, -1), (-1, 1), (-1, -1)]
    h, w = lab.shape
    for dy, dx in shifts:
        # neighbour of pixel (y, x) is (y + dy, x + dx); compare on the overlapping window
        a = lab[max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
        b = lab[max(0, dy):h + min(0, dy), max(0, dx):w + min(0, dx)]
        hit = (a > 0) & (b > a)
        cut[max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)] |= hit
    return (lab > 0) & ~cut

def drop_small(labels, min_size: int) -> np.ndarray:
    """``labels`` without the particles of fewer than ``min_size`` pixels, renumbered in raster
    order (uint32). BAM's scorer counts only objects over 9 px (``min_size=10``)."""
    lab = np.asarray(labels)
    if min_size <= 1 or lab.max(initial=0) == 0:
        return lab.astype(np.uint32, copy=False)
    area = np.bincount(lab.ravel().astype(np.int64))
    small = area < int(min_size)
    small[0] = False
    out = np.where(small[lab], 0, lab)
    return relabel_sequential(raster_order(out))[0].astype(np.uint32)
