"""Star-convex polygons (StarDist's formulation): training targets and particles of a star
U-Net's outputs."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import watershed

from ..errors import InputError
from ._distance import inner_distance
from ._labels import add_unseeded, check_labels, check_mask, connected_components, labels_to_separated_mask

__all__ = ["STAR_DEFAULTS", "STAR_MODES", "star_targets", "labels_from_star"]

#: How star-convex outputs become particles (:func:`labels_from_star`).
STAR_MODES = ("polygons", "grow", "distance")
#: StarDist's own defaults; a model file stores those chosen on its validation images.
STAR_DEFAULTS = {"prob_thresh": 0.5, "nms_thresh": 0.4, "mode": "polygons", "sigma": 0.0}


def star_targets(labels, n_rays: int = 32):
    """StarDist's training targets of a label image.

    Parameters
    ----------
    labels : (H, W) integer array
        0 = background; touching particles must carry different labels.
    n_rays : int
        Rays per pixel, equally spaced in angle (``stardist.geometry.star_dist``).

    Returns
    -------
    object_probability : (H, W) float32
        Per particle, the Euclidean distance of each pixel to the nearest pixel outside the particle,
        divided by the particle's largest such distance (1 at its centre, 0 outside).
    distances : (n_rays, H, W) float32
        Distance in pixels from each particle pixel to the particle's edge along each ray (0 outside).
    """
    from stardist.geometry import star_dist

    lab = check_labels(labels, "star_targets")
    if n_rays < 3:
        raise InputError(f"n_rays must be at least 3, got {n_rays}.")
    lab = lab.astype(np.int32, copy=False)
    edt = inner_distance(lab)  # the image border counts as an edge, as it does for star_dist's rays
    dist = star_dist(lab, n_rays)  # (H, W, n_rays)
    return edt, np.ascontiguousarray(np.moveaxis(dist, -1, 0), dtype=np.float32)


def labels_from_star(object_probability, distances, mask=None,
                     prob_thresh: float = STAR_DEFAULTS["prob_thresh"],
                     nms_thresh: float = STAR_DEFAULTS["nms_thresh"],
                     mode: str = STAR_DEFAULTS["mode"], sigma: float = STAR_DEFAULTS["sigma"],
                     min_size: int = 1) -> np.ndarray:
    """Particles of a star-convex network's output.

    Every pixel whose object probability exceeds ``prob_thresh`` proposes the polygon its ray
    distances describe; StarDist's non-maximum suppression keeps, from the most probable down, the
    polygons that overlap none already kept by more than ``nms_thresh`` (IoU).

    ``mode="polygons"`` paints the kept polygons (StarDist's output), cut to ``mask`` when one is
    given. ``mode="grow"`` uses them as seeds: each polygon, cut to the mask, seeds a watershed on
    the object probability that assigns every mask pixel to a particle, so that the particles'
    edges are the particle mask's (pixel-exact) rather than ``n``-gons. ``mode="distance"`` needs no
    rays (``distances`` may be None): each 4-connected region of the mask where the object
    probability (a normalised distance to the particle's edge) exceeds ``prob_thresh`` seeds the
    watershed, and mask components without a seed stay particles of their own.

    In both modes touching particles are then kept apart by a one-pixel line
    (:func:`labels_to_separated_mask`) and particles are numbered in raster order, so that the mask
    ``labels > 0`` measured with 4-connectivity gives the same particles.

    Parameters
    ----------
    object_probability : (H, W) float array
    distances : (n_rays, H, W) float array or None
        Ray lengths in pixels (not used by ``"distance"``).
    mask : (H, W) bool array, optional
        Particle pixels (e.g. the particle probability > threshold). Required for ``"grow"`` and
        ``"distance"``.
    prob_thresh, nms_thresh : float
        In (0, 1).
    mode : {"polygons", "grow", "distance"}
    sigma : float
        Gaussian smoothing (pixels) of the object probability first (0: none); a speckled map
        otherwise seeds several particles in one.
    min_size : int
        Particles smaller than this many pixels are dropped.

    Returns
    -------
    ndarray of uint32
    """
    from stardist.geometry import polygons_to_label
    from stardist.nms import non_maximum_suppression

    prob = np.asarray(object_probability, dtype=np.float32)
    dist = None if distances is None else np.asarray(distances, np.float32)
    if prob.ndim != 2 or (dist is not None and (dist.ndim != 3 or dist.shape[1:] != prob.shape)):
        raise InputError(f"object probability {prob.shape} and distances "
                         f"{None if dist is None else dist.shape} do not fit (expected (H, W) and "
                         f"(n_rays, H, W)).")
    if mode not in STAR_MODES:
        raise InputError(f"mode must be one of {', '.join(STAR_MODES)}, not {mode!r}.")
    for name, v in (("prob_thresh", prob_thresh), ("nms_thresh", nms_thresh)):
        if not 0.0 < float(v) < 1.0:
            raise InputError(f"{name} must be in (0, 1), got {v}.")
    if mask is not None:
        mask = check_mask(mask)
        if mask.shape != prob.shape:
            raise InputError(f"mask {mask.shape} and object probability {prob.shape} differ in size.")
    elif mode != "polygons":
        raise InputError(f"mode {mode!r} needs the particle mask.")
    if dist is None and mode != "distance":
        raise InputError(f"mode {mode!r} needs the ray distances.")
    if sigma < 0:
        raise InputError(f"sigma must be >= 0, got {sigma}.")
    if sigma > 0:
        prob = ndi.gaussian_filter(prob, float(sigma))
    shape = prob.shape
    if mode == "distance":
        seeds = connected_components((prob > prob_thresh) & mask, 4, dtype=np.int32)
        lab = watershed(-prob, seeds, mask=mask)
        lab = add_unseeded(lab, mask, whole=False)  # mask components without a seed stay particles
    else:
        if not (prob > prob_thresh).any():
            return np.zeros(shape, np.uint32)
        rays = np.ascontiguousarray(np.moveaxis(np.maximum(dist, 1e-3), 0, -1))
        points, probi, disti = non_maximum_suppression(rays, prob, prob_thresh=float(prob_thresh),
                                                       nms_thresh=float(nms_thresh), verbose=False)
        lab = polygons_to_label(disti, points, shape=shape, prob=probi).astype(np.int32)
        if mask is not None:
            lab = np.where(mask, lab, 0)
        if mode == "grow":
            lab = watershed(-prob, lab, mask=mask)
    sep = labels_to_separated_mask(lab, connectivity=4)
    lab = connected_components(sep, 4, dtype=np.int64)
    if min_size > 1 and lab.max() > 0:
        area = np.bincount(lab.ravel())
        small = area < min_size
        small[0] = False
        lab[small[lab]] = 0
        lab = connected_components(lab > 0, 4, dtype=np.int64)
    return lab.astype(np.uint32)
