"""Whole-image inference (``mode="whole"``/``"auto"``) against blended tiles, and the ONNX Runtime
engine against PyTorch, with the bundled U-Net on the bundled SEM images."""

from pathlib import Path

import numpy as np
import pytest
import torch

import tio2fiji.predict as P
from tio2fiji.errors import InputError
from tio2fiji.io import read_sem
from tio2fiji.models.checkpoint import DEFAULT_MODEL, load_model
from tio2fiji.models.onnx import OnnxUNet, onnx_session
from tio2fiji.predict import predict_maps, predict_probability, resolve_mode, segment

EX = Path(__file__).resolve().parents[2] / "examples" / "data" / "SEM"
bundled = pytest.mark.skipif(not DEFAULT_MODEL.is_file(), reason="bundled model missing")


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return load_model("default")


class _Echo(torch.nn.Module):
    """Probability = input, and a record of the input shapes of every forward pass."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.shapes = []

    def forward(self, x):
        self.shapes.append(tuple(x.shape))
        p = x.clamp(1e-6, 1 - 1e-6)
        return torch.log(p / (1 - p)) + 0 * self.dummy


@bundled
@pytest.mark.parametrize("name, bound", [("unet-watershed", 5e-4), ("unet-border", 1e-3)])
def test_whole_matches_blend_within_the_tiling_tolerance(name, bound):
    torch.set_num_threads(1)
    model = load_model(name)
    t = model.settings.threshold
    sem = read_sem(EX / "1908256.tif")  # the example where they differ most
    blend = predict_probability(model, sem.analysed, mode="blend")
    whole = predict_probability(model, sem.analysed, mode="whole")
    assert whole.shape == blend.shape == sem.analysed.shape and whole.dtype == np.float32
    # tests/predict/test_tiling.py's bounds for blend against one pass; measured here at the stored
    # threshold: 1.3e-4 of the mask pixels for unet-watershed (0.5), 5.8e-4 for unet-border (0.4),
    # a mean |dp| of 2e-4 and 5e-4
    assert np.mean((whole > t) != (blend > t)) < bound
    assert np.abs(whole - blend).mean() < 1e-3
    # the particles: the stored threshold (chosen on blend outputs) gives nearly the same masks,
    # and the decoding nearly the same particles (measured 228 vs 225; unet-border 223 vs 220)
    sb = segment(model, sem, mode="blend")
    sw = segment(model, sem)  # the default: auto -> whole for 1024x704
    assert sw.info["mode"] == "whole" and sb.info["mode"] == "blend"
    assert np.mean(sb.mask != sw.mask) < 2 * bound
    nb, nw = int(sb.labels.max()), int(sw.labels.max())
    assert nb > 150 and abs(nb - nw) <= 0.03 * nb


def test_auto_is_whole_up_to_the_limit_and_tiles_beyond():
    side = int(np.sqrt(P.WHOLE_LIMIT))
    assert resolve_mode("auto", 704, 1024) == "whole"
    assert resolve_mode("auto", 1536, 2048) == "whole"  # exactly the limit
    assert resolve_mode("auto", 1537, 2048) == "blend"  # padded to 1568 x 2048
    assert resolve_mode("auto", side + 64, side + 64) == "blend"
    assert resolve_mode("thesis", 10, 10) == "thesis"
    with pytest.raises(InputError, match="mode must be one of"):
        predict_probability(_Echo(), np.zeros((64, 64)), mode="tiles")


def test_auto_runs_tiles_above_the_limit(monkeypatch):
    img = np.random.default_rng(1).integers(0, 256, (200, 300)).astype(np.uint8)
    net = _Echo()
    whole = predict_probability(net, img, tile=64, overlap=16, mode="auto")
    assert net.shapes == [(1, 1, 224, 320)]  # below the limit: one pass, padded to multiples of 32
    monkeypatch.setattr(P._maps, "WHOLE_LIMIT", 224 * 320 - 1)  # where resolve_mode reads it
    net.shapes.clear()
    tiled = predict_probability(net, img, tile=64, overlap=16, batch_size=4, mode="auto")
    assert len(net.shapes) > 1 and all(s[2:] == (64, 64) for s in net.shapes)
    np.testing.assert_allclose(tiled, img / 255.0, atol=1e-5)
    np.testing.assert_allclose(whole, img / 255.0, atol=1e-5)


@pytest.mark.parametrize("shape", [(100, 90), (33, 65), (300, 410)])
def test_whole_pads_any_size_to_multiples_of_32_and_crops_back(shape):
    img = np.random.default_rng(0).integers(0, 256, shape).astype(np.uint8)
    net = _Echo()
    calls = []
    prob = predict_probability(net, img, mode="whole", progress=lambda *a: calls.append(a))
    padded = tuple(-(-n // 32) * 32 for n in shape)
    assert net.shapes == [(1, 1, *padded)]
    assert prob.shape == shape and prob.dtype == np.float32 and prob.flags.c_contiguous
    np.testing.assert_allclose(prob, img / 255.0, atol=1e-5)
    assert calls == [(1, 1, "tile")]  # the progress callback is still called


@bundled
def test_whole_equals_one_pass_over_the_mirrored_image(model):
    area = read_sem(EX / "1908248.tif").analysed[:300, :410]
    prob = predict_probability(model, area, mode="whole", engine="torch")
    # independent: mirror to 320 x 416 by hand, one forward pass, crop
    x = np.pad(area / 255.0, ((0, 20), (0, 6)), mode="symmetric").astype(np.float32)
    with torch.no_grad():
        ref = torch.sigmoid(model.net(torch.from_numpy(x)[None, None]))[0, 0].numpy()[:300, :410]
    np.testing.assert_allclose(prob, ref, atol=1e-6)


@bundled
def test_onnx_engine_equals_torch_and_is_cached(model):
    area = read_sem(EX / "1908252.tif").analysed[:256, :512]
    a = predict_maps(model, area, mode="whole", engine="torch")
    b = predict_maps(model, area, mode="whole", engine="onnx")
    t = predict_maps(model, area, mode="blend", engine="onnx")
    ref = predict_maps(model, area, mode="blend", engine="torch")
    assert a.dtype == b.dtype == np.float32
    assert np.abs(a - b).max() < 1e-4 and np.abs(t - ref).max() < 1e-4
    s1 = onnx_session(model)
    assert onnx_session(model) is s1  # built once per model
    with torch.no_grad():  # weights changed in place: the cached graph is stale, a new one is built
        p = next(model.net.parameters())
        p.add_(0.0)
    assert onnx_session(model) is not s1


@bundled
def test_an_exported_graph_gives_the_numbers_of_the_network_it_came_from(model):
    """What a Dask worker is sent (:class:`OnnxUNet`, pickled) segments as the network does."""
    import pickle

    sem = read_sem(EX / "1908256.tif")
    graph = pickle.loads(pickle.dumps(OnnxUNet.from_model(model)))
    assert isinstance(graph.net, OnnxUNet) and graph.net.precision == "float32" and not graph.net._sessions
    assert graph.settings == model.settings  # the threshold and post-processing travel with the graph
    assert OnnxUNet.from_model(model).settings is model.settings  # the same object, not a copy
    a, b = segment(model, sem, engine="onnx"), segment(graph, sem)
    np.testing.assert_array_equal(a.probability, b.probability)  # the same graph in ONNX Runtime
    # the default's int8 graph is what CPU workers get when the model stores a calibration
    graph8 = pickle.loads(pickle.dumps(OnnxUNet.from_model(model, int8=True)))
    assert graph8.net.precision == "int8"
    np.testing.assert_array_equal(segment(model, sem).probability, segment(graph8, sem).probability)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert b.info["engine"] == "onnx" and b.threshold == a.threshold
    ref = predict_maps(model, sem.analysed[:256, :320], mode="whole", engine="torch")
    assert np.abs(predict_maps(graph, sem.analysed[:256, :320], mode="whole") - ref).max() < 1e-4
    with pytest.raises(InputError, match="ONNX graph"):
        predict_maps(graph, sem.analysed[:64, :64], engine="torch")


def test_warm_up_runs_the_per_image_steps_once():
    """The fork server's warm-up analyses its synthetic image (it would fail silently there)."""
    from tio2fiji.particles import _scan
    from tio2fiji.run import warm_up

    assert warm_up() > 0
    assert _scan._scan.signatures  # the measurement's kernels are loaded


@bundled
def test_bfloat16_on_the_cpu_returns_float32_maps_close_to_float32(model):
    area = read_sem(EX / "1908248.tif").analysed[:64, :96]  # small: bfloat16 is slow on this CPU
    ref = predict_probability(model, area, mode="whole", engine="torch", amp=False)
    bf = predict_probability(model, area, mode="whole", engine="torch", amp=True)
    assert bf.dtype == np.float32
    d = np.abs(bf - ref)
    # bfloat16 keeps 8 bits of mantissa: close, not equal (the full numbers: benchmarks/speed/infer_speed.py)
    assert 0 < d.mean() < 0.02


def test_onnx_graph_is_cached_on_disk_by_model_file(tmp_path, monkeypatch):
    """A second run starts without exporting (issue 29): the graph is read from the cache folder,
    checked against its digest, exported again when damaged, never used for changed weights."""
    import tio2fiji.models.onnx as O

    monkeypatch.setenv("TIO2FIJI_CACHE", str(tmp_path))
    exports = []
    real = O.onnx_graph
    monkeypatch.setattr(O, "onnx_graph", lambda m: exports.append(1) or real(m))
    torch.set_num_threads(1)
    img = read_sem(Path(__file__).resolve().parents[2] / "examples" / "data" / "SEM" / "1908248.tif").analysed
    kw = dict(mode="whole", engine="onnx")  # the float32 graph (the int8 one is cached the same way)
    first = predict_probability(load_model("default"), img, **kw)
    assert len(exports) == 1 and len(list((tmp_path / "onnx").glob("*.onnx"))) == 1
    second = predict_probability(load_model("default"), img, **kw)  # a new process would load anew
    assert len(exports) == 1 and np.array_equal(first, second)
    graph = next((tmp_path / "onnx").glob("*.onnx"))
    graph.write_bytes(graph.read_bytes()[:1000])  # damaged: exported again, same numbers
    assert np.array_equal(predict_probability(load_model("default"), img, **kw), first)
    assert len(exports) == 2
    model = load_model("default")
    with torch.no_grad():
        model.net.segmentation_head[0].bias.add_(1.0)  # weights no longer the file's: not from the cache
    assert not model.as_loaded
    changed = predict_probability(model, img, **kw)
    assert len(exports) == 3 and not np.allclose(changed, first)


def test_int8_graph_from_a_stored_calibration(tmp_path, monkeypatch):
    """A model file that stores its int8 calibration runs as an int8 ONNX graph by default (issue
    29): the same particles within a few, the float path still on demand, the graph cached."""
    import tio2fiji.models.onnx as O
    from tio2fiji.models.checkpoint import export_model, load_checkpoint
    from tio2fiji.models.device import choose_engine
    from tio2fiji.transforms import normalize_for_network

    monkeypatch.setenv("TIO2FIJI_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(1)
    img = read_sem(Path(__file__).resolve().parents[2] / "examples" / "data" / "SEM" / "1908252.tif").analysed
    x = normalize_for_network(img)
    crops = np.stack([x[None, y:y + 256, c:c + 256] for y, c in ((0, 0), (200, 500), (400, 700))])
    cfg = {k: v for k, v in load_checkpoint("default")["model_config"].items() if k != "int8_calibration"}
    base = load_model({"model": load_model("default").net.state_dict(), "model_config": cfg})  # no calibration
    calibration = O.int8_calibration(base, crops)
    assert "data" in calibration
    # the bundled file's weights with this calibration stored beside them
    ck = {"model": base.net.state_dict(), "model_config": cfg}
    path = export_model(ck, tmp_path / "int8.pt", weights="int8", int8_calibration=calibration)
    model = load_model(path)
    assert choose_engine(model, "cpu", "auto", False) == "onnx-int8"
    assert choose_engine(base, "cpu", "auto", False) == "onnx"
    with pytest.raises(InputError, match="int8 calibration"):
        choose_engine(base, "cpu", "onnx-int8", False)
    f32 = segment(model, img, engine="onnx")
    i8 = segment(model, img)
    assert i8.info["engine"] == "onnx-int8" and f32.info["engine"] == "onnx"
    assert np.mean(f32.mask != i8.mask) < 0.005  # pixels that change side
    assert abs(int(i8.labels.max()) - int(f32.labels.max())) <= 0.03 * f32.labels.max()
    quantized = []
    real = O._quantize
    monkeypatch.setattr(O, "_quantize", lambda *a: quantized.append(1) or real(*a))
    again = segment(load_model(path), img)  # a new load: the int8 graph comes from the cache
    assert not quantized and np.array_equal(again.labels, i8.labels)
