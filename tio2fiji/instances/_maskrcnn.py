"""Mask R-CNN detections -> labels: masks pasted into the image exactly, painted by score."""

from __future__ import annotations

import numpy as np

from ..errors import InputError

__all__ = ["PASTE_METHODS", "paste_masks", "paint_instances"]


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
