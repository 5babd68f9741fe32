"""Whole-image inference with a segmentation network: tiles, stitching, thresholds, model files.

Networks see 256×256 tiles; images are larger (1024×704 analysed pixels for the BAM images) and of
any size. :func:`predict_probability` covers the image with tiles and stitches their particle
probabilities:

``mode="blend"`` (default)
    Tiles overlap by ``overlap`` pixels (the last tile of a row or column is placed flush with the
    border, as :func:`tio2fiji.dataset.tile_positions`). Each tile's probabilities are weighted by a
    raised-cosine (Hann) ramp over its overlapping margins, so every pixel is a smooth average that
    favours the tile whose centre is nearest, and tile seams, where the network sees the least
    context, do not show. Sides that lie on the image border are not tapered (no other tile
    covers them). Images smaller than a tile are mirrored up to the tile size.
``mode="thesis"``
    The thesis's way (§3.3): a grid of non-overlapping 256×256 tiles from the top-left corner; the
    image is mirrored at its right and bottom borders to fill the last tiles, and the result is
    cropped back to the image.

Images are scaled by :func:`tio2fiji.io.normalize_for_network`, the same function that prepared
the training data. :func:`segment` runs this on the analysed area of an SEM image (data bar
excluded) and thresholds it.

Model files
-----------
:func:`load_model` reads a training checkpoint (``best.pt``/``last.pt`` of :mod:`tio2fiji.train`)
or a compact model file written by :func:`export_model` (``"default"`` is the model bundled in
``tio2fiji/data/unet_default.pt``, see its ``MODEL_CARD.md``). A compact file stores the weights in
half precision, or with ``weights="int8"`` the large convolution kernels as 8-bit integers with
one float scale per output channel (a quarter of float32); they are expanded to float32 on loading.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError
from .instances import SEPARATIONS, WATERSHED_DEFAULTS, label_particles
from .metrics import particle_scores

__all__ = ["DEFAULT_MODEL", "predict_probability", "segment", "Segmentation", "load_model",
           "export_model", "model_threshold", "tile_weights"]

DEFAULT_MODEL = Path(__file__).resolve().parent / "data" / "unet_default.pt"
_FORMAT = "tio2fiji-model"


# --------------------------------------------------------------------------------------------------
# tiling


def _ramp(n: int, overlap: int, taper_start: bool, taper_end: bool) -> np.ndarray:
    """1-D weights: a raised-cosine rise over ``overlap`` pixels at tapered ends, 1 elsewhere.

    The rise samples ``0.5 - 0.5 cos`` at pixel centres, so no weight is 0 and every pixel covered
    by a tile has a positive total weight.
    """
    w = np.ones(n, np.float64)
    m = min(int(overlap), n // 2)
    if m > 0:
        rise = 0.5 - 0.5 * np.cos(np.pi * (np.arange(m) + 0.5) / m)
        if taper_start:
            w[:m] = rise
        if taper_end:
            w[n - m:] = rise[::-1]
    return w


def tile_weights(tile: int, overlap: int, top: bool, bottom: bool, left: bool, right: bool) -> np.ndarray:
    """2-D blending weights of one tile; a side is tapered when the flag is True (an inner side)."""
    return np.outer(_ramp(tile, overlap, top, bottom), _ramp(tile, overlap, left, right))


def _to_network_input(image, bits):
    from .io import normalize_for_network

    img = np.asarray(image)
    if img.ndim != 2:
        raise InputError(f"expected a 2-D gray image, got shape {img.shape}.")
    return normalize_for_network(img, bits=bits).astype(np.float32, copy=False)


def _run_tiles(model, img, corners, tile, batch_size, device):
    """Yield ``(y, x, probability tile)`` for each corner, in batches."""
    import torch

    for b in range(0, len(corners), batch_size):
        chunk = corners[b:b + batch_size]
        x = np.stack([img[y:y + tile, c:c + tile] for y, c in chunk])[:, None]
        with torch.no_grad():
            prob = torch.sigmoid(model(torch.from_numpy(x).to(device))).float().cpu().numpy()
        for (y, c), p in zip(chunk, prob):
            yield y, c, p[0]


def predict_probability(model, image, tile: int = 256, overlap: int = 64, batch_size: int = 4,
                        mode: str = "blend", bits: int | None = None, device=None,
                        progress=None) -> np.ndarray:
    """Particle probability of every pixel of a whole image.

    Parameters
    ----------
    model : torch.nn.Module
        Maps ``(N, 1, tile, tile)`` images in ``[0, 1]`` to logits of the same shape.
    image : ndarray, 2-D
        Gray image of any size (the analysed area: no data bar), raw integers or floats; scaled by
        :func:`tio2fiji.io.normalize_for_network` (with ``bits``).
    tile : int
        Tile side; a multiple of 32 for the U-Net.
    overlap : int
        ``mode="blend"``: overlap of neighbouring tiles (and width of the blending ramp). 0 gives
        non-overlapping tiles with hard seams (last tiles still flush with the border).
    batch_size : int
        Tiles per forward pass.
    mode : {"blend", "thesis"}
        See the module docstring.
    bits : int, optional
        Bit depth for :func:`~tio2fiji.io.normalize_for_network` (default: from the image).
    device : torch.device or str, optional
        Default: the device of the model's parameters.
    progress : callable, optional
        ``progress(done, total)`` after each batch of tiles.

    Returns
    -------
    ndarray of float32
        Same shape as ``image``, values in ``[0, 1]``.
    """
    if tile <= 0 or tile % 32:
        raise InputError(f"tile must be a positive multiple of 32 for the U-Net, got {tile}.")
    if mode not in ("blend", "thesis"):
        raise InputError(f"mode must be 'blend' or 'thesis', not {mode!r}.")
    if not 0 <= overlap < tile:
        raise InputError(f"overlap must be in [0, {tile}), got {overlap}.")
    if batch_size < 1:
        raise InputError(f"batch_size must be positive, got {batch_size}.")
    from .dataset import axis_positions

    img = _to_network_input(image, bits)
    h, w = img.shape
    if h == 0 or w == 0:
        raise InputError("empty image.")
    if device is None:
        device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        if mode == "thesis":
            # mirror at the bottom/right up to whole tiles ("symmetric" repeats the edge row, as a
            # mirror would), predict the grid, crop back
            H, W = -(-h // tile) * tile, -(-w // tile) * tile
            padded = np.pad(img, ((0, H - h), (0, W - w)), mode="symmetric")
            corners = [(y, x) for y in range(0, H, tile) for x in range(0, W, tile)]
            out = np.zeros((H, W), np.float32)
            for k, (y, x, p) in enumerate(_run_tiles(model, padded, corners, tile, batch_size, device)):
                out[y:y + tile, x:x + tile] = p
                if progress is not None and ((k + 1) % batch_size == 0 or k + 1 == len(corners)):
                    progress(k + 1, len(corners))
            return out[:h, :w]
        # blend: images smaller than a tile are mirrored up to it first
        H, W = max(h, tile), max(w, tile)
        padded = np.pad(img, ((0, H - h), (0, W - w)), mode="symmetric") if (H, W) != (h, w) else img
        stride = tile - overlap
        ys, xs = axis_positions(H, tile, stride), axis_positions(W, tile, stride)
        corners = [(y, x) for y in ys for x in xs]
        acc = np.zeros((H, W), np.float64)
        norm = np.zeros((H, W), np.float64)
        cache = {}
        for k, (y, x, p) in enumerate(_run_tiles(model, padded, corners, tile, batch_size, device)):
            key = (y > 0, y + tile < H, x > 0, x + tile < W)
            if key not in cache:
                cache[key] = tile_weights(tile, overlap, *key)
            wt = cache[key]
            acc[y:y + tile, x:x + tile] += wt * p
            norm[y:y + tile, x:x + tile] += wt
            if progress is not None and ((k + 1) % batch_size == 0 or k + 1 == len(corners)):
                progress(k + 1, len(corners))
        return (acc / norm)[:h, :w].astype(np.float32)
    finally:
        model.train(was_training)


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


def model_threshold(model, default: float = 0.5) -> float:
    """The threshold a model file recommends (``model_config["threshold"]``), else ``default``."""
    info = getattr(model, "tio2fiji_info", None) or {}
    return float((info.get("model_config") or {}).get("threshold", default))


def model_arch(model) -> str:
    """``"unet"`` or ``"maskrcnn"``: which kind of network ``model`` is."""
    from .models.maskrcnn import is_maskrcnn

    return "maskrcnn" if is_maskrcnn(model) else "unet"


def segment(model, sem_image, threshold: float | None = None, tile: int = 256, overlap: int = 64,
            batch_size: int = 4, mode: str = "blend", data_bar_rows: int | None = None,
            separate: str = "auto", connectivity: int = 4, progress=None) -> Segmentation:
    """Probability map and binary particle mask of the analysed area of an SEM image.

    Parameters
    ----------
    model : torch.nn.Module or str or path
        A network, or anything :func:`load_model` accepts (``"default"``).
    sem_image : SemImage, path, or ndarray
        An image read by :func:`tio2fiji.io.read_sem` (its data bar is excluded), a file (read with
        ``read_sem``), or a 2-D array taken as the analysed area as it is.
    threshold : float, optional
        Pixels with probability above it are particle. Default: the threshold stored with the
        model (:func:`model_threshold`; chosen on the validation images), else 0.5.
    tile, overlap, batch_size, mode
        As :func:`predict_probability`.
    data_bar_rows : int, optional
        For a path: the data-bar height (detected when None).
    separate : {"auto", "watershed", "none"}
        How the U-Net's mask becomes particles (:mod:`tio2fiji.instances`): ``"watershed"`` splits
        touching particles, ``"none"`` keeps connected components (``connectivity``). ``"auto"``:
        watershed for a U-Net; Mask R-CNN's own instances (its only option).
    connectivity : {4, 8}
        Connected components with ``separate="none"``.

    Returns
    -------
    Segmentation
    """
    from .io import SemImage, read_sem

    if isinstance(model, (str, Path)):
        model = load_model(model)
    if threshold is None:
        threshold = model_threshold(model)
    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"threshold must be in [0, 1], got {threshold}.")
    if isinstance(sem_image, (str, Path)):
        sem_image = read_sem(sem_image, data_bar_rows=data_bar_rows)
    if isinstance(sem_image, SemImage):
        area, bar, ps = sem_image.analysed, sem_image.data_bar_rows, sem_image.pixel_size_m
    else:
        area, bar, ps = np.asarray(sem_image), 0, None
    if separate not in ("auto",) + SEPARATIONS:
        raise InputError(f"separate must be auto, {', '.join(SEPARATIONS)}; not {separate!r}.")
    info = {"tile": tile, "overlap": overlap, "mode": mode}
    if model_arch(model) == "maskrcnn":
        from .models.maskrcnn import predict_instances

        if separate not in ("auto",):
            raise InputError(f"Mask R-CNN finds its own particles; separate={separate!r} does not apply "
                             f"(use 'auto').")
        # the detection score threshold stored with the model (the one its validation IoU used)
        cfg = (getattr(model, "tio2fiji_info", None) or {}).get("model_config") or {}
        score_threshold = float(cfg.get("score_threshold", 0.5))
        labels, scores, prob = predict_instances(model, area, tile=tile, overlap=overlap,
                                                 batch_size=batch_size, mask_threshold=threshold,
                                                 score_threshold=score_threshold, progress=progress)
        info.update(arch="maskrcnn", separate="instances", score_threshold=score_threshold)
        return Segmentation(probability=prob, mask=labels > 0, threshold=float(threshold),
                            data_bar_rows=int(bar), pixel_size_m=ps, info=info,
                            labels=labels.astype(np.uint32), scores=np.asarray(scores, np.float32))
    prob = predict_probability(model, area, tile=tile, overlap=overlap, batch_size=batch_size,
                               mode=mode, progress=progress)
    method = "watershed" if separate == "auto" else separate
    labels = label_particles(prob, threshold, separate=method, connectivity=connectivity)
    info.update(arch="unet", separate=method,
                **({"watershed": dict(WATERSHED_DEFAULTS)} if method == "watershed" else
                   {"connectivity": connectivity}))
    return Segmentation(probability=prob, mask=prob > threshold, threshold=float(threshold),
                        data_bar_rows=int(bar), pixel_size_m=ps, info=info, labels=labels,
                        scores=particle_scores(labels, prob).astype(np.float32))


# --------------------------------------------------------------------------------------------------
# model files


def _build_from_config(cfg: dict):
    from .models.unet import build_unet

    if cfg.get("arch") == "maskrcnn":
        from .models.maskrcnn import build_from_config

        return build_from_config(cfg)
    if cfg.get("arch", "unet") != "unet":
        raise InputError(f"model architecture {cfg.get('arch')!r} is not supported by load_model "
                         f"(unet or maskrcnn).")
    # the weights come from the file: never download encoder weights here
    return build_unet(cfg.get("encoder", "resnet34"), None, in_channels=int(cfg.get("in_channels", 1)),
                      classes=int(cfg.get("classes", 1)))


def _expand(weights: dict) -> dict:
    """Compact weights (fp16 tensors or int8 + scale) to float32 tensors."""
    import torch

    out = {}
    for k, v in weights.items():
        if isinstance(v, dict) and "q" in v:
            scale = v["scale"].float().reshape(-1, *([1] * (v["q"].dim() - 1)))
            out[k] = v["q"].float() * scale
        elif torch.is_floating_point(v):
            out[k] = v.float()
        else:
            out[k] = v
    return out


def load_model(path="default", device="cpu"):
    """Load a U-Net for inference (eval mode, float32).

    Parameters
    ----------
    path : str or path
        ``"default"`` (the bundled model), a compact file from :func:`export_model`, or a training
        checkpoint (``best.pt``/``last.pt``).
    device : str or torch.device

    Returns
    -------
    torch.nn.Module
        With an attribute ``tio2fiji_info`` (dict): the model configuration and, for compact files,
        the metadata stored with them (metrics, training).
    """
    import torch

    if str(path) == "default":
        path = DEFAULT_MODEL
        if not path.is_file():
            raise InputError(f"the bundled default model {path} is missing from this installation.")
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: model file not found.")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise InputError(f"{path}: cannot read the model file ({exc}).") from exc
    if not isinstance(obj, dict):
        raise InputError(f"{path}: not a tio2fiji model file or checkpoint.")
    if obj.get("format") == _FORMAT:
        cfg, state = obj["model_config"], _expand(obj["weights"])
        info = {k: v for k, v in obj.items() if k != "weights"}
    elif "model" in obj and "model_config" in obj:
        cfg, state = obj["model_config"], {k: v.float() if torch.is_floating_point(v) else v
                                           for k, v in obj["model"].items()}
        info = {"model_config": cfg, "epoch": obj.get("epoch"), "val_iou": obj.get("val_iou")}
    else:
        raise InputError(f"{path}: not a tio2fiji model file or checkpoint (no model_config).")
    if not cfg:
        raise InputError(f"{path}: the checkpoint does not say which model it holds (empty model_config).")
    model = _build_from_config(cfg)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        what = (f"Mask R-CNN configuration {cfg.get('config')}" if cfg.get("arch") == "maskrcnn"
                else f"a U-Net with encoder {cfg.get('encoder')}")
        raise InputError(f"{path}: weights do not fit {what} ({exc}).") from exc
    model.tio2fiji_info = info
    return model.to(device).eval()


def export_model(checkpoint, path, weights: str = "float16", metadata: dict | None = None,
                 threshold: float | None = None) -> Path:
    """Write a compact inference file from a training checkpoint, atomically.

    Parameters
    ----------
    checkpoint : path or dict
        ``best.pt`` of a training run (or its loaded dict).
    path : path
        The file to write (e.g. ``tio2fiji/data/unet_default.pt``).
    weights : {"float16", "int8"}
        ``"float16"``: every float tensor in half precision. ``"int8"``: convolution kernels with
        more than 10,000 weights as symmetric int8 with one float16 scale per output channel
        (``scale = max|w| / 127``), everything else float16.
    metadata : dict, optional
        Stored with the weights (metrics, data, training time); ``load_model`` returns it in
        ``model.tio2fiji_info``.
    threshold : float, optional
        The probability threshold :func:`segment` uses by default with this model (stored in
        ``model_config``; default: the checkpoint's, else 0.5).
    """
    import torch

    from .io import _atomic_write
    from .train import load_checkpoint

    ck = load_checkpoint(checkpoint) if not isinstance(checkpoint, dict) else checkpoint
    if weights not in ("float16", "int8"):
        raise InputError(f"weights must be 'float16' or 'int8', not {weights!r}.")
    out = {}
    for k, v in ck["model"].items():
        if not torch.is_floating_point(v):
            out[k] = v.clone()
        elif weights == "int8" and v.dim() >= 2 and v.numel() > 10_000:
            flat = v.float().reshape(v.shape[0], -1)
            scale = flat.abs().amax(dim=1).clamp_min(1e-12) / 127.0
            scale = scale.half().float()  # the stored scale is what dequantises
            q = torch.round(flat / scale[:, None]).clamp(-127, 127).to(torch.int8).reshape(v.shape)
            out[k] = {"q": q, "scale": scale.half()}
        else:
            out[k] = v.half()
    cfg = dict(ck["model_config"])
    if threshold is not None:
        cfg["threshold"] = float(threshold)
    doc = {"format": _FORMAT, "version": 1, "weights_dtype": weights,
           "model_config": cfg, "epoch": ck.get("epoch"), "val_iou": ck.get("val_iou"),
           **(metadata or {}), "weights": out}
    return _atomic_write(Path(path), lambda p: torch.save(doc, p))
