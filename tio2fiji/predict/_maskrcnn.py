"""Mask R-CNN on whole images: detections per tile, each instance kept from the one tile that owns
it, painted by score; see :mod:`tio2fiji.predict`."""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..instances import paint_instances, paste_masks
from ..models.device import to_device
from ..models.maskrcnn import IMAGE_SIZE, is_maskrcnn
from ..models.settings import as_model
from ..transforms import TILE, axis_positions, normalize_for_network

__all__ = ["detect", "tiled_detections", "predict_instances"]

# Mask R-CNN: detections and tiled instances


def detect(model, images, score_threshold: float = 0.5, regions=None) -> list:
    """Detections of a batch of tiles, with the masks at RoI resolution (not pasted).

    Parameters
    ----------
    model : MaskRCNN or Model
        The network, or a loaded model (:func:`tio2fiji.models.load_model`; its network runs).
    images : list of ndarray (H, W) float32 in [0, 1]
        Already normalised (:func:`tio2fiji.transforms.normalize_for_network`).
    score_threshold : float
        Detections scoring at or below it are dropped before the mask head runs (the mask head is
        the costly part with thousands of detections).
    regions : list of (y0, y1, x0, x1), optional
        Per image, the half-open window a detection's box centre must lie in to be kept; the others
        are dropped before the mask head runs (:func:`tiled_detections` passes each tile's own
        region: the masks of detections another tile owns would be thrown away). The kept
        detections are those without ``regions``, filtered.

    Returns
    -------
    list of dict
        Per image: ``boxes`` float32 ``(N, 4)`` (x0, y0, x1, y1 in the image's pixels), ``scores``
        float32 ``(N,)``, ``masks`` float32 ``(N, M, M)`` mask probabilities inside the boxes.
    """
    import torch
    from torchvision.models.detection.roi_heads import maskrcnn_inference
    from torchvision.models.detection.transform import resize_boxes

    model = as_model(model).net
    device = next(model.parameters()).device
    heads = model.roi_heads
    old = heads.score_thresh
    was_training = model.training
    model.eval()
    heads.score_thresh = float(score_threshold)
    try:
        with torch.no_grad():
            x = [to_device(np.ascontiguousarray(a, dtype=np.float32)[None], device) for a in images]
            sizes = [tuple(a.shape[-2:]) for a in x]
            batch, _ = model.transform(x)
            features = model.backbone(batch.tensors)
            proposals, _ = model.rpn(batch, features)
            # RoIHeads.forward (eval) in two halves, so that detections are filtered between them
            shapes = batch.image_sizes
            box_features = heads.box_head(heads.box_roi_pool(features, proposals, shapes))
            boxes, scores, labels = heads.postprocess_detections(*heads.box_predictor(box_features),
                                                                 proposals, shapes)
            image_boxes = [resize_boxes(b, r, o) for b, r, o in zip(boxes, shapes, sizes)]
            if regions is not None:
                keep = [_centre_inside(b, r) for b, r in zip(image_boxes, regions)]
                boxes, scores, labels, image_boxes = ([t[k] for t, k in zip(ts, keep)]
                                                      for ts in (boxes, scores, labels, image_boxes))
            mask_logits = heads.mask_predictor(heads.mask_head(heads.mask_roi_pool(features, boxes, shapes)))
            masks = maskrcnn_inference(mask_logits, labels)
    finally:
        heads.score_thresh = old
        model.train(was_training)
    return [{"boxes": b.float().cpu().numpy(), "scores": s.float().cpu().numpy(),
             "masks": m[:, 0].float().cpu().numpy()} for b, s, m in zip(image_boxes, scores, masks)]


def _centre_inside(boxes, region):
    """Which boxes ``(N, 4)`` (x0, y0, x1, y1) have their centre in ``region`` (y0, y1, x0, x1)."""
    y0, y1, x0, x1 = region
    cy, cx = (boxes[:, 1] + boxes[:, 3]) / 2.0, (boxes[:, 0] + boxes[:, 2]) / 2.0
    return (cy >= y0) & (cy < y1) & (cx >= x0) & (cx < x1)


def _own_ranges(pos: list, tile: int, size: int) -> list:
    """Per tile start, the half-open range of coordinates it owns: overlaps split in the middle."""
    out = []
    for i, p in enumerate(pos):
        lo = 0.0 if i == 0 else (p + pos[i - 1] + tile) / 2.0
        hi = float(size) if i == len(pos) - 1 else (pos[i + 1] + p + tile) / 2.0
        out.append((lo, hi))
    return out


def tiled_detections(model, image, tile: int = TILE, overlap: int = 64, batch_size: int = 2,
                     score_threshold: float = 0.5, progress=None, bits: int | None = None,
                     detector=None) -> list:
    """Mask R-CNN detections of a whole gray image, from overlapping tiles, in image coordinates.

    Parameters
    ----------
    model : MaskRCNN or Model
        From :func:`tio2fiji.models.maskrcnn.build_maskrcnn`, or a model file's
        (:func:`tio2fiji.models.load_model`); its input size must be ``tile``. The thresholds are
        the arguments, not the model's settings.
    image : ndarray, 2-D
        Gray image of any size (the analysed area), uint8/uint16/float; scaled by
        :func:`tio2fiji.transforms.normalize_for_network` (with ``bits``) as the training tiles were.
        Images smaller than a tile are mirrored up to it.
    tile : int
        Tile side (the model's 256: tiles of another size would be rescaled by the network).
    overlap : int
        Overlap of neighbouring tiles. An instance is kept from the tile whose own region (overlaps
        split in the middle) contains its box centre, so particles up to about ``overlap`` pixels
        across are never cut by a tile border nor counted twice.
    batch_size : int
        Tiles per forward pass.
    score_threshold : float
        Instances scoring at or below it are dropped.
    progress : callable, optional
        ``progress(done, total, "tile")`` after each batch of tiles.
    bits : int, optional
        Bit depth for the normalisation (default: from the image).
    detector : callable, optional
        ``detector(tiles, score_threshold)`` -> what :func:`detect` returns for a list of
        normalised tiles; default ``detect(model, ...)`` (another runtime of the same network,
        e.g. its ONNX export, goes through the same tiling).

    Returns
    -------
    list of (score, y0, x0, patch)
        One per detection kept: its score and its mask probabilities (float32 ``patch``) placed
        at row ``y0``, column ``x0`` of the image; what
        :func:`tio2fiji.instances.paint_instances` takes.
    """
    model = as_model(model).net
    if not is_maskrcnn(model):
        raise InputError("predict_instances and tiled_detections need a Mask R-CNN (tio2fiji.models.maskrcnn).")
    img = np.asarray(image)
    if img.ndim != 2 or 0 in img.shape:
        raise InputError(f"expected a non-empty 2-D gray image, got shape {img.shape}.")
    size = getattr(model.transform, "min_size", (IMAGE_SIZE,))
    size = int(size[0]) if isinstance(size, (tuple, list)) else int(size)
    if tile != size or int(model.transform.max_size) != size:
        raise InputError(f"tile must be the model's input size {size} (got {tile}); other tiles would "
                         f"be rescaled and the particles with them.")
    if not 0 <= overlap < tile:
        raise InputError(f"overlap must be in [0, {tile}), got {overlap}.")
    if batch_size < 1:
        raise InputError(f"batch_size must be positive, got {batch_size}.")
    if not 0.0 <= score_threshold <= 1.0:
        raise InputError(f"score_threshold must be in [0, 1], got {score_threshold}.")
    x = normalize_for_network(img, bits=bits).astype(np.float32, copy=False)
    h, w = x.shape
    H, W = max(h, tile), max(w, tile)
    if (H, W) != (h, w):
        x = np.pad(x, ((0, H - h), (0, W - w)), mode="symmetric")
    stride = tile - overlap
    ys, xs = axis_positions(H, tile, stride), axis_positions(W, tile, stride)
    own_y, own_x = dict(zip(ys, _own_ranges(ys, tile, h))), dict(zip(xs, _own_ranges(xs, tile, w)))
    corners = [(y, c) for y in ys for c in xs]
    def own_region(ty, tx):  # in tile coordinates, 1 px wider: the exact test below decides
        (ylo, yhi), (xlo, xhi) = own_y[ty], own_x[tx]
        return ylo - ty - 1, yhi - ty + 1, xlo - tx - 1, xhi - tx + 1

    instances = []
    for b in range(0, len(corners), batch_size):
        chunk = corners[b:b + batch_size]
        tiles = [x[y:y + tile, c:c + tile] for y, c in chunk]
        if detector is None:  # only the owned detections get masks
            dets = detect(model, tiles, score_threshold, regions=[own_region(y, c) for y, c in chunk])
        else:
            dets = detector(tiles, score_threshold)
        for (ty, tx), d in zip(chunk, dets):
            boxes = d["boxes"]
            cy = (boxes[:, 1] + boxes[:, 3]) / 2.0 + ty
            cx = (boxes[:, 0] + boxes[:, 2]) / 2.0 + tx
            (ylo, yhi), (xlo, xhi) = own_y[ty], own_x[tx]
            keep = np.nonzero((cy >= ylo) & (cy < yhi) & (cx >= xlo) & (cx < xhi))[0]
            if keep.size == 0:
                continue
            patches = paste_masks(d["masks"][keep], boxes[keep], (tile, tile))
            for i, (py, px, patch) in zip(keep, patches):
                if patch.size:
                    instances.append((float(d["scores"][i]), py + ty, px + tx, patch))
        if progress is not None:
            progress(min(b + batch_size, len(corners)), len(corners), "tile")
    return instances


def predict_instances(model, image, tile: int = TILE, overlap: int = 64, batch_size: int = 2,
                      score_threshold: float = 0.5, mask_threshold: float = 0.5, progress=None,
                      bits: int | None = None, max_overlap: float | None = None):
    """Particles of a whole gray image as a label image, with Mask R-CNN.

    The detections of :func:`tiled_detections` (see it for the parameters) painted into one label
    image by :func:`tio2fiji.instances.paint_instances`.

    Parameters
    ----------
    mask_threshold : float
        Mask probability above which a pixel belongs to an instance.
    max_overlap : float, optional
        Drop a detection whose mask is taken by higher-scoring ones for more than this fraction
        (:func:`tio2fiji.instances.paint_instances`); None keeps every visible rest.

    Returns
    -------
    labels : ndarray of uint32, same shape as ``image``
        0 = background, particles 1..n (raster order); overlaps go to the higher score.
    scores : ndarray of float32
        ``scores[i - 1]`` belongs to label ``i``.
    probability : ndarray of float32
        Per pixel, the largest mask probability of the kept instances.
    """
    if not 0.0 <= mask_threshold < 1.0:
        raise InputError(f"mask_threshold must be in [0, 1), got {mask_threshold}.")
    instances = tiled_detections(model, image, tile=tile, overlap=overlap, batch_size=batch_size,
                                 score_threshold=score_threshold, progress=progress, bits=bits)
    shape = np.asarray(image).shape
    return paint_instances(shape, instances, mask_threshold, max_overlap=max_overlap)
