"""The U-Net's maps of a whole image: one pass, blended tiles or the thesis's grid, optionally
averaged over the 8 symmetries (test-time augmentation); see :mod:`tio2fiji.predict`."""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..models.device import autocast, choose_engine, resolve_device, to_device, use_amp
from ..models.onnx import onnx_session
from ..models.settings import as_model
from ..transforms import DIHEDRAL, TILE, axis_positions, dihedral, normalize_for_network, tile_weights, undo_dihedral

__all__ = ["MODES", "WHOLE_LIMIT", "predict_maps", "predict_probability", "resolve_mode"]

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
    """Maps ``(N, C, H, W)`` float32 numpy of a numpy batch ``(N, 1, H, W)`` (``model``: a
    :class:`~tio2fiji.models.settings.Model`)."""
    import torch

    with torch.no_grad():
        if engine.startswith("onnx"):
            logits = torch.from_numpy(onnx_session(model, int8=engine == "onnx-int8").run(None, {"x": x})[0])
        else:
            with autocast(device, amp):
                logits = model.net(to_device(x, device))
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
    model : Model or torch.nn.Module
        A loaded model (:func:`tio2fiji.models.load_model`: its settings give the default
        ``outputs`` and the ray scale), or a bare network (the settings of a file that stores
        none; wrap it in a :class:`tio2fiji.models.Model` to give others).
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
    model = as_model(model)
    settings = model.settings
    if tta:
        if (outputs or settings.outputs) == "star":
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
    if outputs is None:
        outputs = settings.outputs
    img = _to_network_input(image, bits)
    h, w = img.shape
    if h == 0 or w == 0:
        raise InputError("empty image.")
    net = model.net
    here = next(net.parameters()).device
    device = here if device is None else resolve_device(device)
    if device != here:
        net.to(device)  # the network runs where it is asked to (moved in place)
    amp = use_amp(device, amp)
    engine = choose_engine(model, device, engine, amp)
    mode = resolve_mode(mode, h, w)
    run = dict(device=device, outputs=outputs, ray_scale=settings.ray_scale, amp=amp, engine=engine)
    was_training = net.training
    net.eval()
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
        net.train(was_training)


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
    model : Model or torch.nn.Module
        A loaded model or a bare network: maps ``(N, 1, tile, tile)`` images in ``[0, 1]`` to
        logits ``(N, C, tile, tile)``; channel 0 is the particle logit (the only one, or the first
        of a ``"star"`` model's outputs).
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
    engine : {"auto", "torch", "onnx", "onnx-int8"}
        What runs the forward passes: ``"onnx"`` is ONNX Runtime on the CPU (the network exported
        once per model file and cached, :func:`tio2fiji.models.onnx.onnx_session`), ``"onnx-int8"``
        its int8 graph (a model file that stores its calibration), ``"torch"`` PyTorch; ``"auto"``
        takes ONNX Runtime on the CPU without ``amp`` (int8 when the model stores a calibration),
        else PyTorch (:func:`tio2fiji.models.device.choose_engine`).

    Returns
    -------
    ndarray of float32
        Same shape as ``image``, values in ``[0, 1]``.
    """
    return predict_maps(model, image, tile=tile, overlap=overlap, batch_size=batch_size, mode=mode,
                        bits=bits, device=device, progress=progress, amp=amp, engine=engine)[0]
