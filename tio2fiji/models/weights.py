"""Local ResNet weight files for the networks' encoders/backbones (no download).

Three kinds of file hold ResNet weights that a network here can start from:

* a plain state dict of a torchvision ResNet (``conv1.weight``, ``bn1.*``, ``layer1.*`` ...), e.g.
  ImageNet weights saved with ``torch.save``: :func:`resnet_state_from_file`;
* a tio2fiji U-Net model file (``tio2fiji export``, a bundled model) or training checkpoint
  (``best.pt``): its ``encoder.*`` weights are a torchvision ResNet's (smp's ResNet encoder keeps
  torchvision's names), read by :func:`unet_encoder_state`;
* the bundled one-output U-Net (``unet-watershed``), :data:`BACKBONE_UNET`, whose encoder the
  bundled Mask R-CNN started from.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError

__all__ = ["BACKBONE_UNET", "MODEL_FORMAT", "load_weights_file", "is_model_file", "expand_weights",
           "resnet_state", "resnet_state_from_file", "unet_encoder_state"]

#: The bundled one-output U-Net (``resolve_model("unet-watershed")``; named here because
#: ``checkpoint`` imports the factories that use this module; a test keeps them equal): the
#: encoder that Mask R-CNN's ``"unet"`` backbone weights are.
BACKBONE_UNET = Path(__file__).resolve().parent.parent / "data" / "unet_watershed.pt"
#: ``format`` of a compact tio2fiji model file (as :data:`tio2fiji.models.checkpoint.FORMAT`).
MODEL_FORMAT = "tio2fiji-model"


def load_weights_file(path: Path, what: str = "encoder weights"):
    """``torch.load(path, weights_only=True)`` on the CPU, refusing unreadable files in one line."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip errors have many types
        text = " ".join(str(exc).split())[:200]
        raise InputError(f"{path}: cannot read {what} ({type(exc).__name__}: {text}); give a state "
                         f"dict, a tio2fiji model file or a run's best.pt (last.pt holds more than "
                         f"weights).") from exc


def is_model_file(obj) -> bool:
    """True for what a tio2fiji model file or training checkpoint holds (not a plain state dict)."""
    return isinstance(obj, dict) and (obj.get("format") == MODEL_FORMAT
                                      or ("model" in obj and "model_config" in obj))


def expand_weights(weights: dict) -> dict:
    """Compact weights (fp16 tensors, or int8 ``{"q", "scale"}`` with one scale per output
    channel) to float32 tensors; other tensors unchanged."""
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


def resnet_state(obj, path: Path, strip=(), drop=(), what: str = "encoder weights",
                 arch: str = "ResNet") -> dict:
    """The ResNet state dict in a loaded file ``obj``, keyed as a plain torchvision ResNet.

    See :func:`resnet_state_from_file` for the parameters (``path`` only names the file in errors).
    """
    import torch

    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InputError(f"{path}: expected a state dict (parameter name -> tensor) of a {arch}.")
    state = {}
    for k, v in obj.items():
        for prefix in strip:
            if k.startswith(prefix):
                k = k[len(prefix):]
        if k.startswith(tuple(drop)):
            continue
        state[k] = v
    if "conv1.weight" not in state:
        name = arch if arch.startswith("ResNet-") else "ResNet"
        raise InputError(f"{path}: no 'conv1.weight'; expected the keys of a torchvision {name} "
                         f"(conv1.weight, bn1.*, layer1.* ... layer4.*).")
    return state


def resnet_state_from_file(path: Path, strip=(), drop=(), what: str = "encoder weights",
                           arch: str = "ResNet") -> dict:
    """Read a ResNet state dict saved with ``torch.save`` and key it as a plain torchvision ResNet.

    Parameters
    ----------
    path : Path
        A state dict (or a dict with one under ``"state_dict"``).
    strip : sequence of str
        Key prefixes removed, in this order (e.g. ``"encoder."`` of a whole smp model).
    drop : sequence of str
        Keys starting with these (after stripping) are left out: heads that are not the ResNet.
    what, arch : str
        Wording of the error messages (``"backbone weights"``, ``"ResNet-50"``).

    Returns
    -------
    dict
        Parameter name -> tensor, with a ``conv1.weight`` (its input channels unchanged: the
        caller adapts them to the network).
    """
    return resnet_state(load_weights_file(path, what), path, strip, drop, what, arch)


def unet_encoder_state(obj, path) -> tuple[str, dict]:
    """``(encoder name, state dict)`` of the ResNet encoder of a tio2fiji U-Net file.

    Parameters
    ----------
    obj : dict
        What :func:`load_weights_file` read from a compact model file or a training checkpoint.
    path : path
        Names the file in errors.

    Returns
    -------
    encoder : str
        ``model_config["encoder"]`` (``"resnet18"``, ``"resnet34"``).
    state : dict
        float32 tensors keyed as a torchvision ResNet (``conv1.weight``, ``bn1.running_mean``, ...):
        the ``encoder.`` keys with the prefix removed, int8/fp16 weights expanded.
    """
    cfg = obj.get("model_config") or {}
    if cfg.get("arch", "unet") != "unet" or "encoder" not in cfg:
        raise InputError(f"{path}: holds a {cfg.get('arch', 'unknown')} model, not a tio2fiji U-Net "
                         f"with a ResNet encoder; give a U-Net model file or checkpoint.")
    weights = obj["weights"] if obj.get("format") == MODEL_FORMAT else obj["model"]
    state = {k[len("encoder."):]: v for k, v in expand_weights(weights).items()
             if k.startswith("encoder.")}
    if "conv1.weight" not in state:
        raise InputError(f"{path}: the U-Net's weights have no encoder.conv1.weight.")
    return str(cfg["encoder"]), state
