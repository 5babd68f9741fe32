"""The Mask R-CNN as ONNX: one 256×256 tile in, its detections out (see :mod:`tio2fiji.export`).

The graph returns what :func:`tio2fiji.predict.detect` returns for a tile; the check runs every
tile of a test image through onnxruntime and PyTorch and compares the particles painted from both.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import InputError
from ..instances import paint_instances
from ..io import read_sem
from ..models.onnx import ONNX_OPSET
from ..models.settings import ModelSettings, as_model
from ..predict import tiled_detections

__all__ = ["check_maskrcnn_onnx", "write_maskrcnn_onnx"]

# shared with tio2fiji.export (it imports them from here)
_LICENSE = "CC-BY-NC-ND-4.0"
_DATA_CITATION = ("Rühle, B., Krumrey, J. F., Hodoroaba, V.-D. Workflow towards automated "
                  "segmentation of agglomerated, non-spherical particles from electron microscopy "
                  "images using artificial neural networks. Scientific Reports 11, 4942 (2021).")
_DATA_DOI = "10.1038/s41598-021-84287-6"
_EXAMPLE = Path(__file__).resolve().parent.parent.parent / "examples" / "data" / "SEM" / "1908248.tif"


@contextlib.contextmanager
def _quiet():
    """Silence the exporters' deprecation/tracer warnings and bioimageio's loguru output."""
    try:
        from loguru import logger as loguru_logger
    except ImportError:  # pragma: no cover - loguru comes with bioimageio.core
        loguru_logger = None
    if loguru_logger is not None:
        loguru_logger.disable("bioimageio")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            if loguru_logger is not None:
                loguru_logger.enable("bioimageio")





@contextlib.contextmanager
def _score_threshold(model):
    """The model's stored detection score threshold in its box head while tracing (it becomes a
    constant of the graph); the head's own value is put back afterwards."""
    heads = model.net.roi_heads
    old = heads.score_thresh
    heads.score_thresh = float(model.settings.score_threshold)
    try:
        yield
    finally:
        heads.score_thresh = old


def _detection_module(net):
    import torch

    class TileDetections(torch.nn.Module):
        """One tile -> boxes, scores and masks at RoI resolution, as predict.detect returns them
        (the masks are not pasted: tio2fiji pastes them exactly, instances.paste_masks)."""

        def __init__(self, maskrcnn):
            super().__init__()
            self.maskrcnn = maskrcnn

        def forward(self, x):
            m = self.maskrcnn
            batch, _ = m.transform([x[0]])
            features = m.backbone(batch.tensors)
            proposals, _ = m.rpn(batch, features)
            dets, _ = m.roi_heads(features, proposals, batch.image_sizes)
            return dets[0]["boxes"], dets[0]["scores"], dets[0]["masks"][:, 0]

    return TileDetections(net).eval()


def _tile_size(net) -> int:
    size = net.transform.min_size
    return int(size[0]) if isinstance(size, (tuple, list)) else int(size)


def write_maskrcnn_onnx(model, path: Path, source: str) -> None:
    """Trace ``model``'s network (a :class:`~tio2fiji.models.Model`; its stored score threshold in
    the graph) and write it with its metadata."""
    model = as_model(model)
    with _score_threshold(model):
        _write(_detection_module(model.net), path, model.settings, source)


def _write(module, path: Path, post: ModelSettings, source: str) -> None:
    import onnx
    import torch

    net = module.maskrcnn
    tile = _tile_size(net)
    example = torch.zeros(1, 1, tile, tile)
    n = {0: "detections"}
    with _quiet(), torch.no_grad():
        torch.onnx.export(module, (example,), str(path), dynamo=False, opset_version=ONNX_OPSET,
                          input_names=["tile"], output_names=["boxes", "scores", "masks"],
                          dynamic_axes={"boxes": n, "scores": n, "masks": n})
    proto = onnx.load(str(path))
    meta = {
        "tio2fiji.version": __version__,
        "tio2fiji.source": source,
        "tio2fiji.arch": "maskrcnn",
        "tio2fiji.input": f"float32 (1, 1, {tile}, {tile}): one tile, gray levels scaled to [0, 1] "
                          "(8-bit / 255, tio2fiji.transforms.normalize_for_network)",
        "tio2fiji.output": "boxes float32 (N, 4) x0, y0, x1, y1 in tile pixels; scores float32 (N,); "
                           "masks float32 (N, M, M): mask probabilities inside each box, to be "
                           "resized into it (tio2fiji.instances.paste_masks)",
        "tio2fiji.tiling": f"tiles of {tile} overlapping by 64; a detection belongs to the tile whose "
                           "own region (overlaps split in the middle) holds its box centre "
                           "(tio2fiji.predict.tiled_detections)",
        "tio2fiji.score_threshold": repr(float(post.score_threshold)),
        "tio2fiji.rpn_nms_thresh": repr(float(net.rpn.nms_thresh)),
        "tio2fiji.mask_threshold": repr(float(post.threshold)),
        "tio2fiji.max_overlap": repr(post.max_overlap),
        "license": f"weights: {_LICENSE} (training data: {_DATA_CITATION} doi:{_DATA_DOI})",
    }
    save_onnx(proto, meta, "tio2fiji Mask R-CNN for TiO2 nanoparticles in SEM images (one tile's detections)",
              path)


def save_onnx(proto, meta: dict, doc: str, path: Path) -> None:
    """Add ``meta`` as metadata and ``doc`` to an exported graph, check it and write it."""
    import onnx

    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = doc
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def _onnx_detector(session):
    """``detector`` for :func:`tio2fiji.predict.tiled_detections` that runs the ONNX file."""
    name = session.get_inputs()[0].name

    def run(tiles, score_threshold):
        out = []
        for t in tiles:
            boxes, scores, masks = session.run(None, {name: np.ascontiguousarray(t, np.float32)[None, None]})
            keep = scores > score_threshold
            out.append({"boxes": boxes[keep], "scores": scores[keep], "masks": masks[keep]})
        return out

    return run


def _test_area(test_image) -> tuple[np.ndarray, str]:
    """The Mask R-CNN check's image: an SEM file's analysed area, a 2-D array, or by default the
    central 512x512 of the bundled example (9 tiles)."""
    if test_image is None:
        if not _EXAMPLE.is_file():
            raise InputError("no test image given and the bundled example "
                             f"{_EXAMPLE} is not installed; pass test_image= (an SEM image file "
                             "or a 2-D array) or --test-image PATH.")
        area = read_sem(_EXAMPLE).analysed
        y, x = max(0, (area.shape[0] - 512) // 2), max(0, (area.shape[1] - 512) // 2)
        return area[y:y + 512, x:x + 512], f"{_EXAMPLE.name} (central 512x512 of the analysed area)"
    if isinstance(test_image, (str, Path)):
        return read_sem(test_image).analysed, f"{Path(test_image).name} (analysed area, data bar removed)"
    arr = np.asarray(test_image)
    if arr.ndim != 2 or 0 in arr.shape:
        raise InputError(f"test image: expected a non-empty 2-D gray image, got shape {arr.shape}.")
    return arr, "array"


def check_maskrcnn_onnx(path: Path, model, test_image, session) -> dict:
    """Every tile of the test image through onnxruntime and through PyTorch, then the particles
    (``model``: a :class:`~tio2fiji.models.Model`, its stored post-processing).

    Returns
    -------
    dict
        ``arch`` ("maskrcnn"), ``detections`` (PyTorch, ONNX), ``max_score_diff`` and
        ``max_abs_diff`` (mask probabilities) over the detections paired in order (None when the
        counts or positions differ), ``particles`` (PyTorch, ONNX) after painting with the model's
        post-processing, ``mask_equal`` (the label images agree on every pixel),
        ``mask_differences`` (pixels that differ), ``seconds`` (PyTorch, ONNX), ``threshold`` (mask
        threshold), ``shape`` and ``test_image``.
    """
    import time

    area, what = _test_area(test_image)
    model = as_model(model)
    post = model.settings
    runs, seconds = [], []
    for detector in (None, _onnx_detector(session)):
        t0 = time.perf_counter()
        runs.append(tiled_detections(model.net, area, score_threshold=post.score_threshold,
                                     detector=detector))
        seconds.append(time.perf_counter() - t0)
    labels = [paint_instances(area.shape, d, post.threshold, max_overlap=post.max_overlap)[0]
              for d in runs]
    torch_dets, onnx_dets = runs
    paired = (len(torch_dets) == len(onnx_dets)
              and all(a[1:3] == b[1:3] and a[3].shape == b[3].shape for a, b in zip(torch_dets, onnx_dets)))
    score_diff = mask_diff = None
    if paired and torch_dets:
        score_diff = max(abs(a[0] - b[0]) for a, b in zip(torch_dets, onnx_dets))
        mask_diff = max(float(np.abs(a[3] - b[3]).max()) for a, b in zip(torch_dets, onnx_dets))
    differ = int(np.count_nonzero(labels[0] != labels[1]))
    return {
        "arch": "maskrcnn",
        "detections": (len(torch_dets), len(onnx_dets)),
        "max_score_diff": score_diff,
        "max_abs_diff": mask_diff,
        "particles": tuple(int(lab.max()) for lab in labels),
        "mask_equal": differ == 0,
        "mask_differences": differ,
        "seconds": tuple(seconds),
        "threshold": float(post.threshold),
        "shape": tuple(int(v) for v in area.shape),
        "test_image": what,
    }


