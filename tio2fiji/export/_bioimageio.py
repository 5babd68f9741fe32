"""Export a network for other software: a bioimage.io model package, or an ONNX file.

``bioimageio`` (U-Net)
    A model package (a ``.zip``, or a folder) as the bioimage.io model zoo describes it: TorchScript
    and ONNX weights, ``rdf.yaml`` (format 0.5), a test input and its expected output as ``.npy``,
    a cover image and the documentation (the model card). deepImageJ (Fiji), ilastik, QuPath,
    bioimageio.core and other bioimage.io consumers can run it. The package is validated with
    ``bioimageio.spec`` and test-run with ``bioimageio.core``.
``onnx`` (U-Net or Mask R-CNN)
    U-Net: the same network as one ONNX file (opset 17, any batch, height and width multiples of
    32), checked with onnxruntime against PyTorch. Mask R-CNN: one 256×256 tile in, its detections
    out (see below), checked by running every tile of a test image through onnxruntime and PyTorch
    and comparing the particles.

The exported U-Net is the network followed by a sigmoid: input ``(N, 1, H, W)`` float32 gray
levels scaled to ``[0, 1]`` (8-bit images divided by 255, as
:func:`tio2fiji.transforms.normalize_for_network`; in the bioimage.io package this scaling is the input's
``scale_linear`` preprocessing, so consumers feed gray levels 0-255), output the particle
probability. A pixel is particle where the probability exceeds the model's threshold (0.5 for the
default model, stored in ``config.tio2fiji.threshold`` and in the ONNX metadata). Splitting
touching particles (watershed, or a star-convex U-Net's object probability and rays, whose channels
are not exported) and measuring stay in tio2fiji.

The exported Mask R-CNN takes ``tile`` float32 ``(1, 1, 256, 256)`` (the same ``[0, 1]`` scaling;
the network's own input normalisation is inside the graph) and returns what
:func:`tio2fiji.predict.detect` returns for it: ``boxes`` ``(N, 4)`` (x0, y0, x1, y1 in tile
pixels), ``scores`` ``(N,)`` and ``masks`` ``(N, M, M)`` (mask probabilities inside each box, M = the
mask head's resolution). The model's RPN NMS and detection score threshold are fixed in the graph;
covering an image with overlapping tiles, pasting the masks into their boxes and the overlap rule
(:func:`tio2fiji.instances.paint_instances`; mask threshold and ``max_overlap`` in the metadata)
stay in tio2fiji. The weights are float32 (an int8 model file is dequantised: the same numbers).

Licence: the weights of the bundled models were trained on the BAM images (CC BY-NC-ND 4.0); the
package carries that licence and the attribution (``tio2fiji/data/MODEL_CARD.md``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
import zipfile
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import InputError, OutputError, Tio2FijiError
from ..io import atomic_write, file_sha256, read_sem
from ..models.checkpoint import load_model, model_arch
from ..models.device import resolve_device
from ..models.onnx import ONNX_OPSET
from ..models.settings import as_model
from ..transforms import normalize_for_network
from ._maskrcnn import _DATA_CITATION, _DATA_DOI, _EXAMPLE, _LICENSE, _quiet, save_onnx

__all__ = ["FORMATS", "ONNX_OPSET", "check_bioimageio", "check_onnx", "export", "export_bioimageio",
           "export_onnx"]

FORMATS = ("bioimageio", "onnx")
_STEP = 32  # a ResNet U-Net halves the image five times: sizes must be multiples of 32
_HALO = 32  # border a tiling consumer should discard (tio2fiji blends tiles overlapping by 64)


# --------------------------------------------------------------------------------------------
# the network and its test data
# --------------------------------------------------------------------------------------------

def _load_any(model):
    """A :class:`~tio2fiji.models.Model` (its network in eval mode), its architecture and a
    description of where it came from."""
    source = "in-memory model"
    if isinstance(model, (str, Path)):
        source = (f"tio2fiji bundled model {str(model)!r}" if str(model) in ("default", "maskrcnn")
                  else str(model))
        model = load_model(model)
    model = as_model(model)
    model.net.eval()
    return model, model_arch(model), source


def _load(model):
    """A U-Net in eval mode, its threshold (the model's settings) and a description of where it
    came from."""
    model, arch, source = _load_any(model)
    if arch != "unet":
        raise InputError(f"{source}: only U-Net models can be packaged for bioimage.io (a Mask "
                         "R-CNN's output is a list of detections, which bioimage.io consumers cannot "
                         "run); export it with --format onnx, or package a U-Net or 'default'.")
    return model.net, model.settings.threshold, source


def _probability_module(net):
    import torch

    class Probability(torch.nn.Module):
        """The U-Net's particle probability: sigmoid of its (first) logit. A star-convex U-Net's
        other outputs (object probability, rays) need tio2fiji's post-processing and are not
        exported."""

        def __init__(self, unet):
            super().__init__()
            self.unet = unet

        def forward(self, x):
            return torch.sigmoid(self.unet(x)[:, :1])

    return Probability(net).eval()


def _test_gray(test_image) -> tuple[np.ndarray, str]:
    """Test image as float32 gray levels on the 8-bit scale, cropped to multiples of 32."""
    if test_image is None:
        if not _EXAMPLE.is_file():
            raise InputError("no test image given and the bundled example "
                             f"{_EXAMPLE} is not installed; pass test_image= (an SEM image file "
                             "or a 2-D array) or --test-image PATH.")
        test_image = _EXAMPLE
    if isinstance(test_image, (str, Path)):
        sem = read_sem(test_image)
        arr, what = sem.analysed, f"{Path(test_image).name} (analysed area, data bar removed)"
    else:
        arr, what = np.asarray(test_image), "array"
    if arr.ndim != 2:
        raise InputError(f"test image: expected a 2-D gray image, got shape {arr.shape}.")
    h, w = (arr.shape[0] // _STEP) * _STEP, (arr.shape[1] // _STEP) * _STEP
    if min(h, w) < 2 * _STEP:
        raise InputError(f"test image: {arr.shape[1]}x{arr.shape[0]} pixels is too small; give one "
                         f"of at least {2 * _STEP}x{2 * _STEP} pixels.")
    gray = normalize_for_network(arr[:h, :w]).astype(np.float32) * np.float32(255.0)
    return gray, what


def _run_torch(module, x01: np.ndarray) -> np.ndarray:
    """The module's output on ``x01``, computed where its parameters are."""
    import torch

    device = next(module.parameters()).device
    with torch.no_grad():
        return module(torch.from_numpy(np.ascontiguousarray(x01, np.float32)).to(device)).cpu().numpy()


def _set_bioimageio_cache():
    # bioimageio keeps a download cache in the user's home by default; keep it in a temp dir
    os.environ.setdefault("BIOIMAGEIO_CACHE_PATH",
                          str(Path(tempfile.gettempdir()) / "tio2fiji-bioimageio-cache"))


# --------------------------------------------------------------------------------------------
# ONNX
# --------------------------------------------------------------------------------------------

def _write_onnx(module, path: Path, threshold: float, source: str) -> None:
    import onnx
    import torch

    example = torch.zeros(1, 1, 4 * _STEP, 4 * _STEP)
    axes = {0: "batch", 2: "height", 3: "width"}
    with _quiet(), torch.no_grad():
        # the TorchScript-based exporter: the dynamo one needs onnxscript, which we do not use
        torch.onnx.export(module, (example,), str(path), dynamo=False, opset_version=ONNX_OPSET,
                          input_names=["raw"], output_names=["probability"],
                          dynamic_axes={"raw": axes, "probability": axes})
    proto = onnx.load(str(path))
    meta = {
        "tio2fiji.version": __version__,
        "tio2fiji.source": source,
        "tio2fiji.input": "float32 (N, 1, H, W), H and W multiples of 32; gray levels scaled to "
                          "[0, 1] (8-bit / 255, tio2fiji.transforms.normalize_for_network)",
        "tio2fiji.output": "float32 (N, 1, H, W): particle probability",
        "tio2fiji.threshold": repr(float(threshold)),
        "license": f"weights: {_LICENSE} (training data: {_DATA_CITATION} doi:{_DATA_DOI})",
    }
    save_onnx(proto, meta, "tio2fiji U-Net for TiO2 nanoparticles in SEM images (particle probability)", path)


def check_onnx(path, model="default", test_image=None, device=None) -> dict:
    """Run an exported ONNX file with onnxruntime and compare it with PyTorch.

    Parameters
    ----------
    path : str or Path
        The ``.onnx`` file.
    model : str, Path, Model or torch.nn.Module
        The model it was exported from (``"default"``, a file, or a U-Net).
    test_image : str, Path or array, optional
        An SEM image (its analysed area is used) or a 2-D gray array; default: the bundled example.
    device : str or torch.device, optional
        Where PyTorch's side of the comparison runs (:func:`tio2fiji.models.resolve_device`; a
        loaded model is moved there); default where the model is (a file: the CPU).

    Returns
    -------
    dict
        ``device`` (PyTorch's). U-Net: ``max_abs_diff`` (probabilities), ``mask_equal`` (the
        masks at the model's threshold agree on every pixel), ``mask_differences`` (pixels that
        differ), ``near_threshold`` (pixels whose PyTorch probability is within 1e-4 of the
        threshold), ``threshold``, ``shape``, ``particle_fraction`` and ``test_image``. Mask
        R-CNN: see :func:`tio2fiji.export.check_maskrcnn_onnx` (``arch`` is
        ``"maskrcnn"``).

    Raises
    ------
    InputError
        A missing or unreadable file, or a bad model or test image.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: ONNX file not found; write it with `tio2fiji export --format onnx`.")
    model, arch, _ = _load_any(model)
    if device is not None:
        model.to(resolve_device(device))
    net = model.net
    where = {"device": str(next(net.parameters()).device)}
    if arch == "maskrcnn":
        from ._maskrcnn import check_maskrcnn_onnx

        return {**check_maskrcnn_onnx(path, model, test_image, _session(path)), **where}
    threshold = model.settings.threshold
    gray, what = _test_gray(test_image)
    x01 = (gray / np.float32(255.0))[None, None]
    session = _session(path)
    onnx_prob = session.run(None, {session.get_inputs()[0].name: x01})[0]
    torch_prob = _run_torch(_probability_module(net), x01)
    mask_onnx, mask_torch = onnx_prob > threshold, torch_prob > threshold
    differ = int(np.count_nonzero(mask_onnx != mask_torch))
    return {
        "max_abs_diff": float(np.abs(onnx_prob - torch_prob).max()),
        "mask_equal": differ == 0,
        "mask_differences": differ,
        "near_threshold": int(np.count_nonzero(np.abs(torch_prob - threshold) < 1e-4)),
        "threshold": float(threshold),
        "shape": tuple(int(s) for s in gray.shape),
        "particle_fraction": float(mask_torch.mean()),
        "test_image": what, **where,
    }


def export_onnx(out, model="default", test_image=None, check: bool = True, device=None) -> dict:
    """Write the U-Net (with its sigmoid) or a Mask R-CNN (one tile's detections) as an ONNX file.

    Parameters
    ----------
    out : str or Path
        The ``.onnx`` file to write (atomically; parent folders are created). With ``check`` it
        is written under a temporary name and renamed only after the check ran: a check that
        raises leaves no file (an earlier ``out`` stays as it was).
    model : str, Path, Model or torch.nn.Module
        ``"default"`` or ``"maskrcnn"`` (the bundled models), a model file or checkpoint, or a
        loaded U-Net or Mask R-CNN.
    test_image : str, Path or array, optional
        For the check: an SEM image or 2-D gray array (default: the bundled example; for a Mask
        R-CNN a 512×512 crop of it).
    check : bool
        Compare onnxruntime's output with PyTorch's (:func:`check_onnx`).
    device : str or torch.device, optional
        Where PyTorch's side of the check runs (the graph is written from the CPU copy); as
        :func:`check_onnx`.

    Returns
    -------
    dict
        ``path``, ``opset``, ``arch`` and, when checked, the keys of :func:`check_onnx`.

    Raises
    ------
    InputError
        ``out`` does not end in ``.onnx``, or a bad model or test image.
    """
    device = None if device is None else resolve_device(device)
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise InputError(f"{out}: an ONNX model file must end in .onnx, e.g. "
                         f"{out.with_suffix('.onnx').name}.")
    model, arch, source = _load_any(model)
    model.to("cpu")  # the file holds CPU weights, whatever device the check runs on
    if arch == "maskrcnn":
        from ._maskrcnn import write_maskrcnn_onnx

        def write(tmp):
            write_maskrcnn_onnx(model, tmp, source)
    else:
        threshold = model.settings.threshold
        module = _probability_module(model.net)

        def write(tmp):
            _write_onnx(module, tmp, threshold, source)
    result = {"path": out, "opset": ONNX_OPSET, "arch": arch}
    # written and checked under a temporary name, renamed to ``out`` only when the check passed:
    # a check that fails (a bad test image, a graph onnxruntime cannot load) leaves no file
    tmp = out.with_name(f".{out.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.onnx")
    atomic_write(tmp, write)
    try:
        if check:
            result.update(check_onnx(tmp, model, test_image, device=device))
    except InputError as err:  # name the file asked for, not the temporary one
        tmp.unlink(missing_ok=True)
        raise InputError(str(err).replace(str(tmp), str(out))) from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError.from_os_error(out, exc) from exc
    return result


def _session(path: Path):
    import onnxruntime

    try:
        return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph types
        raise InputError(f"{path}: onnxruntime cannot load it ({err}); export it again.") from err


# --------------------------------------------------------------------------------------------
# bioimage.io
# --------------------------------------------------------------------------------------------

def _cover(gray: np.ndarray, prob: np.ndarray, threshold: float, path: Path) -> None:
    """2:1 cover: the test image and the particles the model finds in it (outlined in colour)."""
    from PIL import Image
    from scipy import ndimage as ndi

    img = np.clip(gray, 0, 255).astype(np.uint8)
    mask = prob > threshold
    edge = mask & ~ndi.binary_erosion(mask, iterations=2)
    right = np.stack([img] * 3, axis=-1)
    right[mask] = (0.6 * right[mask] + 0.4 * np.array([40, 120, 255])).astype(np.uint8)
    right[edge] = (255, 200, 0)
    left = np.stack([img] * 3, axis=-1)
    h, w = img.shape
    side = min(h, w)  # two squares side by side: 2:1
    y0, x0 = (h - side) // 2, (w - side) // 2
    panel = np.concatenate([left[y0:y0 + side, x0:x0 + side], right[y0:y0 + side, x0:x0 + side]],
                           axis=1)
    Image.fromarray(panel).resize((640, 320), Image.LANCZOS).save(path, optimize=True)


def _documentation(threshold: float, source: str, test_what: str) -> str:
    card = Path(__file__).resolve().parent.parent / "data" / "MODEL_CARD.md"
    card_text = card.read_text(encoding="utf-8") if card.is_file() else ""
    return f"""# TiO2 nanoparticle segmentation U-Net (tio2fiji)

Segments titanium dioxide (TiO2) nanoparticles in scanning electron microscope (SEM) images: for every
pixel the probability that it belongs to a particle. Exported by tio2fiji {__version__} from
{source}.

## Use

* **Input** `raw`: one gray SEM image, `(batch, channel=1, y, x)`, float32 gray levels on the 8-bit
  scale (0-255). y and x: multiples of 32, at least 64. The package's preprocessing divides by 255
  (`scale_linear`). 16-bit images: scale them to 0-255 first. Leave out the microscope's data bar.
* **Output** `probability`: `(batch, 1, y, x)`, float32 in [0, 1]. A pixel is particle where the
  probability exceeds **{threshold:g}**. When tiling, discard {_HALO} pixels at tile borders (the
  output's halo); tio2fiji blends 256×256 tiles overlapping by 64 pixels.
* Particles touching each other are separated and measured by tio2fiji (`tio2fiji segment`,
  `tio2fiji measure`: ImageJ-exact measurements), not by this network.
* Pixel size of the training images: 7.34375 nm. Other magnifications are outside the training data.

Test input: {test_what}.

## Licence and attribution

Weights: **{_LICENSE}** (non-commercial use, attribution, no derivatives), because they were trained
on the BAM data set: {_DATA_CITATION} https://doi.org/{_DATA_DOI}. The test image and cover come from
the same data set (same licence). The tio2fiji code is BSD-3-Clause.

---

{card_text}
"""


def _rdf(threshold: float, source: str, opset: int, torch_version: str) -> dict:
    space = {"min": 2 * _STEP + 2 * _HALO, "step": _STEP}
    return {
        "type": "model",
        "format_version": "0.5.4",
        "name": "TiO2 nanoparticle U-Net (tio2fiji)",
        "description": "Particle probability of TiO2 nanoparticles in SEM images (U-Net, ResNet-18 "
                       "encoder), trained on the BAM TiO2 data set.",
        "authors": [{"name": "tio2fiji contributors"}],
        "cite": [{"text": _DATA_CITATION, "doi": _DATA_DOI}],
        "license": _LICENSE,
        "documentation": "README.md",
        "covers": ["cover.png"],
        "tags": ["2d", "semantic-segmentation", "electron-microscopy", "sem", "nanoparticles",
                 "tio2", "unet", "pytorch"],
        "version": __version__,
        "inputs": [{
            "id": "raw",
            "description": "gray SEM image, gray levels 0-255, without the data bar",
            "axes": [
                {"type": "batch"},
                {"type": "channel", "channel_names": ["gray"]},
                {"type": "space", "id": "y", "size": space},
                {"type": "space", "id": "x", "size": space},
            ],
            "test_tensor": {"source": "test_input.npy"},
            "data": {"type": "float32", "range": [0.0, 255.0]},
            "preprocessing": [
                {"id": "ensure_dtype", "kwargs": {"dtype": "float32"}},
                {"id": "scale_linear", "kwargs": {"gain": 1.0 / 255.0, "offset": 0.0}},
            ],
        }],
        "outputs": [{
            "id": "probability",
            "description": f"particle probability; particle where > {threshold:g}",
            "axes": [
                {"type": "batch"},
                {"type": "channel", "channel_names": ["particle"]},
                {"type": "space", "id": "y", "size": {"tensor_id": "raw", "axis_id": "y"},
                 "halo": _HALO},
                {"type": "space", "id": "x", "size": {"tensor_id": "raw", "axis_id": "x"},
                 "halo": _HALO},
            ],
            "test_tensor": {"source": "test_output.npy"},
            "data": {"type": "float32", "range": [0.0, 1.0]},
        }],
        "weights": {
            "torchscript": {"source": "weights.torchscript.pt", "pytorch_version": torch_version,
                            "comment": f"traced from {source}"},
            "onnx": {"source": "weights.onnx", "opset_version": opset, "parent": "torchscript",
                     "comment": "torch.onnx.export of the same module"},
        },
        "config": {"tio2fiji": {"threshold": float(threshold), "version": __version__,
                                "source": source, "pixel_size_nm": 7.34375}},
    }


def _validate_folder(folder: Path):
    """The package description of ``folder/rdf.yaml``; Tio2FijiError listing the validation errors."""
    from bioimageio.spec import InvalidDescr, load_description

    with _quiet():
        descr = load_description(folder / "rdf.yaml", format_version="latest")
    if isinstance(descr, InvalidDescr):
        raise Tio2FijiError("the bioimage.io description does not validate:\n"
                            + _summary_text(descr.validation_summary))
    return descr


def _summary_text(summary) -> str:
    lines = [f"status: {summary.status}"]
    for detail in summary.details:
        for err in getattr(detail, "errors", []) or []:
            lines.append(f"  {detail.name}: {'.'.join(map(str, err.loc))}: {err.msg}")
        if detail.status == "failed" and not getattr(detail, "errors", None):
            lines.append(f"  {detail.name}: failed")
    return "\n".join(lines)


def check_bioimageio(package) -> dict:
    """Validate a bioimage.io package and test-run it with bioimageio.core.

    The test runs the network on the package's test input with each weights format (TorchScript,
    ONNX) and compares the result with the test output.

    Parameters
    ----------
    package : str or Path
        A package ``.zip``, its folder, or its ``rdf.yaml``.

    Returns
    -------
    dict
        ``status`` ("passed" or "failed"), ``format_version``, ``weights`` (the formats tested),
        ``details`` (one line per check that did not pass, empty when all passed).

    Raises
    ------
    InputError
        The package does not exist.
    """
    _set_bioimageio_cache()
    from bioimageio.core import test_model

    package = Path(package)
    if not package.exists():
        raise InputError(f"{package}: no such bioimage.io package; write one with "
                         "`tio2fiji export --format bioimageio`.")
    source = package / "rdf.yaml" if package.is_dir() else package
    with _quiet():
        summary = test_model(source)
    problems = [f"{d.name}: {d.status}" + "".join(f"; {e.msg}" for e in (d.errors or []))
                for d in summary.details if d.status not in ("passed", "valid-format")]
    weights = sorted({str(d.name).split()[-1].strip("()") for d in summary.details
                      if "reproduce test outputs" in str(d.name).lower()})
    return {"status": str(summary.status), "format_version": str(summary.format_version),
            "weights": weights, "details": problems}


def export_bioimageio(out, model="default", test_image=None, test: bool = True) -> dict:
    """Write the U-Net as a bioimage.io model package and check it.

    Parameters
    ----------
    out : str or Path
        ``.zip``: a packed model (what the bioimage.io uploader and deepImageJ's installer take);
        any other path: a folder holding ``rdf.yaml`` and the files (it must not exist yet).
    model : str, Path, Model or torch.nn.Module
        ``"default"`` (the bundled model), a model file or checkpoint, or a loaded U-Net.
    test_image : str, Path or array, optional
        The package's test input: an SEM image (its analysed area, cropped to multiples of 32) or a
        2-D gray array. Default: the bundled example 1908248.
    test : bool
        Test-run the package with bioimageio.core (:func:`check_bioimageio`) before it is written
        to ``out`` (the files it is packed from), so that a failed test leaves nothing there.

    Returns
    -------
    dict
        ``path``, ``files`` (the package's files), ``threshold`` and, when tested, ``test`` (the
        result of :func:`check_bioimageio`).

    Raises
    ------
    InputError
        A bad model, test image or output path.
    Tio2FijiError
        The description does not validate, or the test run fails.
    """
    import torch

    _set_bioimageio_cache()
    out = Path(out)
    as_zip = out.suffix.lower() == ".zip"
    if not as_zip and out.exists():
        raise InputError(f"{out} exists; give a new folder, or a .zip file name, for the package.")
    net, threshold, source = _load(model)
    module = _probability_module(net)
    gray, what = _test_gray(test_image)
    x = gray[None, None]
    with tempfile.TemporaryDirectory(prefix="tio2fiji-bioimageio-") as tmp:
        folder = Path(tmp) / "package"
        folder.mkdir()
        with _quiet(), torch.no_grad():
            traced = torch.jit.trace(module, torch.from_numpy(x / np.float32(255.0)),
                                     check_trace=False)
            traced.save(str(folder / "weights.torchscript.pt"))
            # the expected output: what the saved TorchScript file computes on the preprocessed input
            reloaded = torch.jit.load(str(folder / "weights.torchscript.pt"))
            prob = _run_torch(reloaded, x * np.float32(1.0 / 255.0))
        np.save(folder / "test_input.npy", x.astype(np.float32))
        np.save(folder / "test_output.npy", prob.astype(np.float32))
        _write_onnx(module, folder / "weights.onnx", threshold, source)
        _cover(gray, prob[0, 0], threshold, folder / "cover.png")
        (folder / "README.md").write_text(_documentation(threshold, source, what), encoding="utf-8")
        rdf = _rdf(threshold, source, ONNX_OPSET, torch.__version__.split("+")[0])
        for name in ("weights.torchscript.pt", "weights.onnx"):
            key = "torchscript" if name.endswith(".pt") else "onnx"
            rdf["weights"][key]["sha256"] = file_sha256(folder / name)
        _dump_yaml(rdf, folder / "rdf.yaml")
        _validate_folder(folder)
        files = sorted(p.name for p in folder.iterdir())
        report = None
        if test:  # the package is tested before it is written to ``out``: a failure leaves none
            report = check_bioimageio(folder)
            if report["status"] != "passed":
                raise Tio2FijiError(f"{out}: bioimageio.core's test of the package failed (nothing "
                                    f"written):\n" + "\n".join(report["details"]))
        if as_zip:
            def _zip(tmp_zip: Path) -> None:
                with zipfile.ZipFile(tmp_zip, "w") as zf:
                    for name in files:
                        # float weights hardly compress: storing them saves seconds of CPU
                        packed = name.endswith((".pt", ".onnx", ".npy"))
                        zf.write(folder / name, name, compress_type=zipfile.ZIP_STORED if packed
                                 else zipfile.ZIP_DEFLATED)

            atomic_write(out, _zip)
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(folder, out)
    result = {"path": out, "files": files, "threshold": float(threshold), "test_image": what}
    if report is not None:
        result["test"] = report
    return result


def _dump_yaml(content: dict, path: Path) -> None:
    from ruyaml import YAML  # bioimageio's own YAML library

    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False
    with open(path, "w", encoding="utf-8") as fh:
        # plain Python types only (numpy floats would be written as tagged objects)
        yaml.dump(json.loads(json.dumps(content)), fh)


def export(model="default", fmt: str = "bioimageio", out=None, test_image=None, check: bool = True,
           device=None) -> dict:
    """Export a model in ``fmt`` (``"bioimageio"``: U-Net; ``"onnx"``: U-Net or Mask R-CNN).

    Parameters
    ----------
    model : str, Path, Model or torch.nn.Module
        ``"default"``, ``"maskrcnn"``, a model file or checkpoint, or a loaded model.
    fmt : {"bioimageio", "onnx"}
        Package format.
    out : str or Path
        Where to write (``.zip`` or folder for bioimage.io, ``.onnx`` for ONNX).
    test_image : str, Path or array, optional
        Test/check image (default: the bundled example).
    check : bool
        Test-run the result (bioimageio.core, or onnxruntime against PyTorch).
    device : str or torch.device, optional
        ONNX: where PyTorch's side of the check runs (:func:`tio2fiji.models.resolve_device`;
        default ``"auto"``). bioimage.io: checked here (a missing GPU is refused) and recorded;
        the package's reference outputs are computed on the CPU, the device its consumers run.

    Returns
    -------
    dict
        The result of :func:`export_bioimageio` or :func:`export_onnx`, with ``device``.
    """
    device = resolve_device(device)
    if fmt not in FORMATS:
        raise InputError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}.")
    if out is None:
        raise InputError("give the output path (out=..., --out PATH).")
    if fmt == "onnx":
        return {"device": str(device), **export_onnx(out, model, test_image, check=check, device=device)}
    return {**export_bioimageio(out, model, test_image, test=check), "device": "cpu"}
