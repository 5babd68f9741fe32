"""Training loop: loss with the valid mask, outputs, atomic checkpoints, kill-and-resume, CLI."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tio2fiji.errors import InputError, Tio2FijiError
from tio2fiji.models.checkpoint import load_checkpoint
from tio2fiji.training import HISTORY_COLUMNS, fit_unet, make_loss

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "data"


class Blobs:
    """A tiny synthetic dataset: bright discs on a dark background, with a valid mask.

    Item ``i`` of epoch ``e`` depends only on ``(seed, e, i)``, like dataset.RandomCropDataset.
    """

    def __init__(self, n=8, size=64, seed=0, invalid_corner=False):
        self.n, self.size, self.seed, self.epoch = n, size, seed, 0
        self.invalid_corner = invalid_corner

    def set_epoch(self, e):
        self.epoch = e

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        rng = np.random.default_rng([self.seed, self.epoch, i])
        yy, xx = np.mgrid[:self.size, :self.size]
        mask = np.zeros((self.size, self.size), bool)
        for _ in range(4):
            cy, cx, r = rng.integers(8, self.size - 8, 2).tolist() + [int(rng.integers(3, 8))]
            mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        img = (0.2 + 0.6 * mask + rng.normal(0, 0.05, mask.shape)).astype(np.float32)
        valid = np.ones_like(mask)
        if self.invalid_corner:
            valid[:10, :10] = False
        def t(a):
            return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None]
        return t(img), t(mask), t(valid)


def _tiny_model(seed=0):
    from tio2fiji.models.unet import build_unet

    torch.manual_seed(seed)
    return build_unet("resnet18", None)


def test_loss_ignores_invalid_pixels():
    torch.manual_seed(0)
    target = (torch.rand(2, 1, 32, 32) > 0.5).float()
    valid = torch.ones_like(target)
    valid[:, :, :8] = 0
    for kind in ("dice", "dice+bce"):
        fn = make_loss(kind)
        logits = torch.randn(2, 1, 32, 32, requires_grad=True)
        base = fn(logits, target, valid)
        base.backward()
        assert torch.all(logits.grad[:, :, :8] == 0)
        assert logits.grad[:, :, 8:].abs().sum() > 0
        changed = logits.detach().clone()
        changed[:, :, :8] = 50.0  # anything at all where the pixels are invented
        other = target.clone()
        other[:, :, :8] = 1 - other[:, :, :8]
        assert torch.allclose(fn(changed, other, valid), base.detach())
    # a perfect prediction has zero Dice loss
    assert float(make_loss("dice")(target * 40 - 20, target, valid)) < 1e-4
    with pytest.raises(InputError):
        make_loss("focal")


def test_gap_pixels_and_gap_weighted_loss():
    from tio2fiji.training.unet import gap_pixels

    m = torch.zeros(1, 1, 10, 12)
    m[..., 2:8, 1:5] = 1
    m[..., 2:8, 6:10] = 1  # two particles, a 1-pixel gap in column 5
    gap = gap_pixels(m)[0, 0]
    assert gap[2:8, 5].all() and int(gap.sum()) == 6  # only the gap, not the outer background
    # a prediction that merges the two particles costs more with gap weights
    valid = torch.ones_like(m)
    merged = m.clone()
    merged[..., 2:8, 5] = 1
    logits = merged * 20 - 10
    plain = float(make_loss("dice+bce")(logits, m, valid))
    weighted = float(make_loss("dice+bce", gap_weight=10)(logits, m, valid))
    assert weighted > plain + 0.05
    with pytest.raises(InputError):
        make_loss("dice", gap_weight=5)


def test_validation_iou_is_pooled_per_image():
    """An empty tile with a few false-positive pixels must not pull an image's IoU to 0."""
    from tio2fiji.training.unet import evaluate

    class Fixed(torch.nn.Module):
        def forward(self, x):
            return x * 40 - 20  # the "image" holds the prediction

    pred = torch.zeros(3, 1, 8, 8)
    gt = torch.zeros(3, 1, 8, 8)
    gt[0, :, :4] = 1
    pred[0, :, :4] = 1  # item 0: perfect, 32 px
    pred[1, :, 0, 0] = 1  # item 1: empty tile, one false positive
    gt[2, :, :2] = 1
    pred[2, :, :1] = 1  # item 2: half found
    items = [(pred[k], gt[k], torch.ones(1, 8, 8)) for k in range(3)]
    loss = make_loss("dice")
    _, per_tile = evaluate(Fixed(), [tuple(torch.stack(t) for t in zip(*items))], loss)
    assert per_tile == pytest.approx((1 + 0 + 0.5) / 3)
    _, per_image = evaluate(Fixed(), [tuple(torch.stack(t) for t in zip(*items))], loss, [0, 0, 1])
    assert per_image == pytest.approx((32 / 33 + 0.5) / 2)


def test_train_writes_history_curves_and_checkpoints(tmp_path):
    events = []
    res = fit_unet(_tiny_model(), Blobs(8, invalid_corner=True), Blobs(4, seed=1), tmp_path, epochs=2,
                   batch_size=4, lr=1e-3, loss="dice+bce", seed=0, threads=1,
                   model_config={"arch": "unet", "encoder": "resnet18", "in_channels": 1, "classes": 1},
                   progress=lambda done, total, name: events.append((done, total, name)))
    hist = pd.read_csv(tmp_path / "history.csv")
    assert list(hist.columns) == HISTORY_COLUMNS and list(hist["epoch"]) == [1, 2]
    assert hist["val_iou"].between(0, 1).all() and (hist["seconds"] > 0).all()
    png = (tmp_path / "training_curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # progress(done, total, name): after each of the 2 x 2 steps, and after each epoch
    assert [(d, t) for d, t, _ in events] == [(1, 4), (2, 4), (2, 4), (3, 4), (4, 4), (4, 4)]
    assert events[0][2].startswith("epoch 1/2 loss ") and events[2][2].startswith("epoch 1/2 val_iou ")
    last = load_checkpoint(tmp_path / "last.pt")
    assert last["epoch"] == 2 and len(last["history"]) == 2 and "optimizer" in last and "rng" in last
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["epoch"] == res["best_epoch"] and best["val_iou"] == pytest.approx(res["best_val_iou"])
    assert json.loads((tmp_path / "run.json").read_text())["epochs"] == 2
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary files left behind
    # the library restores torch's global settings
    assert not torch.are_deterministic_algorithms_enabled()


def test_non_finite_loss_stops_the_run(tmp_path):
    """The engine stops at the first non-finite loss (for both networks) and leaves no checkpoint of
    the broken epoch."""

    class NaNNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return x * self.w + float("nan")

    with pytest.raises(Tio2FijiError, match="diverged at epoch 1, step 1"):
        fit_unet(NaNNet(), Blobs(4), Blobs(2, seed=1), tmp_path, epochs=1, batch_size=2, threads=1)
    assert not (tmp_path / "last.pt").exists()
    assert not torch.are_deterministic_algorithms_enabled()


_CHILD = textwrap.dedent("""
    import sys, time, torch
    sys.path.insert(0, {root!r})
    from tests.training.test_train import Blobs, _tiny_model
    from tio2fiji.training import fit_unet

    def progress(done, total, name):
        print(done, name, flush=True)
        if sys.argv[2:] == ["pause"] and done == 5 and " loss " in name:
            time.sleep(60)  # wait in the middle of epoch 2 (its step 2 of 3) to be killed

    fit_unet(_tiny_model(), Blobs(6), Blobs(2, seed=1), sys.argv[1], epochs=3, batch_size=2, lr=1e-3,
             loss="dice+bce", seed=3, threads=1, resume=True, progress=progress,
             model_config={{"arch": "unet", "encoder": "resnet18"}})
""")


def test_killed_run_resumes_to_the_same_weights(tmp_path):
    """Kill a training process in the middle of epoch 2; the resumed run must end exactly where an
    uninterrupted run ends (same seed, CPU, one thread)."""
    script = tmp_path / "child.py"
    script.write_text(_CHILD.format(root=str(ROOT)))
    run = tmp_path / "run"
    env = dict(os.environ, HF_HUB_OFFLINE="1", MPLBACKEND="Agg")
    child = subprocess.Popen([sys.executable, str(script), str(run), "pause"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, env=env, cwd=ROOT)
    try:
        for line in child.stdout:
            if line.split()[:3] == ["5", "epoch", "2/3"]:  # in the middle of epoch 2
                child.send_signal(signal.SIGKILL)
                break
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert load_checkpoint(run / "last.pt")["epoch"] == 1  # the last complete epoch survived

    # resume in another process, as a user would
    done = subprocess.run([sys.executable, str(script), str(run)], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "epoch 2/3" in done.stdout and "epoch 1/3" not in done.stdout
    resumed = load_checkpoint(run / "last.pt")

    straight = tmp_path / "straight"
    fit_unet(_tiny_model(), Blobs(6), Blobs(2, seed=1), straight, epochs=3, batch_size=2, lr=1e-3,
             loss="dice+bce", seed=3, threads=1, model_config={"arch": "unet", "encoder": "resnet18"})
    ref = load_checkpoint(straight / "last.pt")
    assert resumed["epoch"] == ref["epoch"] == 3
    for k, v in ref["model"].items():
        assert torch.equal(resumed["model"][k], v), k
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in ref["history"]]
    assert pd.read_csv(run / "history.csv")["epoch"].tolist() == [1, 2, 3]


def test_cli_dataset_build_train_and_evaluate(tmp_path):
    """The three commands on the bundled examples (tiny: 2 crops, 1 epoch)."""
    from click.testing import CliRunner

    from tio2fiji.cli import main

    runner = CliRunner()
    data = tmp_path / "data"
    res = runner.invoke(main, ["dataset", "build", "--images", str(EXAMPLES / "SEM"), "--masks",
                               str(EXAMPLES / "masks"), "--out", str(data), "--mode", "practical"])
    assert res.exit_code == 0, (res.output, repr(res.exception))
    assert (data / "split.json").is_file() and (data / "coco.json").is_file()
    run = tmp_path / "run"
    res = runner.invoke(main, ["train", "unet", str(data), "--out", str(run), "--config",
                               "resnet18-scratch", "--epochs", "1", "--crops-per-epoch", "2",
                               "--batch-size", "2", "--threads", "2", "--scale-augment"])
    assert res.exit_code == 0, (res.output, repr(res.exception))
    assert "best validation IoU" in res.output and (run / "best.pt").is_file()
    from tio2fiji.training.datasets import SCALE_AUGMENTATION

    # the model file says which scales it was trained for
    assert load_checkpoint(run / "best.pt")["model_config"]["train_scale"] == {
        k: list(v) if isinstance(v, tuple) else v for k, v in SCALE_AUGMENTATION.items()}
    out = tmp_path / "eval"
    split = json.loads((data / "split.json").read_text())
    res = runner.invoke(main, ["evaluate", "--model", str(run / "best.pt"), "--images",
                               str(EXAMPLES / "SEM"), "--masks", str(EXAMPLES / "masks"), "--split",
                               str(data / "split.json"), "--subset", "test", "--out", str(out),
                               "--mode", "thesis"])
    assert res.exit_code == 0, (res.output, repr(res.exception))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_images"] == len(split["splits"]["test"]) == 1
    assert 0 <= metrics["mean_iou"] <= 1
    # imagenet weights offline: one clear line, no traceback
    res = runner.invoke(main, ["train", "unet", str(data), "--out", str(tmp_path / "r2"), "--config",
                               "resnet18-imagenet", "--epochs", "1"])
    assert res.exit_code == 1 and "error:" in res.output and "Traceback" not in res.output


def test_one_output_unet_starts_from_the_default_distance_unets_particle_head(tmp_path):
    """``train unet --init default``: the bundled default is a distance U-Net (three heads); a
    one-output U-Net takes its encoder, decoder and particle head, so before training it outputs the
    default's particle channel; a star-convex file is refused in one line."""
    from tio2fiji.models.checkpoint import load_model, resolve_model
    from tio2fiji.models.unet import build_unet
    from tio2fiji.training.unet import _init_weights

    default = load_model("default")
    assert default.settings.outputs == "distance"
    net = build_unet("resnet18", None)
    _init_weights(net, resolve_model("default"), "resnet18", "resnet18-scratch")
    net.eval()
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(net(x), default.net(x)[:, :1], atol=1e-5)
    torch.save({"model": {}, "model_config": {"encoder": "resnet18", "classes": 34, "outputs": "star"}},
               tmp_path / "star.pt")
    with pytest.raises(InputError, match="one-output"):
        _init_weights(net, tmp_path / "star.pt", "resnet18", "resnet18-scratch")
