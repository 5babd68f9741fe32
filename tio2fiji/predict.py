"""Whole-image inference with a segmentation network: tiles, stitching, instances, thresholds.

Networks see 256×256 tiles; images are larger (1024×704 analysed pixels for the BAM images) and of
any size. :func:`predict_probability` runs a U-Net over the whole image in one pass, or covers it
with tiles and stitches its particle probabilities:

``mode="whole"``
    One forward pass over the image mirrored at its right and bottom borders up to multiples of
    32 (as the tiles are padded), cropped back: every pixel sees all of its context. On the
    bundled examples it differs from ``"blend"`` by less than the tiling test's tolerance (at most
    0.013 % of the mask pixels, ``tests/test_whole_image.py``), and it computes about 55 % of blend's
    FLOPs (no overlap is computed twice).
``mode="auto"`` (the default of :func:`segment`)
    ``"whole"`` when the padded image has at most :data:`WHOLE_LIMIT` pixels, else ``"blend"``
    (the whole pass needs memory in proportion to the pixels: see :data:`WHOLE_LIMIT`).
``mode="blend"`` (default)
    Tiles overlap by ``overlap`` pixels (the last tile of a row or column is placed flush with the
    border, as :func:`tio2fiji.transforms.tile_positions`). Each tile's probabilities are weighted
    by a raised-cosine (Hann) ramp over its overlapping margins
    (:func:`tio2fiji.transforms.tile_weights`), so every pixel is a smooth average that favours the
    tile whose centre is nearest, and tile seams, where the network sees the least context, do not
    show. Sides that lie on the image border are not tapered (no other tile covers them). Images
    smaller than a tile are mirrored up to the tile size.
``mode="thesis"``
    The thesis's way (§3.3): a grid of non-overlapping 256×256 tiles from the top-left corner; the
    image is mirrored at its right and bottom borders to fill the last tiles, and the result is
    cropped back to the image.

:func:`predict_instances` does the same for Mask R-CNN: it covers an image with overlapping
256×256 tiles, and every instance is kept from exactly one tile: the one whose *own region*
contains the centre of its box (the tiles' own regions split every overlap at its middle), so a
particle on a tile border comes whole from the tile that sees it best and is never duplicated.
Overlapping masks are resolved by score (:func:`tio2fiji.instances.paint_instances`): each pixel
belongs to the highest-scoring instance whose mask covers it.

Images are scaled by :func:`tio2fiji.transforms.normalize_for_network`, the same function that
prepared the training data. :func:`segment` runs either network on the analysed area of an SEM
image (data bar excluded) and turns its output into particles with the post-processing parameters
stored with the model (:func:`tio2fiji.models.checkpoint.model_postprocessing`). Model files are
read by :func:`tio2fiji.models.checkpoint.load_model`.

``progress(done, total, name)`` callbacks are called after each batch of tiles, with ``name``
``"tile"`` (once, ``(1, 1)``, for a whole-image pass).

Devices and runtimes: the network runs where its parameters are (or on ``device``, which moves
it). On CUDA each batch goes to the GPU through pinned host memory with a non-blocking copy, and
the forward pass runs under float16 autocast (``amp``, on by default there; the maps are float32
either way). On the CPU the U-Net runs with ONNX Runtime by default (``engine="auto"``; measured
faster than PyTorch for the default model, ``benchmarks/infer_speed.py``), in float32: bfloat16
autocast on the CPU is available (``amp=True``) but not the default (measured slower there).

Memory of large images: a whole-image pass holds the network's activations at once, about
500 bytes per pixel on the CPU (peak RSS of the pass measured at 1024×704, 2048×1536 and
4096×3072: 459-471 B/px with PyTorch, 524-554 with ONNX Runtime; 0.35 GB for a 1024×704 area,
1.6 GB at :data:`WHOLE_LIMIT`, 6-7 GB for 4096×3072), so ``"auto"`` tiles beyond
:data:`WHOLE_LIMIT`. Tiles are streamed (one batch at a time) and blended one row of tiles at a
time, so :func:`predict_maps` holds the float32 network input and result (4 bytes per pixel each,
per output map) plus about ``24 × tile × width`` bytes, and no full-size float64 copy: about
8 bytes per pixel for a one-map U-Net (0.5 GB for 8000×8000; a ``"star"`` model returns
``2 + n_rays`` maps, 4 bytes per pixel each). The post-processing of :func:`segment` (watershed,
labels) costs more: about 125 bytes per pixel at its peak, measured with ``benchmarks/large_images.py``
(8 GB for 8000×8000); the time is about linear in the pixels. Images are limited by memory only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError
from .instances import (
    CONNECTIVITY,
    OWN_SEPARATION,
    SEPARATE,
    labels_from_maps,
    paint_instances,
    particle_scores,
    paste_masks,
    remove_touching,
)
from .io import SemImage, paint_out, read_sem
from .models.checkpoint import load_model, model_arch, model_postprocessing
from .models.device import autocast, choose_engine, resolve_device, to_device, use_amp
from .models.maskrcnn import IMAGE_SIZE, is_maskrcnn
from .models.onnx import onnx_session
from .transforms import DIHEDRAL, TILE, axis_positions, dihedral, normalize_for_network, tile_weights, undo_dihedral

__all__ = ["MODES", "WHOLE_LIMIT", "predict_maps", "predict_probability", "resolve_mode", "detect",
           "tiled_detections", "predict_instances", "segment", "Segmentation"]

#: The U-Net's ways to cover an image (see the module docstring).
MODES = ("auto", "whole", "blend", "thesis")
#: ``mode="auto"``: the most pixels (after padding to multiples of 32) predicted in one pass;
#: larger images are blended tiles. A pass needs about 500 B/px (1.6 GB here) and is 1.3x faster
#: per pixel than blend's tiles at 2048x1536 (ONNX Runtime, 1 thread: 2.9 vs 3.8 us/px).
WHOLE_LIMIT = 2048 * 1536


# --------------------------------------------------------------------------------------------------
# U-Net: tiled probability


def _to_network_input(image, bits):
    img = np.asarray(image)
    if img.ndim != 2:
        raise InputError(f"expected a 2-D gray image, got shape {img.shape}.")
    return normalize_for_network(img, bits=bits).astype(np.float32, copy=False)


def _activate(logits, outputs: str, ray_scale: float = 1.0):
    """Network output -> maps: sigmoid of the logits; ray distances (``"star"``: the outputs times
    ``ray_scale`` pixels) kept >= 0."""
    import torch

    if outputs == "star":
        return torch.cat([torch.sigmoid(logits[:, :2]), torch.relu(logits[:, 2:]) * ray_scale], dim=1)
    return torch.sigmoid(logits)


def _forward_maps(model, x, device, outputs, ray_scale, amp, engine):
    """Maps ``(N, C, H, W)`` float32 numpy of a numpy batch ``(N, 1, H, W)``."""
    import torch

    with torch.no_grad():
        if engine == "onnx":
            logits = torch.from_numpy(onnx_session(model).run(None, {"x": x})[0])
        else:
            with autocast(device, amp):
                logits = model(to_device(x, device))
        return _activate(logits.float(), outputs, ray_scale).cpu().numpy()


def _run_tiles(model, img, corners, tile, batch_size, device, outputs="probability", ray_scale=1.0,
               amp=False, engine="torch"):
    """Yield ``(y, x, maps (C, tile, tile))`` for each corner, in batches."""
    for b in range(0, len(corners), batch_size):
        chunk = corners[b:b + batch_size]
        x = np.stack([img[y:y + tile, c:c + tile] for y, c in chunk])[:, None]
        maps = _forward_maps(model, x, device, outputs, ray_scale, amp, engine)
        yield from ((y, c, m) for (y, c), m in zip(chunk, maps))


def predict_maps(model, image, tile: int = TILE, overlap: int = 64, batch_size: int = 4,
                 mode: str = "blend", bits: int | None = None, device=None, outputs=None,
                 progress=None, amp: bool | None = None, engine: str = "auto", tta: bool = False) -> np.ndarray:
    """Every output map of a U-Net for a whole image, tiled and stitched (see the module docstring).

    Parameters
    ----------
    outputs : {"probability", "star"}, optional
        What the channels mean (:data:`tio2fiji.models.checkpoint.OUTPUTS`); default the model
        file's. ``"probability"``: one map, the particle probability. ``"star"``: particle
        probability, object probability (sigmoids) and the ray distances in pixels (>= 0).
    tta : bool
        Test-time augmentation: the mean of the maps of the 8 flips and quarter turns of the image
        (:data:`tio2fiji.transforms.DIHEDRAL`), each turned back; 8 passes. Not for ``"star"``
        outputs, whose rays turn with the image.
    Other parameters
        As :func:`predict_probability`.

    Returns
    -------
    ndarray of float32, shape (C, H, W)
    """
    if tta:
        if (outputs or model_postprocessing(model)["outputs"]) == "star":
            raise InputError("test-time augmentation is not available for star-convex outputs (their "
                             "rays turn with the image); run without --tta.")
        kw = dict(tile=tile, overlap=overlap, batch_size=batch_size, mode=mode, bits=bits, device=device,
                  outputs=outputs, amp=amp, engine=engine)
        total = None
        for k in range(len(DIHEDRAL)):
            maps = undo_dihedral(predict_maps(model, dihedral(np.asarray(image), k), **kw), k)
            total = maps.astype(np.float32) if total is None else total + maps
            if progress is not None:
                progress(k + 1, len(DIHEDRAL), "tta pass")
        return np.ascontiguousarray(total / len(DIHEDRAL))
    if tile <= 0 or tile % 32:
        raise InputError(f"tile must be a positive multiple of 32 for the U-Net, got {tile}.")
    if mode not in MODES:
        raise InputError(f"mode must be one of {', '.join(MODES)}, not {mode!r}.")
    if not 0 <= overlap < tile:
        raise InputError(f"overlap must be in [0, {tile}), got {overlap}.")
    if batch_size < 1:
        raise InputError(f"batch_size must be positive, got {batch_size}.")
    post = model_postprocessing(model)
    if outputs is None:
        outputs = post["outputs"]
    img = _to_network_input(image, bits)
    h, w = img.shape
    if h == 0 or w == 0:
        raise InputError("empty image.")
    here = next(model.parameters()).device
    device = here if device is None else resolve_device(device)
    if device != here:
        model.to(device)  # the network runs where it is asked to (moved in place)
    amp = use_amp(device, amp)
    engine = choose_engine(model, device, engine, amp)
    mode = resolve_mode(mode, h, w)
    run = dict(device=device, outputs=outputs, ray_scale=post["ray_scale"], amp=amp, engine=engine)
    was_training = model.training
    model.eval()
    try:
        if mode == "whole":
            # one pass over the image mirrored at the bottom/right up to multiples of 32 (as the
            # tiles are padded), so no pixel lacks the context of its neighbours
            H, W = _padded(h), _padded(w)
            padded = np.pad(img, ((0, H - h), (0, W - w)), mode="symmetric") if (H, W) != (h, w) else img
            out = _forward_maps(model, np.ascontiguousarray(padded)[None, None], **run)[0]
            if progress is not None:
                progress(1, 1, "tile")
            return np.ascontiguousarray(out[:, :h, :w])
        if mode == "thesis":
            # mirror at the bottom/right up to whole tiles ("symmetric" repeats the edge row, as a
            # mirror would), predict the grid, crop back
            H, W = -(-h // tile) * tile, -(-w // tile) * tile
            padded = np.pad(img, ((0, H - h), (0, W - w)), mode="symmetric")
            corners = [(y, x) for y in range(0, H, tile) for x in range(0, W, tile)]
            out = None
            for k, (y, x, p) in enumerate(_run_tiles(model, padded, corners, tile, batch_size, **run)):
                if out is None:
                    out = np.zeros((p.shape[0], H, W), np.float32)
                out[:, y:y + tile, x:x + tile] = p
                if progress is not None and ((k + 1) % batch_size == 0 or k + 1 == len(corners)):
                    progress(k + 1, len(corners), "tile")
            return out[:, :h, :w]
        # blend: images smaller than a tile are mirrored up to it first
        H, W = max(h, tile), max(w, tile)
        padded = np.pad(img, ((0, H - h), (0, W - w)), mode="symmetric") if (H, W) != (h, w) else img
        stride = tile - overlap
        ys, xs = axis_positions(H, tile, stride), axis_positions(W, tile, stride)
        corners = [(y, x) for y in ys for x in xs]
        band, cache = None, {}
        for k, (y, x, p) in enumerate(_run_tiles(model, padded, corners, tile, batch_size, **run)):
            if band is None:
                band = _Band(p.shape[0], tile, H, W, h, w)
            band.move_to(y)
            key = (y > 0, y + tile < H, x > 0, x + tile < W)
            if key not in cache:
                cache[key] = tile_weights(tile, overlap, *key)
            band.add(x, cache[key], p)
            if progress is not None and ((k + 1) % batch_size == 0 or k + 1 == len(corners)):
                progress(k + 1, len(corners), "tile")
        return band.finish()
    finally:
        model.train(was_training)


def _padded(n: int) -> int:
    return -(-n // 32) * 32


def resolve_mode(mode: str, h: int, w: int) -> str:
    """The tiling ``mode`` means for an ``h × w`` image: ``"auto"`` is ``"whole"`` when the image
    padded to multiples of 32 has at most :data:`WHOLE_LIMIT` pixels, else ``"blend"``."""
    if mode != "auto":
        return mode
    return "whole" if _padded(h) * _padded(w) <= WHOLE_LIMIT else "blend"


class _Band:
    """The blended maps of a whole image, accumulated one row of tiles at a time.

    Tiles come row by row (top to bottom), so when a row of tiles starting at ``y`` begins, every
    image row above ``y`` is complete: it is divided by its weights into the float32 result and its
    accumulator is reused. Only ``tile`` rows are accumulated at once (one map in float64, as
    always; many in float32), so memory is the result (4 bytes per pixel and map) plus
    ``tile × width`` accumulators, not a float64 copy of the whole image. The sums are the same,
    in the same order, as with whole-image accumulators.
    """

    def __init__(self, channels, tile, H, W, h, w):
        self.tile, self.h, self.w, self.top = tile, h, w, 0
        self.acc = np.zeros((channels, tile, W), np.float64 if channels == 1 else np.float32)
        self.norm = np.zeros((tile, W), np.float64)
        self.out = np.empty((channels, h, w), np.float32)
        self.H = H

    def _flush(self, rows: int) -> None:
        """Finish the band's first ``rows`` rows and shift the rest up."""
        lo, hi = self.top, min(self.top + rows, self.h)
        if hi > lo:
            n = hi - lo
            self.out[:, lo:hi] = (self.acc[:, :n] / self.norm[:n])[:, :, :self.w]
        keep = self.tile - rows
        self.acc[:, :keep] = self.acc[:, rows:]
        self.acc[:, keep:] = 0
        self.norm[:keep] = self.norm[rows:]
        self.norm[keep:] = 0
        self.top += rows

    def move_to(self, y: int) -> None:
        if y > self.top:
            self._flush(y - self.top)

    def add(self, x: int, wt, p) -> None:
        t = self.tile
        self.acc[:, :, x:x + t] += wt * p
        self.norm[:, x:x + t] += wt

    def finish(self) -> np.ndarray:
        self._flush(self.H - self.top)
        return self.out


def predict_probability(model, image, tile: int = TILE, overlap: int = 64, batch_size: int = 4,
                        mode: str = "blend", bits: int | None = None, device=None,
                        progress=None, amp: bool | None = None, engine: str = "auto") -> np.ndarray:
    """Particle probability of every pixel of a whole image.

    Parameters
    ----------
    model : torch.nn.Module
        Maps ``(N, 1, tile, tile)`` images in ``[0, 1]`` to logits ``(N, C, tile, tile)``; channel 0
        is the particle logit (the only one, or the first of a ``"star"`` model's outputs).
    image : ndarray, 2-D
        Gray image of any size (the analysed area: no data bar), raw integers or floats; scaled by
        :func:`tio2fiji.transforms.normalize_for_network` (with ``bits``).
    tile : int
        Tile side; a multiple of 32 for the U-Net.
    overlap : int
        ``mode="blend"``: overlap of neighbouring tiles (and width of the blending ramp). 0 gives
        non-overlapping tiles with hard seams (last tiles still flush with the border).
    batch_size : int
        Tiles per forward pass.
    mode : {"blend", "thesis", "whole", "auto"}
        See the module docstring.
    bits : int, optional
        Bit depth for :func:`~tio2fiji.transforms.normalize_for_network` (default: from the image).
    device : torch.device or str, optional
        Default: the device of the model's parameters; another one (``"cpu"``, ``"cuda:0"``, ...,
        checked by :func:`tio2fiji.models.resolve_device`) moves the model there, in place.
    progress : callable, optional
        ``progress(done, total, "tile")`` after each batch of tiles (``(1, 1, "tile")`` for the
        whole-image pass).
    amp : bool, optional
        Mixed precision (autocast): float16 on CUDA, bfloat16 on the CPU. Default: on for CUDA,
        off on the CPU. The maps returned are float32 either way.
    engine : {"auto", "torch", "onnx"}
        What runs the forward passes: ``"onnx"`` is ONNX Runtime on the CPU (the network exported
        once per model and cached, :func:`tio2fiji.models.onnx.onnx_session`), ``"torch"``
        PyTorch; ``"auto"`` takes ONNX Runtime on the CPU without ``amp``, else PyTorch.

    Returns
    -------
    ndarray of float32
        Same shape as ``image``, values in ``[0, 1]``.
    """
    return predict_maps(model, image, tile=tile, overlap=overlap, batch_size=batch_size, mode=mode,
                        bits=bits, device=device, progress=progress, amp=amp, engine=engine)[0]


# --------------------------------------------------------------------------------------------------
# Mask R-CNN: detections and tiled instances


def detect(model, images, score_threshold: float = 0.5) -> list:
    """Detections of a batch of tiles, with the masks at RoI resolution (not pasted).

    Parameters
    ----------
    model : MaskRCNN
    images : list of ndarray (H, W) float32 in [0, 1]
        Already normalised (:func:`tio2fiji.transforms.normalize_for_network`).
    score_threshold : float
        Detections scoring at or below it are dropped before the mask head runs (the mask head is
        the costly part with thousands of detections).

    Returns
    -------
    list of dict
        Per image: ``boxes`` float32 ``(N, 4)`` (x0, y0, x1, y1 in the image's pixels), ``scores``
        float32 ``(N,)``, ``masks`` float32 ``(N, M, M)`` mask probabilities inside the boxes.
    """
    import torch
    from torchvision.models.detection.transform import resize_boxes

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
            dets, _ = heads(features, proposals, batch.image_sizes)
    finally:
        heads.score_thresh = old
        model.train(was_training)
    out = []
    for d, resized, original in zip(dets, batch.image_sizes, sizes):
        boxes = resize_boxes(d["boxes"], resized, original)
        out.append({"boxes": boxes.float().cpu().numpy(), "scores": d["scores"].float().cpu().numpy(),
                    "masks": d["masks"][:, 0].float().cpu().numpy()})
    return out


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
    model : MaskRCNN
        From :func:`tio2fiji.models.maskrcnn.build_maskrcnn` / a model file; its input size must be
        ``tile``.
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
    if detector is None:
        def detector(tiles, thresh):
            return detect(model, tiles, thresh)
    instances = []
    for b in range(0, len(corners), batch_size):
        chunk = corners[b:b + batch_size]
        dets = detector([x[y:y + tile, c:c + tile] for y, c in chunk], score_threshold)
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


# --------------------------------------------------------------------------------------------------
# segmentation of an SEM image


@dataclass
class Segmentation:
    """What :func:`segment` returns for one image (all arrays cover the analysed area only).

    Attributes
    ----------
    probability : ndarray of float32
        Particle probability per pixel.
    mask : ndarray of bool
        ``probability > threshold``.
    threshold : float
    data_bar_rows : int
        Rows removed at the bottom of the full frame (0 for a plain array).
    pixel_size_m : float or None
        The image's calibration (for the measurements downstream).
    info : dict
        How it was made (tile, overlap, mode, separation).
    labels : ndarray of uint32
        The particles: 0 = background, 1..n (touching particles split as ``separate`` says).
    scores : ndarray of float32
        ``scores[i - 1]``: confidence of particle ``i`` (mean probability for the U-Net, the
        detection score for Mask R-CNN).
    """

    probability: np.ndarray
    mask: np.ndarray
    threshold: float = 0.5
    data_bar_rows: int = 0
    pixel_size_m: float | None = None
    info: dict = field(default_factory=dict)
    labels: np.ndarray | None = None
    scores: np.ndarray | None = None


def segment(model, sem_image, threshold: float | None = None, tile: int = TILE, overlap: int = 64,
            batch_size: int = 4, mode: str = "auto", data_bar_rows: int | None = None,
            separate: str = "auto", connectivity: int = CONNECTIVITY, progress=None, device=None,
            amp: bool | None = None, engine: str = "auto", tta: bool = False) -> Segmentation:
    """Probability map, binary particle mask and particles of the analysed area of an SEM image.

    Parameters
    ----------
    model : torch.nn.Module or str or path
        A network, or anything :func:`tio2fiji.models.checkpoint.load_model` accepts
        (``"default"``).
    sem_image : SemImage, path, or ndarray
        An image read by :func:`tio2fiji.io.read_sem` (its data bar is excluded), a file (read with
        ``read_sem``), or a 2-D array taken as the analysed area as it is.
    threshold : float, optional
        Pixels with probability above it are particle. Default: the threshold stored with the
        model (:func:`tio2fiji.models.checkpoint.model_postprocessing`; chosen on the validation
        images), else 0.5.
    tile, overlap, batch_size, amp, engine
        As :func:`predict_probability`.
    mode : {"auto", "whole", "blend", "thesis"}
        The U-Net's: as :func:`predict_probability`; ``"auto"`` (default) is one whole-image pass
        up to :data:`WHOLE_LIMIT` pixels, blended tiles beyond. Mask R-CNN always runs on its
        256×256 training tile size (``"auto"`` or ``"blend"``; ``"whole"`` is refused).
    device : str or torch.device, optional
        Where the network runs (:func:`tio2fiji.models.resolve_device`; a loaded model is moved
        there). Default: where the model is (a model file: ``"auto"``, the GPU when present).
    data_bar_rows : int, optional
        For a path: the data-bar height (detected when None).
    separate : {"auto", "watershed", "none"}
        How the U-Net's mask becomes particles (:mod:`tio2fiji.instances`): ``"watershed"`` splits
        touching particles (with the watershed parameters stored with the model, else
        :data:`tio2fiji.instances.WATERSHED_DEFAULTS`), ``"none"`` keeps connected components
        (``connectivity``). ``"auto"``: the model's own way: star-convex particles for a
        ``"star"`` U-Net (:func:`tio2fiji.instances.labels_from_star` with its stored parameters),
        watershed for a one-output U-Net; Mask R-CNN's own instances (its only option; their
        detection score threshold is the one stored with the model).
    connectivity : {4, 8}
        Connected components with ``separate="none"``.
    progress : callable, optional
        ``progress(done, total, "tile")`` after each batch of tiles.
    tta : bool
        U-Net: test-time augmentation, the maps averaged over the 8 flips and quarter turns
        (:func:`predict_maps`); 8 times the network's time.

    Returns
    -------
    Segmentation
    """
    if isinstance(model, (str, Path)):
        model = load_model(model, device=resolve_device(device))
    elif device is not None:
        model.to(resolve_device(device))
    if mode not in MODES:
        raise InputError(f"mode must be one of {', '.join(MODES)}, not {mode!r}.")
    post = model_postprocessing(model)
    if threshold is None:
        threshold = post["threshold"]
    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"threshold must be in [0, 1], got {threshold}.")
    if isinstance(sem_image, (str, Path)):
        sem_image = read_sem(sem_image, data_bar_rows=data_bar_rows)
    annotations = None
    if isinstance(sem_image, SemImage):
        area, bar, ps = sem_image.analysed, sem_image.data_bar_rows, sem_image.pixel_size_m
        annotations = sem_image.annotation_mask
        area = paint_out(area, annotations)  # the network does not see the marks as particles
    else:
        area, bar, ps = np.asarray(sem_image), 0, None
    if separate not in SEPARATE:
        raise InputError(f"separate must be {', '.join(SEPARATE)}; not {separate!r}.")
    info = {"tile": tile, "overlap": overlap, "mode": mode}
    if model_arch(model) == "maskrcnn":
        if separate != "auto":
            raise InputError(f"Mask R-CNN finds its own particles; separate={separate!r} does not apply "
                             f"(use 'auto').")
        if mode == "whole":
            raise InputError("Mask R-CNN runs on the 256x256 tiles it was trained on; mode 'whole' is "
                             "for the U-Net (use 'auto').")
        if tta:
            raise InputError("test-time augmentation (--tta) is for the U-Net; the Mask R-CNN runs "
                             "without it.")
        info.update(mode="tiles" if mode == "auto" else mode, device=str(next(model.parameters()).device))
        # the detection score threshold stored with the model (the one its validation IoU used)
        score_threshold = post["score_threshold"]
        labels, scores, prob = predict_instances(model, area, tile=tile, overlap=overlap,
                                                 batch_size=batch_size, mask_threshold=threshold,
                                                 score_threshold=score_threshold, progress=progress,
                                                 max_overlap=post["max_overlap"])
        info.update(arch="maskrcnn", separate="instances", score_threshold=score_threshold,
                    max_overlap=post["max_overlap"])
        labels, scores = _leave_out(labels, scores, annotations, sem_image, info)
        return Segmentation(probability=prob, mask=labels > 0, threshold=float(threshold),
                            data_bar_rows=int(bar), pixel_size_m=ps, info=info,
                            labels=labels.astype(np.uint32), scores=np.asarray(scores, np.float32))
    dev = next(model.parameters()).device
    amp = use_amp(dev, amp)
    info.update(mode=resolve_mode(mode, *area.shape), device=str(dev), amp=amp,
                engine=choose_engine(model, dev, engine, amp))
    maps = predict_maps(model, area, tile=tile, overlap=overlap, batch_size=batch_size, mode=info["mode"],
                        outputs=post["outputs"], progress=progress, amp=amp, engine=engine, tta=tta)
    info["tta"] = bool(tta)
    prob = maps[0]
    method = OWN_SEPARATION.get(post["outputs"], "watershed") if separate == "auto" else separate
    params = dict(post[method]) if method in ("watershed", "star", "border") else {}
    labels, mask, method = labels_from_maps(maps, post["outputs"], threshold, method, params, connectivity)
    info.update(arch="unet", separate=method, **({"outputs": method} if method in ("star", "border") else {}),
                **({method: params} if params else {"connectivity": connectivity}))
    if annotations is not None:
        kept, _ = _leave_out(labels, None, annotations, sem_image, info)
        mask = mask & ~((labels > 0) & (kept == 0)) & ~annotations  # the dropped particles' pixels too
        labels = kept
    return Segmentation(probability=prob, mask=mask,
                        threshold=float(threshold), data_bar_rows=int(bar), pixel_size_m=ps, info=info,
                        labels=labels, scores=particle_scores(labels, prob).astype(np.float32))


def _leave_out(labels, scores, annotations, sem_image, info):
    """Drop the particles beside an image's annotations and say so in ``info``."""
    if annotations is None:
        return labels, scores
    labels, scores, removed = remove_touching(labels, annotations, scores)
    info["annotations"] = {"source": sem_image.annotation_source, "pixels": int(annotations.sum()),
                           "particles_removed": int(removed)}
    return labels, scores
