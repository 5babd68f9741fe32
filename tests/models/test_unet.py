"""U-Net factory, tiled inference, model files, and the bundled default model."""

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tio2fiji.errors import InputError, Tio2FijiError
from tio2fiji.models.checkpoint import DEFAULT_MODEL, export_model, load_model
from tio2fiji.models.unet import CONFIGS, build_config, build_unet, parse_config
from tio2fiji.predict import predict_probability, segment
from tio2fiji.transforms import tile_weights

torch.set_num_threads(2)


# --------------------------------------------------------------------------------------------------
# factory


def test_four_thesis_configurations_are_named():
    assert set(CONFIGS) == {"resnet18-imagenet", "resnet18-scratch", "resnet34-imagenet",
                            "resnet34-scratch"}
    assert parse_config("ResNet34-Scratch") == ("resnet34", None)
    with pytest.raises(InputError, match="resnet18-scratch"):
        parse_config("resnet50-scratch")


@pytest.mark.parametrize("encoder", ["resnet18", "resnet34"])
def test_scratch_unet_maps_gray_images_to_one_logit(encoder):
    model = build_unet(encoder, "none").eval()
    assert model.encoder.conv1.in_channels == 1
    with torch.no_grad():
        out = model(torch.rand(2, 1, 64, 96))
    assert out.shape == (2, 1, 64, 96)


def test_imagenet_weights_offline_fail_fast_with_clear_error(monkeypatch, tmp_path):
    # an empty hub cache: nothing to find locally, and HF_HUB_OFFLINE forbids the network
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path))
    t0 = time.perf_counter()
    with pytest.raises(Tio2FijiError) as info:
        build_config("resnet18-imagenet")
    assert time.perf_counter() - t0 < 10
    msg = str(info.value)
    assert "'none'" in msg and "local weights file" in msg and "HF_HUB_OFFLINE" in msg


def test_local_encoder_weights_sum_rgb_filters_into_one_channel(tmp_path):
    import torchvision

    torch.manual_seed(1)
    ref = torchvision.models.resnet18(weights=None).state_dict()  # has fc.*, 3-channel conv1
    path = tmp_path / "r18.pt"
    torch.save(ref, path)
    model = build_unet("resnet18", path)
    enc = model.encoder.state_dict()
    assert enc["conv1.weight"].shape == (64, 1, 7, 7)
    assert torch.allclose(enc["conv1.weight"], ref["conv1.weight"].sum(1, keepdim=True))
    assert torch.equal(enc["layer3.1.conv2.weight"], ref["layer3.1.conv2.weight"])
    # an smp model's own state dict ("encoder." prefix) works too, and wrong files are refused
    torch.save(model.state_dict(), tmp_path / "smp.pt")
    again = build_unet("resnet18", tmp_path / "smp.pt")
    assert torch.equal(again.encoder.conv1.weight, model.encoder.conv1.weight)
    with pytest.raises(InputError, match="resnet34"):
        build_unet("resnet34", path)  # resnet18 weights do not fit
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot read"):
        build_unet("resnet18", tmp_path / "junk.pt")
    with pytest.raises(InputError, match="not 'imagenet'"):
        build_unet("resnet18", tmp_path / "missing.pt")


# --------------------------------------------------------------------------------------------------
# tiled inference


class _Echo(torch.nn.Module):
    """A 'network' whose probability is its input: stitching must give the image back."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        p = x.clamp(1e-6, 1 - 1e-6)
        return torch.log(p / (1 - p)) + 0 * self.dummy


@pytest.mark.parametrize("shape", [(300, 410), (64, 64), (100, 90), (40, 200)])
@pytest.mark.parametrize("mode", ["blend", "thesis"])
def test_stitching_returns_an_echo_unchanged(shape, mode):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, shape).astype(np.uint8)
    prob = predict_probability(_Echo(), img, tile=64, overlap=16, batch_size=3, mode=mode)
    assert prob.shape == shape and prob.dtype == np.float32
    np.testing.assert_allclose(prob, img / 255.0, atol=1e-5)


def test_blend_weights_taper_inner_sides_only_and_never_vanish():
    w = tile_weights(64, 16, top=False, bottom=True, left=True, right=False)
    assert w.min() > 0
    assert np.all(w[0, 16:] == 1.0) and np.all(w[16:48, -1] == 1.0)  # border sides untapered
    assert w[-1, 32] < 0.01 and w[32, 0] < 0.01  # inner sides fall off
    assert w[32, 32] == 1.0


class _Position(torch.nn.Module):
    """Logits that differ from tile to tile: blended seams must be a smooth average."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.k = 0

    def forward(self, x):
        out = []
        for _ in range(x.shape[0]):
            out.append(torch.full(x.shape[1:], float(self.k % 2) * 4 - 2))
            self.k += 1
        return torch.stack(out) + 0 * self.dummy


def test_blend_is_smooth_where_tiles_disagree():
    img = np.zeros((64, 160), np.uint8)
    prob = predict_probability(_Position(), img, tile=64, overlap=32, mode="blend", batch_size=1)
    lo, hi = 1 / (1 + np.exp(2)), 1 / (1 + np.exp(-2))
    assert prob.min() >= lo - 1e-6 and prob.max() <= hi + 1e-6
    row = prob[10]
    assert np.abs(np.diff(row)).max() < 0.1  # no hard seam
    hard = predict_probability(_Position(), img, tile=64, overlap=0, mode="blend", batch_size=1)
    assert np.abs(np.diff(hard[10])).max() > 0.5


def test_predict_rejects_bad_arguments():
    with pytest.raises(InputError, match="multiple of 32"):
        predict_probability(_Echo(), np.zeros((64, 64)), tile=50)
    with pytest.raises(InputError, match="overlap"):
        predict_probability(_Echo(), np.zeros((64, 64)), tile=64, overlap=64)
    with pytest.raises(InputError, match="2-D"):
        predict_probability(_Echo(), np.zeros((2, 64, 64)), tile=64, overlap=16)


def test_segment_excludes_the_data_bar(example_images):
    from tio2fiji.io import read_sem

    sem = read_sem(example_images[0])
    assert sem.data_bar_rows > 0
    seg = segment(_Echo(), sem, threshold=0.5, tile=256, overlap=0, batch_size=8)
    assert seg.probability.shape == sem.analysed.shape == seg.mask.shape
    assert seg.mask.dtype == bool
    np.testing.assert_array_equal(seg.mask, sem.analysed / 255.0 > 0.5)
    assert seg.data_bar_rows == sem.data_bar_rows and seg.pixel_size_m == sem.pixel_size_m


# --------------------------------------------------------------------------------------------------
# model files


@pytest.mark.parametrize("weights, tol", [("float16", 2e-2), ("int8", 5e-2)])
def test_export_and_load_model_round_trip(tmp_path, weights, tol):
    torch.manual_seed(0)
    model = build_unet("resnet18", None).eval()
    # a few steps in train mode give the batch-norm layers non-trivial running statistics
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.rand(2, 1, 64, 64))
    model.eval()
    ck = {"model": model.state_dict(), "model_config": {"arch": "unet", "encoder": "resnet18",
                                                        "in_channels": 1, "classes": 1},
          "epoch": 3, "val_iou": 0.5}
    torch.save(ck, tmp_path / "best.pt")
    path = export_model(tmp_path / "best.pt", tmp_path / "m.pt", weights=weights,
                        metadata={"metrics": {"mean_iou": 0.9}})
    loaded = load_model(path)
    prov = loaded.settings.provenance
    assert prov.metadata["metrics"]["mean_iou"] == 0.9
    assert prov.weights_dtype == weights and prov.epoch == 3 and prov.val_iou == 0.5
    assert prov.file == str(path) and len(prov.file_sha256) == 64 and loaded.as_loaded
    assert next(loaded.net.parameters()).dtype == torch.float32 and not loaded.net.training
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        a, b = torch.sigmoid(model(x)), torch.sigmoid(loaded.net(x))
    assert (a - b).abs().max() < tol
    # the checkpoint itself loads too
    with torch.no_grad():
        assert torch.allclose(torch.sigmoid(load_model(tmp_path / "best.pt").net(x)), a, atol=1e-6)
    size = path.stat().st_size
    assert size < (0.3 if weights == "int8" else 0.55) * (14.4e6 * 4)


def test_load_model_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_model(tmp_path / "none.pt")
    torch.save({"a": 1}, tmp_path / "x.pt")
    with pytest.raises(InputError, match="not a tio2fiji model"):
        load_model(tmp_path / "x.pt")


def test_post_processing_parameters_are_stored_with_the_weights(tmp_path):
    """export_model stores the threshold and the watershed parameters next to the weights, segment
    uses them, and a file that stores none gets today's defaults."""
    from tio2fiji.instances import (
        BORDER_DEFAULTS,
        DISTANCE_DEFAULTS,
        STAR_DEFAULTS,
        WATERSHED_DEFAULTS,
        labels_from_probability,
    )
    from tio2fiji.models import Model, ModelSettings

    torch.manual_seed(0)
    ck = {"model": build_unet("resnet18", None).state_dict(), "epoch": 1, "val_iou": 0.5,
          "model_config": {"arch": "unet", "encoder": "resnet18", "in_channels": 1, "classes": 1}}
    first = load_model(ck)
    assert first.settings.provenance.file is None and not first.as_loaded  # no file: no graph cache
    assert first.settings.postprocessing() == ModelSettings().postprocessing()  # a file storing none
    assert first.settings.postprocessing() == {"threshold": 0.5, "score_threshold": 0.5,
                                                    "max_overlap": None,
                                                    "watershed": WATERSHED_DEFAULTS,
                                                    "outputs": "probability", "n_rays": 0,
                                                    "ray_scale": 1.0, "star": STAR_DEFAULTS,
                                                    "border": BORDER_DEFAULTS, "border_width": 2,
                                                    "distance": DISTANCE_DEFAULTS,
                                                    "pixel_size_m": 7.34375e-9, "train_ecd": None,
                                                    "min_particle_px": 1,
                                                    "pixel_size_source": "assumed: the BAM training images' 7.34375 nm"}
    loaded = load_model(export_model(ck, tmp_path / "m.pt", threshold=0.4, watershed={"h": 20.0}))
    post = loaded.settings.postprocessing()
    assert post["threshold"] == 0.4 and post["watershed"] == dict(WATERSHED_DEFAULTS, h=20.0)
    assert loaded.settings.threshold == 0.4 and loaded.settings.watershed == post["watershed"]
    assert loaded.settings.config["watershed"] == post["watershed"]

    # two overlapping discs: the default watershed splits them, h = 20 px keeps them one particle
    yy, xx = np.mgrid[:64, :96]
    discs = (np.hypot(yy - 32, xx - 36) < 12) | (np.hypot(yy - 32, xx - 58) < 12)
    img = np.where(discs, 230, 13).astype(np.uint8)
    echo = _Echo()
    assert segment(echo, img, tile=64, overlap=16).labels.max() == 2
    seg = segment(Model(echo, loaded.settings), img, tile=64, overlap=16)
    assert seg.threshold == 0.4 and seg.info["watershed"] == post["watershed"]
    assert seg.labels.max() == 1
    assert np.array_equal(seg.labels, labels_from_probability(seg.probability, 0.4, "watershed",
                                                              **post["watershed"]))
    with pytest.raises(InputError, match="unknown watershed"):
        ModelSettings.from_config({"watershed": {"hh": 1.0}})
    # a model file storing them is refused when it is loaded, before any image is segmented
    bad = {**ck, "model_config": {**ck["model_config"], "watershed": {"hh": 1.0}}}
    with pytest.raises(InputError, match="unknown watershed"):
        load_model(bad)


# --------------------------------------------------------------------------------------------------
# the bundled default model


needs_default = pytest.mark.skipif(not DEFAULT_MODEL.is_file(), reason="bundled model not built yet")


@needs_default
def test_default_model_is_small_and_documented():
    assert DEFAULT_MODEL.stat().st_size <= 25 * 1024 * 1024
    card = DEFAULT_MODEL.parent / "MODEL_CARD.md"
    text = card.read_text(encoding="utf-8")
    assert "CC BY-NC-ND 4.0" in text and "mean IoU" in text
    model = load_model("default")
    assert model.settings.config["arch"] == "unet" == model.settings.arch


@needs_default
def test_evaluate_cli_with_the_default_model_on_the_bundled_examples(tmp_path):
    """Runs the command end to end. The three bundled images were in the default model's training
    split, so the score is a sanity floor, not a held-out result (see MODEL_CARD.md)."""
    from click.testing import CliRunner

    from tio2fiji.cli import main

    ex = Path(__file__).resolve().parents[2] / "examples" / "data"
    out = tmp_path / "eval"
    res = CliRunner().invoke(main, ["evaluate", "--model", "default", "--images", str(ex / "SEM"),
                                    "--masks", str(ex / "masks"), "--out", str(out)])
    assert res.exit_code == 0, (res.output, repr(res.exception))
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("mean_iou", "mean_dice", "ap50_voc11", "coco_ap", "coco_ap50", "instance_iou",
                "count_error", "per_image"):
        assert key in metrics
    assert metrics["n_images"] == 3
    assert metrics["mean_iou"] > 0.8
    assert metrics["instance_iou"] > 0.3
    import pandas as pd

    per = pd.read_csv(out / "per_image.csv")
    assert len(per) == 3 and set(per["name"].astype(str)) == {"1908248", "1908252", "1908256"}
