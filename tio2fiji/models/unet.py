"""U-Net with a ResNet encoder (segmentation-models-pytorch), as in the thesis (§3.2, Tables 6-7).

The thesis trained four configurations: a ResNet-18 or ResNet-34 encoder, either pre-trained on
ImageNet or trained from scratch. :data:`CONFIGS` names them; :func:`build_unet` builds any of them
(or any encoder/weights combination) with one input channel (gray SEM images) and one output
channel (the particle logit).

Encoder weights
---------------
``"imagenet"``
    smp downloads them from the Hugging Face hub (``smp-hub/resnet34.imagenet``) on first use and
    sums the three colour channels of the first convolution into one (``in_channels=1``). Needs a
    network or a filled hub cache; with ``HF_HUB_OFFLINE=1`` and no cache this raises a
    :class:`~tio2fiji.errors.Tio2FijiError` at once instead of retrying.
``None`` / ``"none"``
    Random initialisation ("from scratch", "not pre-trained" in the thesis).
a path
    A local file with a state dict of the encoder, for machines without a network. The keys are
    those of a torchvision ResNet (``conv1.weight``, ``bn1.*``, ``layer1.0.conv1.weight``, ...,
    ``layer4.*``); ``fc.*`` is ignored, and a prefix ``encoder.`` (an smp model's state dict) is
    stripped. A 3-channel ``conv1.weight`` (64, 3, 7, 7) is summed over its channels to
    (64, 1, 7, 7), as smp does for ImageNet weights; a 1-channel one is used as it is. E.g.
    ``torch.save(torchvision.models.resnet34(weights="IMAGENET1K_V1").state_dict(), "r34.pt")`` on a
    machine with a network gives a usable file.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError, Tio2FijiError
from .weights import resnet_state_from_file

__all__ = ["ENCODERS", "CONFIGS", "build_unet", "build_config", "parse_config"]

ENCODERS = ("resnet18", "resnet34")

#: The four thesis configurations: name -> (encoder, encoder weights).
CONFIGS = {
    "resnet18-imagenet": ("resnet18", "imagenet"),
    "resnet18-scratch": ("resnet18", None),
    "resnet34-imagenet": ("resnet34", "imagenet"),
    "resnet34-scratch": ("resnet34", None),
}


def _weights_kind(encoder_weights):
    """``None``, ``"imagenet"`` or a Path."""
    if encoder_weights is None:
        return None
    if isinstance(encoder_weights, (str, os.PathLike)):
        text = str(encoder_weights)
        if text.lower() in ("none", "scratch", ""):
            return None
        if text.lower() == "imagenet":
            return "imagenet"
        path = Path(text)
        if not path.is_file():
            raise InputError(f"encoder weights {text!r}: not 'imagenet', 'none', or an existing "
                             f"file with an encoder state dict.")
        return path
    raise InputError(f"encoder_weights must be 'imagenet', None/'none' or a path, not {encoder_weights!r}.")


def _encoder_state_from_file(path: Path, in_channels: int) -> dict:
    """Read a local encoder state dict and adapt its first convolution to ``in_channels``."""
    state = resnet_state_from_file(path, strip=("encoder.",),
                                   drop=("fc.", "decoder.", "segmentation_head."),
                                   what="encoder weights", arch="ResNet encoder")
    w = state["conv1.weight"]
    if w.shape[1] != in_channels:
        if in_channels == 1:
            # smp's rule for pretrained weights and one channel: sum the colour filters
            state["conv1.weight"] = w.sum(dim=1, keepdim=True)
        else:
            raise InputError(f"{path}: conv1 has {w.shape[1]} input channels, the model {in_channels}.")
    return state


def build_unet(encoder: str = "resnet34", encoder_weights="none", in_channels: int = 1,
               classes: int = 1):
    """A ``segmentation_models_pytorch.Unet`` with a ResNet encoder.

    Parameters
    ----------
    encoder : {"resnet18", "resnet34"}
    encoder_weights : {"imagenet", None, "none"} or path
        See the module docstring.
    in_channels : int
        1 for gray SEM images.
    classes : int
        Output channels; 1 = one particle logit per pixel (no activation: apply a sigmoid).

    Returns
    -------
    torch.nn.Module
        Output shape ``(N, classes, H, W)`` for inputs ``(N, in_channels, H, W)`` with H and W
        multiples of 32.

    Raises
    ------
    Tio2FijiError
        Unknown encoder, unreadable weights file, or ImageNet weights that cannot be downloaded.
    """
    if encoder not in ENCODERS:
        raise InputError(f"encoder must be one of {', '.join(ENCODERS)}, not {encoder!r}.")
    kind = _weights_kind(encoder_weights)
    import segmentation_models_pytorch as smp

    if kind == "imagenet":
        try:
            return smp.Unet(encoder_name=encoder, encoder_weights="imagenet", in_channels=in_channels,
                            classes=classes)
        except Exception as exc:  # huggingface_hub raises several types (offline, HTTP, ...)
            offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
            raise Tio2FijiError(
                f"ImageNet weights for {encoder} could not be loaded from the model hub"
                f"{' (HF_HUB_OFFLINE is set)' if offline else ''}: {type(exc).__name__}. Use "
                f"encoder weights 'none' (train from scratch) or a local weights file "
                f"(a torchvision ResNet state dict; see tio2fiji.models.unet)."
            ) from exc
    model = smp.Unet(encoder_name=encoder, encoder_weights=None, in_channels=in_channels,
                     classes=classes)
    if isinstance(kind, Path):
        state = _encoder_state_from_file(kind, in_channels)
        try:
            model.encoder.load_state_dict(state, strict=True)
        except RuntimeError as exc:  # missing/unexpected keys or shape mismatches
            first = str(exc).strip().splitlines()
            raise InputError(f"{kind}: encoder weights do not fit {encoder} "
                             f"({' '.join(first[:3])[:300]}).") from exc
    return model


def parse_config(name: str) -> tuple:
    """``(encoder, weights)`` of a configuration name such as ``"resnet18-scratch"``."""
    key = str(name).lower()
    if key not in CONFIGS:
        raise InputError(f"unknown U-Net configuration {name!r}; choose one of {', '.join(CONFIGS)}.")
    return CONFIGS[key]


def build_config(name: str, in_channels: int = 1, classes: int = 1):
    """Build one of the four thesis configurations by name (see :data:`CONFIGS`)."""
    encoder, weights = parse_config(name)
    return build_unet(encoder, weights, in_channels=in_channels, classes=classes)
