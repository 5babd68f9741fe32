"""Which torch device a command runs its network on: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""

from __future__ import annotations

import torch

from ..errors import InputError

#: What ``--device`` accepts besides ``cuda:N``.
DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(spec="auto") -> torch.device:
    """The torch device that ``spec`` names, checked against this machine.

    Parameters
    ----------
    spec : str or torch.device or None
        ``"auto"`` (or None): the first CUDA GPU when torch sees one, else the CPU; ``"cpu"``;
        ``"cuda"`` / ``"cuda:N"``: that GPU, which must exist.

    Returns
    -------
    torch.device

    Raises
    ------
    InputError
        An unknown name, or a CUDA device this machine does not have (no silent CPU fallback:
        a user who asked for a GPU is told that it is not there).
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    text = "auto" if spec is None else str(spec).strip().lower()
    if text == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise InputError(f"device {spec!r} is not one of auto, cpu, cuda, cuda:N.")
    if dev.type == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise InputError(f"device {spec!r} asked for, but torch sees no CUDA GPU on this machine "
                         f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); use --device cpu "
                         f"or auto.")
    index = 0 if dev.index is None else dev.index
    if index >= torch.cuda.device_count():
        raise InputError(f"device {spec!r} asked for, but this machine has {torch.cuda.device_count()} "
                         f"CUDA GPU(s) (cuda:0 to cuda:{torch.cuda.device_count() - 1}).")
    return torch.device("cuda", index)
