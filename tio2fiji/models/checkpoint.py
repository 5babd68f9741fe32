"""Model files: the one reader and writer of tio2fiji's networks on disk.

Two kinds of file hold a network, and both are read here:

training checkpoints (``best.pt``, ``last.pt`` of :mod:`tio2fiji.training`)
    ``{"model": state dict, "model_config": ..., "epoch": ..., "val_iou": ...}``, and in ``last.pt``
    everything a run needs to continue (optimizer, RNG states, history). Written through
    :func:`save_checkpoint` (a temporary file, then ``os.replace``), read by
    :func:`load_checkpoint`.
compact model files (:func:`export_model`)
    ``{"format": "tio2fiji-model", "model_config": ..., "weights": ..., ...metadata}``: the weights
    in half precision, or with ``weights="int8"`` the large convolution kernels as 8-bit integers
    with one float scale per output channel (a quarter of float32); they are expanded to float32 on
    loading. ``"default"`` and the names in :data:`BUNDLED` are the models bundled in ``tio2fiji/data/``
    (see its ``MODEL_CARD.md``).

:func:`load_model` turns either into a network ready for inference. ``model_config`` says how to
rebuild the network (:func:`build_model`) and, next to the weights (as StarDist keeps its
``thresholds.json`` beside them), how its output becomes particles: the probability
``threshold``, Mask R-CNN's detection ``score_threshold`` and the U-Net's ``watershed`` parameters
(:class:`tio2fiji.models.settings.ModelSettings`, resolved once here: :func:`load_model` returns
a :class:`~tio2fiji.models.settings.Model`, the network with its settings). A file that does not
store one of them gets today's default (0.5, 0.5, :data:`tio2fiji.instances.WATERSHED_DEFAULTS`),
so older files give the results they always gave.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from ..errors import InputError
from ..io import atomic_write, file_sha256
from .maskrcnn import build_from_config as _build_maskrcnn_from_config
from .maskrcnn import is_maskrcnn
from .settings import OUTPUTS, TRAINED_PIXEL_SIZE_M, Model, ModelSettings, Provenance, as_model
from .unet import build_unet
from .weights import expand_weights

__all__ = ["BUNDLED", "DEFAULT_NAME", "DEFAULT_MODEL", "FORMAT", "OUTPUTS", "TRAINED_PIXEL_SIZE_M", "resolve_model",
           "save_checkpoint", "load_checkpoint", "checkpoint_contents", "build_model", "load_model", "export_model",
           "model_arch"]

_DATA = Path(__file__).resolve().parent.parent / "data"
#: The models bundled with tio2fiji, by the name ``--model`` takes (see ``tio2fiji/data/MODEL_CARD.md``).
BUNDLED = {"unet-border": _DATA / "unet_border.pt", "unet-watershed": _DATA / "unet_watershed.pt",
           "maskrcnn": _DATA / "maskrcnn.pt"}
#: The bundled model ``"default"`` names: since stop 30 ``unet-border`` (issue 27; a distance U-Net),
#: which won on the validation images (MODEL_CARD.md, *Default*); ``unet-watershed`` was the default
#: before.
DEFAULT_NAME = "unet-border"
DEFAULT_MODEL = BUNDLED[DEFAULT_NAME]
#: ``format`` of a compact model file.
FORMAT = "tio2fiji-model"


# --------------------------------------------------------------------------------------------------
# reading and writing files


def resolve_model(path) -> Path:
    """The file of a model: ``"default"`` or a bundled name (:data:`BUNDLED`), else an existing file."""
    name = DEFAULT_NAME if str(path) == "default" else str(path)
    if name in BUNDLED:
        if not BUNDLED[name].is_file():
            raise InputError(f"the bundled model {name!r} ({BUNDLED[name]}) is missing from this "
                             f"installation.")
        return BUNDLED[name]
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a model file; give a file such as {path / 'best.pt'} "
                         f"or a bundled model (default, {', '.join(BUNDLED)}).")
    if not path.is_file():
        raise InputError(f"{path}: model file not found (bundled models: default, "
                         f"{', '.join(BUNDLED)}).")
    return path


def save_checkpoint(path, obj) -> Path:
    """``torch.save`` through a temporary file and ``os.replace`` (never a half-written file)."""
    import torch

    return atomic_write(Path(path), lambda p: torch.save(obj, p))


def load_checkpoint(path) -> dict:
    """The dict a model file or training checkpoint holds (tensors on the CPU).

    Parameters
    ----------
    path : str or path
        ``"default"``, a compact model file, or a checkpoint (``last.pt``, ``best.pt``).
    """
    import pickle

    import torch

    path = resolve_model(path)
    try:
        with torch.serialization.safe_globals(_safe_globals()), warnings.catch_warnings():
            # torch warns about the pickle protocol of files that torch.save did not write
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise InputError(f"{path}: not a tio2fiji model file or unsafe content ({_refused(exc)}); "
                         f"nothing in it was run. Use a model file written by tio2fiji "
                         f"(weights, numbers and strings only).") from exc
    except Exception as exc:  # zip/pickle errors have many types
        raise InputError(f"{path}: cannot read the model file ({_one_line(exc)}); is it a .pt file "
                         f"written by tio2fiji or torch.save?") from exc
    if not isinstance(obj, dict):
        raise InputError(f"{path}: not a tio2fiji model file or checkpoint.")
    return obj


def _safe_globals() -> list:
    """What ``torch.load(weights_only=True)`` may build beyond tensors and plain Python data: numpy
    arrays and scalars (the numpy RNG state in ``last.pt``, numbers of older files).

    These only construct arrays from their dtype and bytes; an object array's items are unpickled
    under the same allow-list. Files of numpy 1.x name the reconstructor ``numpy.core``.
    """
    import numpy as np

    try:
        from numpy._core import multiarray
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray
    dtypes = [type(np.dtype(t)) for t in ("u1", "u4", "i4", "i8", "f4", "f8", "b1")]
    return [np.ndarray, np.dtype, *dtypes, multiarray._reconstruct, multiarray.scalar,
            (multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
            (multiarray.scalar, "numpy.core.multiarray.scalar")]


def _refused(exc) -> str:
    """The part of torch's weights-only message that says what was refused."""
    text = str(exc)
    m = re.search(r"unsupported GLOBAL (\S+)|Unsupported global: GLOBAL (\S+)", text)
    if m:
        return f"it refers to {m.group(1) or m.group(2)}, which a model file never needs"
    m = re.search(r"Unsupported operand \d+|[Uu]nsupported [^.\n]*", text)
    if m:
        return f"the pickle uses {m.group(0).lower()}"
    return _one_line(exc)


def _one_line(exc) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"


def checkpoint_contents(obj: dict, where) -> tuple[dict, dict, dict]:
    """``(model_config, float32 state dict, metadata)`` of a compact file or a training checkpoint
    (``obj``: what :func:`load_checkpoint` read from ``where``), without building the network;
    metadata: what is stored beside the weights (``epoch``, ``val_iou``, ``weights_dtype``, ...)."""
    import torch

    if obj.get("format") == FORMAT:
        cfg, state = obj["model_config"], expand_weights(obj["weights"])
        meta = {k: v for k, v in obj.items() if k not in ("weights", "model_config")}
    elif "model" in obj and "model_config" in obj:
        cfg, state = obj["model_config"], {k: v.float() if torch.is_floating_point(v) else v
                                           for k, v in obj["model"].items()}
        meta = {"epoch": obj.get("epoch"), "val_iou": obj.get("val_iou")}
    else:
        raise InputError(f"{where}: not a tio2fiji model file or checkpoint (no model_config).")
    if not cfg:
        raise InputError(f"{where}: the checkpoint does not say which model it holds (empty model_config).")
    return cfg, state, meta


# --------------------------------------------------------------------------------------------------
# networks


def build_model(cfg: dict):
    """The untrained network a ``model_config`` describes (U-Net or Mask R-CNN).

    Encoder/backbone weights are never read or downloaded here: the weights come from the file.
    """
    arch = cfg.get("arch", "unet")
    if arch == "maskrcnn":
        return _build_maskrcnn_from_config(cfg)
    if arch != "unet":
        raise InputError(f"model architecture {cfg.get('arch')!r} is not supported by load_model "
                         f"(unet or maskrcnn).")
    return build_unet(cfg.get("encoder", "resnet34"), None, in_channels=int(cfg.get("in_channels", 1)),
                      classes=int(cfg.get("classes", 1)))


def load_model(path="default", device="cpu"):
    """Load a network for inference (eval mode, float32).

    Parameters
    ----------
    path : str, path or dict
        ``"default"`` (the bundled model), a compact file from :func:`export_model`, a training
        checkpoint (``best.pt``/``last.pt``), or the dict :func:`load_checkpoint` returned.
    device : str or torch.device

    Returns
    -------
    Model
        ``.net``: the network; ``.settings``: its :class:`~tio2fiji.models.settings.ModelSettings`
        (post-processing, configuration and provenance: the file, its SHA-256 and, for compact
        files, the metadata stored with the weights), resolved and checked here once.

    Raises
    ------
    InputError
        A missing or unreadable file, weights that do not fit its configuration, or stored
        post-processing parameters that are unknown or out of range.
    """
    if isinstance(path, dict):
        obj, where = path, "checkpoint"
    else:
        where = resolve_model(path)
        obj = load_checkpoint(where)
    cfg, state, meta = checkpoint_contents(obj, where)
    meta = dict(meta)
    provenance = Provenance(
        file=None if isinstance(path, dict) else str(where),
        # which file the weights came from: the ONNX graph cache is keyed by it (models.onnx)
        file_sha256=None if isinstance(path, dict) else file_sha256(where),
        weights_dtype=meta.pop("weights_dtype", None), epoch=meta.pop("epoch", None),
        val_iou=meta.pop("val_iou", None), metadata=meta)
    settings = ModelSettings.from_config(cfg, provenance)
    model = build_model(cfg)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        what = (f"Mask R-CNN configuration {cfg.get('config')}" if cfg.get("arch") == "maskrcnn"
                else f"a U-Net with encoder {cfg.get('encoder')}")
        raise InputError(f"{where}: weights do not fit {what} ({exc}).") from exc
    net = model.to(device).eval()
    return Model(net, settings, tuple(p._version for p in net.parameters()))


def model_arch(model) -> str:
    """``"unet"`` or ``"maskrcnn"``: which kind of network ``model`` (a :class:`Model` or a bare
    network) is."""
    return "maskrcnn" if is_maskrcnn(as_model(model).net) else "unet"


# --------------------------------------------------------------------------------------------------
# compact model files


def export_model(checkpoint, path, weights: str = "float16", metadata: dict | None = None,
                 threshold: float | None = None, score_threshold: float | None = None,
                 watershed: dict | None = None, star: dict | None = None, border: dict | None = None,
                 distance: dict | None = None, max_overlap: float | None = None, rpn_nms_thresh: float | None = None,
                 pixel_size_m: float | None = None, train_ecd: dict | None = None,
                 int8_calibration: str | None = None, min_particle_px: int | None = None) -> Path:
    """Write a compact inference file from a training checkpoint, atomically.

    Parameters
    ----------
    checkpoint : path or dict
        ``best.pt`` of a training run (or its loaded dict).
    path : path
        The file to write (e.g. ``tio2fiji/data/unet_watershed.pt``).
    weights : {"float16", "int8"}
        ``"float16"``: every float tensor in half precision. ``"int8"``: convolution kernels with
        more than 10,000 weights as symmetric int8 with one float16 scale per output channel
        (``scale = max|w| / 127``), everything else float16.
    metadata : dict, optional
        Stored with the weights (metrics, data, training time); ``load_model`` returns it in
        ``model.settings.provenance.metadata``.
    threshold : float, optional
        The probability threshold :func:`tio2fiji.predict.segment` uses by default with this model.
    score_threshold : float, optional
        Mask R-CNN: the detection score threshold.
    max_overlap : float, optional
        Mask R-CNN: drop a detection whose mask is taken by higher-scoring ones for more than this
        fraction (:func:`tio2fiji.instances.paint_instances`).
    rpn_nms_thresh : float, optional
        Mask R-CNN: the region proposal network's NMS IoU at inference, stored as a model override
        (the value it was trained with otherwise).
    watershed : dict, optional
        U-Net: watershed parameters (keys of :data:`tio2fiji.instances.WATERSHED_DEFAULTS`).
    star : dict, optional
        ``outputs="star"`` U-Net: the parameters of :func:`tio2fiji.instances.labels_from_star`
        (keys of :data:`tio2fiji.instances.STAR_DEFAULTS`, and ``min_size``).
    border : dict, optional
        ``outputs="border"`` U-Net: the parameters of :func:`tio2fiji.instances.labels_from_border`
        (keys of :data:`tio2fiji.instances.BORDER_DEFAULTS`).
    distance : dict, optional
        ``outputs="distance"`` U-Net: the parameters of
        :func:`tio2fiji.instances.labels_from_distance` (keys of
        :data:`tio2fiji.instances.DISTANCE_DEFAULTS`).
    pixel_size_m : float, optional
        The pixel size (m) of the training images: the model's working scale (issue 28); files
        that store none are taken to be at :data:`TRAINED_PIXEL_SIZE_M`.
    train_ecd : dict, optional
        The sizes of the training particles (e.g. ``training.particle_sizes``), recorded so that
        users can see which particles the model saw.
    int8_calibration : str, optional
        The activation ranges of :func:`tio2fiji.models.onnx.int8_calibration`: with it the U-Net
        runs as an int8 graph on the CPU by default (``engine="auto"``).
    min_particle_px : int, optional
        The smallest particle in pixels at the model's pixel size
        (:attr:`~tio2fiji.models.settings.ModelSettings.min_particle_px`).

    The post-processing parameters not given are the checkpoint's, else the defaults
    (:meth:`tio2fiji.models.settings.ModelSettings.from_config`, which checks them); all of them are
    stored in the file's ``model_config``.
    """
    import torch

    ck = load_checkpoint(checkpoint) if not isinstance(checkpoint, dict) else checkpoint
    if weights not in ("float16", "int8"):
        raise InputError(f"weights must be 'float16' or 'int8', not {weights!r}.")
    if "model" not in ck or "model_config" not in ck:
        raise InputError(f"{checkpoint if not isinstance(checkpoint, dict) else 'checkpoint'}: not a "
                         f"training checkpoint (no model / model_config).")
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
    if score_threshold is not None:
        cfg["score_threshold"] = float(score_threshold)
    if max_overlap is not None:
        cfg["max_overlap"] = float(max_overlap)
    if rpn_nms_thresh is not None:
        if cfg.get("arch") != "maskrcnn":
            raise InputError("rpn_nms_thresh is a Mask R-CNN setting; this checkpoint holds a "
                             f"{cfg.get('arch')} model.")
        if not 0.0 < float(rpn_nms_thresh) <= 1.0:
            raise InputError(f"rpn_nms_thresh must be in (0, 1], not {rpn_nms_thresh!r}.")
        cfg["overrides"] = {**(cfg.get("overrides") or {}), "rpn_nms_thresh": float(rpn_nms_thresh)}
    if watershed is not None:
        cfg["watershed"] = dict(watershed)
    if star is not None:
        cfg["star"] = dict(star)
    if border is not None:
        cfg["border"] = dict(border)
    if distance is not None:
        cfg["distance"] = dict(distance)
    if pixel_size_m is not None:
        cfg["pixel_size_m"] = float(pixel_size_m)
    if train_ecd is not None:
        cfg["train_ecd"] = dict(train_ecd)
    if int8_calibration is not None:
        cfg["int8_calibration"] = str(int8_calibration)
    if min_particle_px is not None:
        cfg["min_particle_px"] = min_particle_px
    post = ModelSettings.from_config(cfg)
    cfg["threshold"] = post.threshold
    if cfg.get("arch") == "maskrcnn":
        cfg["score_threshold"] = post.score_threshold
    else:
        cfg["watershed"] = post.watershed
        if post.outputs == "star":
            cfg["star"] = post.star
        if post.outputs == "border":
            cfg["border"] = post.border
        if post.outputs == "distance":
            cfg["distance"] = post.distance
    doc = {"format": FORMAT, "version": 1, "weights_dtype": weights,
           "model_config": cfg, "epoch": ck.get("epoch"), "val_iou": ck.get("val_iou"),
           **(metadata or {}), "weights": out}
    return atomic_write(Path(path), lambda p: torch.save(doc, p))
