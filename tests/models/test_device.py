"""``--device``: what it names, that a missing GPU is one line before any work, and that the chosen
device reaches the model's parameters and its inputs (inference and training), on this CPU."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from _tiny_training import TinyItems, fit_tiny
from click.testing import CliRunner

from tio2fiji.cli import main
from tio2fiji.errors import InputError
from tio2fiji.io import read_sem
from tio2fiji.models import load_model, resolve_device
from tio2fiji.models.checkpoint import DEFAULT_MODEL
from tio2fiji.models.device import torch_threads
from tio2fiji.predict import predict_probability, segment
from tio2fiji.training import fit_unet

EX = Path(__file__).resolve().parents[2] / "examples" / "data" / "SEM"
NO_GPU = not torch.cuda.is_available()
needs_no_gpu = pytest.mark.skipif(not NO_GPU, reason="checks the refusal on a machine without a GPU")


@needs_no_gpu
def test_resolve_device_names():
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    for spec in ("cuda", "cuda:7"):
        with pytest.raises(InputError, match="no CUDA GPU") as err:
            resolve_device(spec)
        assert "\n" not in str(err.value) and "--device cpu" in str(err.value)
    for spec in ("gpu", "mps", "cuda:x", ""):
        with pytest.raises(InputError, match="not one of auto, cpu, cuda"):
            resolve_device(spec)


def test_torch_threads_shares_the_cores():
    assert torch_threads(1, cores=16) == 16
    assert torch_threads(4, cores=16) == 4
    assert torch_threads(5, cores=16) == 3  # 5 x 3 = 15 <= 16: never oversubscribed
    assert torch_threads(3, cores=2) == 1  # at least one thread each
    assert torch_threads(2) == max(1, len(os.sched_getaffinity(0)) // 2)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(InputError, match="workers"):
            torch_threads(bad, cores=4)


@needs_no_gpu
@pytest.mark.parametrize("args", [
    ["train", "unet", "{tmp}/data", "--out", "{tmp}/run"],
    ["train", "star", "{tmp}/data", "--out", "{tmp}/run"],
    ["train", "maskrcnn", "{tmp}/data", "--out", "{tmp}/run"],
    ["segment", str(EX / "1908248.tif"), "--out", "{tmp}/run"],
    ["evaluate", "--images", "{tmp}/data", "--masks", "{tmp}/data", "--out", "{tmp}/run"],
    ["export", "--format", "onnx", "--out", "{tmp}/run/x.onnx"],
], ids=["train-unet", "train-star", "train-maskrcnn", "segment", "evaluate", "export"])
def test_commands_refuse_a_missing_gpu_in_one_line_before_any_work(tmp_path, args):
    argv = [a.format(tmp=tmp_path) for a in args] + ["--device", "cuda"]
    res = CliRunner().invoke(main, argv)
    assert res.exit_code == 1
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: device 'cuda' asked for"), res.output
    assert "Traceback" not in res.output
    # refused before anything was read or written: the missing data folder is not what it says,
    # and no output exists
    assert not (tmp_path / "run").exists()


class _Spy:
    """Forward pre-hook: the device of every input tensor and of the module's parameters."""

    def __init__(self, module):
        self.inputs, self.params, self.shapes = [], [], []
        self.handle = module.register_forward_pre_hook(self)

    def __call__(self, module, args):
        self.inputs += [a.device for a in args if torch.is_tensor(a)]
        self.shapes += [tuple(a.shape) for a in args if torch.is_tensor(a)]
        self.params += list({p.device for p in module.parameters()})


@pytest.mark.skipif(not DEFAULT_MODEL.is_file(), reason="bundled model missing")
def test_segment_runs_the_network_on_the_chosen_device(tmp_path, monkeypatch):
    monkeypatch.setenv("TIO2FIJI_CACHE", str(tmp_path))  # an empty graph cache: the export runs here
    torch.set_num_threads(1)
    model = load_model("default")
    spy = _Spy(model.net)
    sem = read_sem(EX / "1908248.tif")
    seg = segment(model, sem, device="cpu", engine="torch", mode="blend")
    want = resolve_device("auto")
    # 1024x704 in tiles of 256 at a stride of 192: 5 x 4 = 20 tiles, 5 batches of 4
    assert len(spy.inputs) == 5
    assert set(spy.inputs) == set(spy.params) == {want}
    assert seg.info["device"] == str(want) and seg.info["engine"] == "torch" and seg.info["amp"] is False
    # the default on the CPU: one whole-image pass through ONNX Runtime; PyTorch's forward runs
    # once only, on the export's 64x64 example, and not at all for the next image (graph cached)
    spy.shapes.clear()
    seg2 = segment(model, sem)
    assert seg2.info["mode"] == "whole" and seg2.info["engine"] == "onnx-int8"  # the default stores a calibration
    assert spy.shapes == [(1, 1, 64, 64)]
    segment(model, sem)
    assert spy.shapes == [(1, 1, 64, 64)]
    spy.handle.remove()


@needs_no_gpu
def test_predict_refuses_a_missing_gpu():
    with pytest.raises(InputError, match="no CUDA GPU"):
        predict_probability(torch.nn.Conv2d(1, 1, 3, padding=1), np.zeros((64, 64), np.uint8), tile=64,
                            overlap=16, device="cuda")
    with pytest.raises(InputError, match="engine 'onnx' runs on the CPU without mixed precision"):
        predict_probability(torch.nn.Conv2d(1, 1, 3, padding=1), np.zeros((64, 64), np.uint8), tile=64,
                            overlap=16, engine="onnx", amp=True)


def test_training_batches_reach_the_chosen_device(tmp_path):
    net = torch.nn.Conv2d(1, 1, 3, padding=1)
    spy = _Spy(net)
    torch.manual_seed(0)
    res = fit_unet(net, TinyItems(4), TinyItems(2), tmp_path / "run", epochs=1, batch_size=2, lr=1e-3,
                   loss="dice+bce", seed=0, threads=1, model_config={"arch": "unet", "encoder": "tiny"},
                   device="cpu")
    # 2 training steps and 1 validation batch, each input on the chosen device, as the parameters
    assert len(spy.inputs) == 3 and set(spy.inputs) == set(spy.params) == {torch.device("cpu")}
    assert res["device"] == "cpu"
    assert json.loads((tmp_path / "run" / "run.json").read_text())["device"] == "cpu"
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=False)["settings"]["device"] == "cpu"
    spy.handle.remove()


@needs_no_gpu
def test_training_refuses_a_missing_gpu_before_the_run_folder(tmp_path):
    with pytest.raises(InputError, match="no CUDA GPU"):
        fit_tiny(tmp_path / "run", device="cuda")
    assert not (tmp_path / "run").exists()
