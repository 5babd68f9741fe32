"""Local ResNet weight files for the networks' encoders/backbones (no download)."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError

__all__ = ["resnet_state_from_file"]


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
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip errors have many types
        raise InputError(f"{path}: cannot read {what} ({exc}).") from exc
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
