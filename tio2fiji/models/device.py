"""Which torch device a command runs its network on (``auto``, ``cpu``, ``cuda`` or ``cuda:N``),
and how a forward pass runs there: threads per worker, mixed precision, pinned host-to-GPU
copies, and which engine runs it (PyTorch, or ONNX Runtime: :mod:`tio2fiji.models.onnx`)."""

from __future__ import annotations

import importlib.util
import os

import torch

from ..errors import InputError
from .onnx import OnnxUNet
from .settings import as_model

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


def torch_threads(workers: int = 1, cores: int | None = None) -> int:
    """Torch threads per worker so that ``workers × threads`` fills the cores (at least 1).

    Several processes each running torch with all cores oversubscribe the machine (every matrix
    product then waits for threads that another process holds), so each of ``workers`` gets its
    share.

    Parameters
    ----------
    workers : int
        Processes (or Dask workers) running a network at the same time; at least 1.
    cores : int, optional
        Cores to share; default the ones this process may run on (``os.sched_getaffinity``, else
        ``os.cpu_count()``).

    Returns
    -------
    int
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError(f"workers must be a positive integer, got {workers!r}.")
    return max(1, int(available_cores() if cores is None else cores) // workers)


def available_cores() -> int:
    """CPU cores this process may run on (its affinity, else ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def use_amp(device, amp=None) -> bool:
    """Whether a forward pass on ``device`` runs in mixed precision: ``amp`` when given, else on
    for CUDA (float16 autocast) and off on the CPU (bfloat16 autocast, measured slower and not
    kept; see ``benchmarks/speed/infer_speed.py``)."""
    return (torch.device(device).type == "cuda") if amp is None else bool(amp)


#: The forward-pass engines (:func:`choose_engine`).
ENGINES = ("auto", "torch", "onnx", "onnx-int8")


def choose_engine(model, device, engine, amp):
    """What runs the forward passes of :mod:`tio2fiji.predict`: ``"onnx-int8"`` (ONNX Runtime,
    the int8 graph of a model file that stores its calibration), ``"onnx"`` (ONNX Runtime, float32;
    measured faster than PyTorch for the U-Net on the CPU: ``benchmarks/speed/infer_speed.py``) or
    ``"torch"``.

    ``"auto"`` takes ONNX Runtime for tio2fiji's U-Nets (smp's, whose export is exact) on the CPU
    without mixed precision, when it is installed, in int8 when the model file stores an int8
    calibration (``model_config["int8_calibration"]``, chosen on the validation images), else
    float32; any other module runs in PyTorch (a traced graph would freeze its Python logic).
    ``"onnx"``/``"onnx-int8"`` on CUDA or with ``amp`` is refused, ``"onnx-int8"`` for a model
    without a calibration too. An :class:`~tio2fiji.models.onnx.OnnxUNet` (an exported graph)
    runs only with ONNX Runtime, in the precision it was exported in.

    Parameters
    ----------
    model : Model or torch.nn.Module
        A :class:`~tio2fiji.models.settings.Model` (its settings say whether an int8 calibration is
        stored), or a bare network (none stored).
    """
    model = as_model(model)
    net = model.net
    if engine not in ENGINES:
        raise InputError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}.")
    cpu = torch.device(device).type == "cpu"
    if isinstance(net, OnnxUNet):  # an exported graph has no PyTorch network to run
        if not cpu or amp or engine == "torch":
            raise InputError("this network is an ONNX graph: it runs on the CPU with ONNX Runtime; load "
                             "the model file for PyTorch, CUDA or mixed precision.")
        return "onnx-int8" if net.precision == "int8" else "onnx"
    if engine.startswith("onnx") and (not cpu or amp):
        raise InputError(f"engine {engine!r} runs on the CPU without mixed precision; use device='cpu' and "
                         f"amp=False, or engine='torch'.")
    calibrated = model.settings.int8_calibration is not None
    if engine == "onnx-int8" and not calibrated:
        raise InputError("engine 'onnx-int8' needs a model file that stores its int8 calibration; this one "
                         "does not (use 'onnx' or 'auto').")
    if engine == "auto":
        smp = any(c.__module__.startswith("segmentation_models_pytorch") for c in type(net).__mro__)
        onnx = smp and cpu and not amp and importlib.util.find_spec("onnxruntime")
        engine = ("onnx-int8" if calibrated else "onnx") if onnx else "torch"
    return engine


def autocast(device, amp: bool):
    """The autocast context of a forward pass: float16 on CUDA, bfloat16 on the CPU, or none."""
    import contextlib

    dev = torch.device(device)
    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(dev.type, dtype=torch.float16 if dev.type == "cuda" else torch.bfloat16)


def to_device(array, device):
    """A numpy batch as a tensor on ``device``: on CUDA through pinned (page-locked) host memory
    with a non-blocking copy, so the copy overlaps the work already queued on the GPU."""
    x = torch.from_numpy(array)
    dev = torch.device(device)
    if dev.type == "cuda":
        return x.pin_memory().to(dev, non_blocking=True)
    return x.to(dev)
