"""A U-Net as an ONNX graph run by ONNX Runtime on the CPU: the engine :mod:`tio2fiji.predict` uses
there by default (measured 1.8x faster than PyTorch for the bundled U-Net,
``benchmarks/speed/infer_speed.py``).

:func:`onnx_graph` exports a network's logits once (``torch.onnx.export``, in memory);
:func:`onnx_session` is the cached ONNX Runtime session of a network; :class:`OnnxUNet` is the
graph of a :class:`~tio2fiji.models.settings.Model`, which (with the model's settings) is what a
Dask worker is sent instead of the model file: it runs the same graph as the process that exported it without
building the PyTorch network, importing segmentation-models-pytorch or tracing it again (about
3.5 s of a 2-core worker's start).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import warnings
import weakref
from pathlib import Path

import numpy as np
import torch

from ..io import atomic_write
from .settings import Model, as_model

#: The ONNX opset of every graph tio2fiji writes (these sessions and the exported files).
ONNX_OPSET = 17

#: ONNX Runtime sessions of the PyTorch models run with ``engine="onnx"`` (see :func:`onnx_session`).
_SESSIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_EXPORTING = threading.Lock()  # tracing is not thread-safe (threaded Dask workers share a model)


def onnx_graph(model) -> bytes:
    """The serialized ONNX graph of ``model``'s logits: input ``x`` ``(N, 1, H, W)`` float32,
    output ``logits``, batch, height and width dynamic.

    Parameters
    ----------
    model : Model or torch.nn.Module
        In eval mode, on the CPU.
    """
    model = as_model(model).net
    buf = io.BytesIO()
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's notes on traced shapes
        torch.onnx.export(model, (torch.zeros(1, 1, 64, 64),), buf, dynamo=False, opset_version=ONNX_OPSET,
                          input_names=["x"], output_names=["logits"], dynamic_axes={"x": axes, "logits": axes})
    return buf.getvalue()


def cache_dir() -> Path:
    """Where exported graphs are kept between runs: ``$TIO2FIJI_CACHE``, else
    ``$XDG_CACHE_HOME/tio2fiji`` (``~/.cache/tio2fiji``), subfolder ``onnx``."""
    root = os.environ.get("TIO2FIJI_CACHE")
    if not root:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tio2fiji"
    return Path(root) / "onnx"


def cached_graph(model, make=None, kind: str = "f32") -> bytes:
    """:func:`onnx_graph` of a network loaded from a model file, kept on disk between runs.

    The file is named by the model file's SHA-256 (``model.settings.provenance``), the ONNX opset
    and the torch version, written atomically with the graph's own SHA-256 beside it, and used only
    when that digest matches (a damaged or half-copied file is exported again). A network whose
    weights changed since it was loaded (:attr:`Model.as_loaded`), or that came from no file, is
    exported in memory as before. ``make(model)`` makes another ``kind`` of graph
    (:func:`int8_graph`) under the same rules.
    """
    make = make or onnx_graph
    model = as_model(model)
    if not model.as_loaded:
        return make(model)
    sha = model.settings.provenance.file_sha256
    path = cache_dir() / f"{sha[:40]}-{kind}-opset{ONNX_OPSET}-torch{torch.__version__.replace('+', '_')}.onnx"
    check = path.with_suffix(".json")
    try:
        graph = path.read_bytes()
        if json.loads(check.read_text())["sha256"] == hashlib.sha256(graph).hexdigest():
            return graph
    except (OSError, ValueError, KeyError):
        pass  # not there yet, or damaged: export again
    graph = make(model)
    try:
        atomic_write(path, lambda p: Path(p).write_bytes(graph))
        atomic_write(check, lambda p: Path(p).write_text(json.dumps(
            {"sha256": hashlib.sha256(graph).hexdigest(), "model_sha256": sha, "opset": ONNX_OPSET,
             "torch": torch.__version__})))
    except Exception:  # noqa: BLE001  (a read-only or full cache folder only costs the next run an export)
        pass
    return graph


#: Static int8 quantization of the U-Net (ONNX Runtime, QDQ): per-channel int8 weights, uint8
#: activations whose ranges were calibrated on training crops (``int8_calibration``) and are stored
#: in the model file. 2.5x faster than float32 on this project's CPU (AVX-512 VNNI).
INT8_SETTINGS = {"format": "QDQ", "per_channel": True, "activations": "QUInt8", "weights": "QInt8",
                 "calibration": "MinMax"}


def _quantize(graph: bytes, calibration: str | None, crops=None):
    """``(int8 graph bytes, calibration cache JSON)`` of a float graph, through ONNX Runtime's
    ``quantize_static``: ranges from ``calibration`` (a cache written by an earlier call) or
    measured on ``crops`` (``(N, 1, H, W)`` float32 network inputs)."""
    import tempfile

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class _Crops(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"x": np.ascontiguousarray(c[None], np.float32)} for c in crops])

        def get_next(self):
            return next(self.items, None)

    with tempfile.TemporaryDirectory(prefix="tio2fiji-int8-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tmp = Path(tmp)
        (tmp / "f32.onnx").write_bytes(graph)
        quant_pre_process(str(tmp / "f32.onnx"), str(tmp / "pre.onnx"))
        cache = tmp / "calibration.json"
        if calibration is not None:
            cache.write_text(calibration)
        quantize_static(str(tmp / "pre.onnx"), str(tmp / "int8.onnx"), None if calibration else _Crops(),
                        quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibration_cache_path=str(cache))
        return (tmp / "int8.onnx").read_bytes(), cache.read_text()


def int8_calibration(model, crops) -> str:
    """The int8 activation ranges of ``model`` (a :class:`Model` or a network) measured on
    ``crops`` (``(N, 1, H, W)`` float32 network inputs, e.g. training crops): the text
    :func:`int8_graph` needs, stored in the model file (``export_model(int8_calibration=...)``)."""
    return _quantize(onnx_graph(model), None, crops)[1]


def int8_graph(model) -> bytes:
    """The int8 graph of a :class:`Model` whose file stores its calibration
    (``model.settings.int8_calibration``), kept on disk as :func:`cached_graph` keeps the float
    one. Raises ``KeyError`` when the model stores none."""
    model = as_model(model)
    calibration = model.settings.int8_calibration
    if calibration is None:
        raise KeyError("int8_calibration")
    return cached_graph(model, lambda m: _quantize(cached_graph(m), calibration)[0], "int8")


def _session(graph: bytes, threads: int):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


def onnx_session(model, threads: int | None = None, int8: bool = False):
    """An ONNX Runtime session (CPU) of ``model``'s logits, built once per model and cached.

    The graph is :func:`cached_graph` of the network (exported once per model file and kept on
    disk), held in memory. The cache is keyed by the
    thread count and the parameters' in-place version counters, so weights changed after the
    export (a training step, ``load_state_dict``) build a new graph instead of using stale ones.
    The cache is a weak mapping from the model (not an attribute of it), so a model stays
    picklable and copyable and its session goes with it. An :class:`OnnxUNet` has its own session.

    Parameters
    ----------
    model : Model
        Its network (PyTorch, or an :class:`OnnxUNet`) in eval mode, on the CPU; a bare network is
        taken as one not loaded from a file.
    threads : int, optional
        ONNX Runtime's intra-op threads; default ``torch.get_num_threads()``.
    int8 : bool
        The int8 graph (:func:`int8_graph`) instead of the float32 one.
    """
    threads = int(threads or torch.get_num_threads())
    model = as_model(model)
    net = model.net
    if isinstance(net, OnnxUNet):
        return net.session(threads)
    params = list(net.parameters())
    key = (threads, bool(int8), tuple(p._version for p in params), tuple(p.data_ptr() for p in params))
    with _EXPORTING:
        cached = _SESSIONS.get(net)
        if cached is not None and cached[0] == key:
            return cached[1]
        session = _session(int8_graph(model) if int8 else cached_graph(model), threads)
        _SESSIONS[net] = (key, session)
    return session


class OnnxUNet(torch.nn.Module):
    """A U-Net's exported graph, run by ONNX Runtime on the CPU.

    As the network of a :class:`Model` (:meth:`from_model`: the same settings as the model it was
    exported from) it stands for the PyTorch U-Net wherever :mod:`tio2fiji.predict` takes a model
    (its forward pass returns the same logits), and it pickles as its graph (the session is built
    where it runs, once per thread count), so the model can be sent to Dask workers.

    Parameters
    ----------
    graph : bytes
        :func:`onnx_graph` of the network.
    precision : {"float32", "int8"}
        Which graph it is (:func:`onnx_graph`/:func:`cached_graph` or :func:`int8_graph`).
    """

    def __init__(self, graph: bytes, precision: str = "float32"):
        super().__init__()
        if precision not in ("float32", "int8"):
            raise ValueError(f"precision must be 'float32' or 'int8', not {precision!r}")
        self.graph = bytes(graph)
        self.precision = precision
        # an empty parameter says where the network runs (the CPU), as a PyTorch network's do
        self.where = torch.nn.Parameter(torch.zeros(0), requires_grad=False)
        self._sessions: dict = {}

    @classmethod
    def from_model(cls, model, int8: bool = False) -> Model:
        """A :class:`Model` whose network is ``model``'s PyTorch U-Net exported
        (:func:`cached_graph`, or :func:`int8_graph`), with ``model``'s settings (the same object).
        A model whose network is already an :class:`OnnxUNet` is returned as it is."""
        model = as_model(model)
        if isinstance(model.net, cls):
            return model
        with _EXPORTING:
            graph = int8_graph(model) if int8 else cached_graph(model)
        return Model(cls(graph, "int8" if int8 else "float32"), model.settings)

    def session(self, threads: int | None = None):
        """The ONNX Runtime session of the graph with ``threads`` intra-op threads (default
        ``torch.get_num_threads()``), built once."""
        threads = int(threads or torch.get_num_threads())
        with _EXPORTING:
            if threads not in self._sessions:
                self._sessions[threads] = _session(self.graph, threads)
        return self._sessions[threads]

    def forward(self, x):
        if x.device.type != "cpu":
            raise RuntimeError("an ONNX U-Net runs on the CPU only.")
        out = self.session().run(None, {"x": x.detach().float().contiguous().numpy()})[0]
        return torch.from_numpy(out)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_sessions"] = {}
        return state
