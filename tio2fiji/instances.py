"""Network output -> particles (a label image): every rule that turns a probability map or
detections into labelled particles lives here, with the one labelling rule (connected components in
ImageJ's raster order) that measurement and scoring share.

A semantic network such as the U-Net gives each pixel a particle probability; touching particles
then merge into one connected component (the thesis's Fig. 31). :func:`watershed_split` cuts them
apart where the particle narrows: the Euclidean distance to the background, optionally weighted by
the probability (a network trained to mark the one-pixel gaps between particles, as the bundled
model is, lowers the probability there), is smoothed, its regional maxima higher than ``h`` pixels
above their surroundings become one seed each, and a watershed grows the seeds over the mask,
leaving one-pixel lines between particles like the BAM manual masks.

The default parameters were chosen on the four validation images of the bundled model's split
(BAM TiO2, 1908260/284/292/306) by mean instance IoU; see ``benchmarks/separation.py``.

A network that knows where one particle ends (``outputs="star"`` models,
:mod:`tio2fiji.training.star`) gives, besides the particle probability, StarDist's two maps
(Schmidt et al. 2018): an *object probability* (each particle's Euclidean distance to the nearest
pixel outside it, normalised to 1 at its centre) and, per pixel, the distances to the particle's
edge along ``n`` equally spaced rays. :func:`star_targets` makes them from a label image (the
training targets); :func:`labels_from_star` turns them back into particles, either as StarDist does
(the candidate polygons of pixels whose object probability exceeds a threshold, thinned by
non-maximum suppression and painted) or as seeds grown over the particle mask. The polygon
geometry and NMS are the ``stardist`` package's compiled code (it needs no TensorFlow).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import h_maxima
from skimage.segmentation import relabel_sequential, watershed

from .errors import InputError

__all__ = ["CONNECTIVITY", "SEPARATE", "SEPARATIONS", "WATERSHED_DEFAULTS", "connected_components",
           "watershed_split", "labels_from_probability", "particle_scores",
           "labels_to_separated_mask", "remove_touching", "STAR_DEFAULTS", "STAR_MODES", "star_targets",
           "labels_from_star"]

#: Particle connectivity used by default everywhere (segmentation, measurement, scoring): the BAM
#: manual masks, and ours, keep touching particles apart by one-pixel lines that are 8-connected,
#: so particles are 4-connected. ImageJ's own default is 8 (``--connectivity 8``).
CONNECTIVITY = 4
#: How a probability map becomes particles (:func:`labels_from_probability`).
SEPARATIONS = ("none", "watershed")
#: The choices of ``segment``/``analyze``: ``"auto"`` is the model's own way (watershed for a
#: U-Net; a Mask R-CNN's detected instances).
SEPARATE = ("auto",) + SEPARATIONS
#: chosen on the validation images (benchmarks/separation.py): h in px of distance, sigma in px
WATERSHED_DEFAULTS = {"h": 0.75, "sigma": 1.0, "weight_by_probability": True}
#: How star-convex outputs become particles (:func:`labels_from_star`).
STAR_MODES = ("polygons", "grow", "distance")
#: StarDist's own defaults; a model file stores those chosen on its validation images.
STAR_DEFAULTS = {"prob_thresh": 0.5, "nms_thresh": 0.4, "mode": "polygons", "sigma": 0.0}

_STRUCTURES = {8: np.ones((3, 3), dtype=bool), 4: ndi.generate_binary_structure(2, 1)}


def _check_mask(mask, name="mask") -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise InputError(f"{name} must be 2-D, got shape {mask.shape}.")
    return mask.astype(bool, copy=False)


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
    mask = _check_mask(mask)
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
    seeds = connected_components(h_maxima(dist, h), 8, dtype=np.int32)
    lab = watershed(-dist, seeds, mask=mask, watershed_line=watershed_line)
    # components without a seed (flat, tiny) keep their own label instead of vanishing
    rest = mask & (lab == 0)
    if watershed_line:
        # line pixels are background on purpose; only whole unseeded components are added back
        comp = connected_components(mask, 4, dtype=np.int32)
        seeded = np.unique(comp[lab > 0])
        rest = np.isin(comp, seeded, invert=True) & mask
    if rest.any():
        extra = connected_components(rest, 4, dtype=np.int32)
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


# Mask R-CNN detections -> labels

__all__ += ["PASTE_METHODS", "paste_masks", "paint_instances"]


#: How :func:`paste_masks` maps a mask into its box: ``"exact"`` inverts the sampling that made
#: the mask head's targets; ``"torchvision"`` is ``paste_masks_in_image`` (Detectron's legacy rule).
PASTE_METHODS = ("exact", "torchvision")


def paste_masks(masks, boxes, shape, chunk: int = 64, method: str = "exact"):
    """Yield ``(y0, x0, probability patch)`` of each Mask R-CNN mask pasted into an image of ``shape``.

    ``masks`` are the mask head's ``(N, M, M)`` probabilities inside ``boxes`` ``(N, 4)`` (x0, y0,
    x1, y1), as :func:`tio2fiji.predict.detect` returns them.

    ``method="exact"`` (default) inverts how torchvision made the training targets
    (``roi_align(..., aligned=False)``: mask cell ``j`` holds the image at ``x0 + (j + 0.5) w / M``,
    pixel ``i`` at coordinate ``i``): pixel ``i`` of the box gets the mask bilinearly
    interpolated at cell ``(i - x0) M / w - 0.5``, clamped to the border cells; the patch covers
    the pixels ``floor(x0) .. ceil(x1) - 1``. A perfect mask of a radius-4 disc comes back
    whole (IoU 1.0 at ``M`` 28 and 56). ``"torchvision"`` is ``paste_masks_in_image`` (1-pixel
    padding, a box one pixel wider and higher, bilinear resize): the same disc comes back at IoU
    0.69 (``M`` 28) or 0.72 (``M`` 56), too large by a rim of pixels; patches are cropped to the
    pixels the mask reaches.
    """
    import torch

    if method not in PASTE_METHODS:
        raise InputError(f"paste method must be one of {', '.join(PASTE_METHODS)}, not {method!r}.")
    h, w = int(shape[0]), int(shape[1])
    if method == "exact":
        yield from _paste_exact(masks, boxes, h, w)
        return
    from torchvision.models.detection.roi_heads import paste_masks_in_image

    for s in range(0, len(boxes), chunk):
        m = torch.from_numpy(np.ascontiguousarray(masks[s:s + chunk], np.float32))[:, None]
        b = torch.from_numpy(np.ascontiguousarray(boxes[s:s + chunk], np.float32))
        pasted = paste_masks_in_image(m, b, (h, w), padding=1)[:, 0].numpy()
        for p in pasted:
            ys, xs = np.nonzero(p.any(axis=1))[0], np.nonzero(p.any(axis=0))[0]
            if ys.size == 0:
                yield 0, 0, np.zeros((0, 0), np.float32)
                continue
            y0, y1, x0, x1 = ys[0], ys[-1] + 1, xs[0], xs[-1] + 1
            yield int(y0), int(x0), p[y0:y1, x0:x1]


def _paste_exact(masks, boxes, h: int, w: int):
    """:func:`paste_masks` ``"exact"``: one ``grid_sample`` per mask over its box's pixels."""
    import torch
    import torch.nn.functional as F

    masks = np.asarray(masks, np.float32)
    for m, (bx0, by0, bx1, by1) in zip(masks, np.asarray(boxes, np.float64).reshape(-1, 4)):
        x0, x1 = max(int(np.floor(bx0)), 0), min(int(np.ceil(bx1)), w)
        y0, y1 = max(int(np.floor(by0)), 0), min(int(np.ceil(by1)), h)
        if x1 <= x0 or y1 <= y0:
            yield 0, 0, np.zeros((0, 0), np.float32)
            continue
        # grid_sample's -1..1 spans the mask's outer cell edges (align_corners=False)
        gx = 2.0 * (np.arange(x0, x1) - bx0) / max(bx1 - bx0, 1e-6) - 1.0
        gy = 2.0 * (np.arange(y0, y1) - by0) / max(by1 - by0, 1e-6) - 1.0
        grid = np.stack(np.broadcast_arrays(gx[None, :], gy[:, None]), axis=-1)
        patch = F.grid_sample(torch.from_numpy(np.ascontiguousarray(m))[None, None],
                              torch.from_numpy(grid.astype(np.float32))[None], mode="bilinear",
                              padding_mode="border", align_corners=False)
        yield y0, x0, patch[0, 0].numpy()


def paint_instances(shape, instances, mask_threshold: float = 0.5, max_overlap: float | None = None):
    """Label image from scored instance patches; each pixel goes to the highest score.

    Parameters
    ----------
    shape : (int, int)
    instances : iterable of (score, y0, x0, patch)
        ``patch`` is a float mask probability array placed at ``(y0, x0)`` (may reach outside the
        image: it is clipped).
    mask_threshold : float
        A pixel belongs to an instance where its probability is above this.
    max_overlap : float, optional
        Panoptic FPN's rule for combining instance masks (Kirillov et al., CVPR 2019): in
        descending score order, an instance whose pixels are already taken by higher-scoring ones
        for more than this fraction is dropped instead of leaving its uncovered rest as a
        fragment (a duplicate detection of one particle would otherwise count as a second
        particle). None keeps every instance that keeps a pixel.

    Returns
    -------
    labels : ndarray of uint32
        0 = background; labels numbered 1..n in raster order of each instance's first pixel.
        Instances that keep no pixel are dropped.
    scores : ndarray of float32
        ``scores[i - 1]`` is the score of label ``i``.
    probability : ndarray of float32
        Per pixel, the largest mask probability of any instance (0 elsewhere); so
        ``probability > mask_threshold`` is exactly ``labels > 0``.
    """
    h, w = int(shape[0]), int(shape[1])
    labels = np.zeros((h, w), np.uint32)
    prob = np.zeros((h, w), np.float32)
    items = list(instances)
    if max_overlap is not None and not 0.0 <= float(max_overlap) <= 1.0:
        raise InputError(f"max_overlap must be in [0, 1] or None, not {max_overlap!r}.")
    # descending score: an instance takes the pixels no higher one took; ties: the earlier first
    order = sorted(range(len(items)), key=lambda i: (-items[i][0], i))
    score_of = np.zeros(len(items) + 1, np.float32)
    for n, i in enumerate(order, 1):
        score, y0, x0, patch = items[i]
        score_of[n] = score
        ph, pw = patch.shape
        ya, xa = max(y0, 0), max(x0, 0)
        yb, xb = min(y0 + ph, h), min(x0 + pw, w)
        if ya >= yb or xa >= xb:
            continue
        p = patch[ya - y0:yb - y0, xa - x0:xb - x0]
        own = p > mask_threshold
        window = labels[ya:yb, xa:xb]
        taken = own & (window > 0)
        if max_overlap is not None and own.any() and taken.sum() > max_overlap * own.sum():
            continue
        np.maximum(prob[ya:yb, xa:xb], p, out=prob[ya:yb, xa:xb])
        window[own & ~taken] = n
    ids, first = np.unique(labels.ravel(), return_index=True)
    keep = ids != 0
    ids, first = ids[keep], first[keep]
    ids = ids[np.argsort(first, kind="stable")]  # raster order, like connected-component labels
    lut = np.zeros(len(items) + 1, np.uint32)
    lut[ids] = np.arange(1, ids.size + 1, dtype=np.uint32)
    return lut[labels], score_of[ids].astype(np.float32), prob


# star-convex polygons (StarDist's formulation)


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

    lab = np.asarray(labels)
    if lab.ndim != 2 or not np.issubdtype(lab.dtype, np.integer):
        raise InputError(f"star_targets needs a 2-D integer label image, got {lab.dtype} {lab.shape}.")
    if n_rays < 3:
        raise InputError(f"n_rays must be at least 3, got {n_rays}.")
    lab = lab.astype(np.int32, copy=False)
    # distance to the nearest pixel of another value (background or another particle); the image
    # border counts as an edge, as it does for star_dist's rays
    edt = np.zeros(lab.shape, np.float64)
    objects = ndi.find_objects(lab)
    for k, sl in enumerate(objects, 1):
        if sl is None:
            continue
        sl = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in sl)
        inside = lab[sl] == k
        d = ndi.distance_transform_edt(np.pad(inside, 1, constant_values=False))[1:-1, 1:-1]
        top = d[inside].max()
        edt[sl][inside] = d[inside] / top
    dist = star_dist(lab, n_rays)  # (H, W, n_rays)
    return edt.astype(np.float32), np.ascontiguousarray(np.moveaxis(dist, -1, 0), dtype=np.float32)


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
        mask = _check_mask(mask)
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
        # mask components without a seed keep their own label instead of vanishing
        comp = connected_components(mask & (lab == 0), 4, dtype=np.int32)
        lab = np.where(comp > 0, comp + lab.max(), lab)
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
