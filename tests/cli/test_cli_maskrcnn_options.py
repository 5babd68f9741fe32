"""``tio2fiji train maskrcnn``'s levers on the command line: backbone, weights, norm, mask
resolution, anchor sizes, box head, warm-up, RoIs per tile. One tiny ResNet-18 run (one step on
256x256 tiles, one thread) reaches the files; the expectations are read from coco.json and
computed here independently; malformed anchor sizes are a usage error."""

import json

import pytest
from click.testing import CliRunner
from test_maskrcnn import _blobs

from tio2fiji.cli import main
from tio2fiji.models.checkpoint import load_checkpoint
from tio2fiji.models.maskrcnn import anchor_sizes_from_masks

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A practical-mode data folder from three generated 256x256 images (1 train, 1 val, 1 test),
    made as tests/models/test_maskrcnn.py makes its own."""
    from PIL import Image

    from tio2fiji.training import build_dataset

    root = tmp_path_factory.mktemp("mrcnn-cli")
    (root / "SEM").mkdir()
    (root / "masks").mkdir()
    for k in range(3):
        img, mask = _blobs(256, 10, seed=200 + k)
        mask[200:224, 20:44] = True  # one larger particle: the sizes spread
        img = (img.astype(int) + 100 * mask).clip(0, 255).astype("uint8")
        Image.fromarray(img).save(root / "SEM" / f"img{k}.png")
        Image.fromarray(mask.astype("uint8") * 255).save(root / "masks" / f"img{k}_m.png")
    build_dataset(root / "SEM", root / "masks", root / "data", mode="practical",
                  fractions=(1 / 3, 1 / 3, 1 / 3), data_bar_rows=0)
    return root / "data"


def _train_areas(data_dir):
    """The training tiles' particle areas, straight from coco.json."""
    coco = json.loads((data_dir / "coco.json").read_text())
    assert all("split" in im for im in coco["images"])
    train = {im["id"] for im in coco["images"] if im["split"] == "train"}
    return [a["area"] for a in coco["annotations"]
            if a["image_id"] in train and not a.get("iscrowd") and a["area"] > 0]


def test_maskrcnn_levers_reach_the_checkpoint_and_run_json(data_dir, tmp_path):
    run = tmp_path / "run"
    res = CliRunner().invoke(main, [
        "train", "maskrcnn", str(data_dir), "--out", str(run), "--backbone", "resnet18",
        "--weights-backbone", "unet", "--mask-resolution", "56", "--anchor-sizes", "auto",
        "--box-head-dim", "64", "--warmup-iters", "3", "--rois-per-tile", "64", "--epochs-heads", "0",
        "--epochs-all", "1", "--crops-per-epoch", "2", "--threads", "1",
        # an untrained network keeps few detections at 0.99: the validation stays fast
        "--score-threshold", "0.99", "--no-val-loss"])
    assert res.exit_code == 0, (res.output, repr(res.exception))
    assert "best validation IoU" in res.output

    areas = _train_areas(data_dir)
    assert len(areas) >= 5
    expected = anchor_sizes_from_masks(areas)
    assert len(expected) == 5 and expected != (10, 24, 32, 48, 64)  # not the thesis's by chance

    cfg = load_checkpoint(run / "best.pt")["model_config"]
    assert cfg["arch"] == "maskrcnn" and cfg["backbone"] == "resnet18"
    assert cfg["mask_resolution"] == 56 and cfg["box_head_dim"] == 64
    assert cfg["anchor_sizes"] == list(expected)
    assert cfg["overrides"] == {"box_batch_size_per_image": 64}
    assert cfg["norm"] == "frozen"  # --norm auto with pretrained (U-Net) weights
    assert cfg["input_norm"] == [0.0, 1.0]  # the U-Net encoder's input
    settings = json.loads((run / "run.json").read_text())
    assert settings["warmup_iters"] == 3


def test_defaults_are_the_thesis_network(monkeypatch, tmp_path):
    """Without the new options the library gets its own defaults (the thesis's network)."""
    import tio2fiji.training as T

    seen = {}

    def fake(data_dir, out_dir, **kw):
        seen.update(kw)
        return {"best_epoch": None, "history": [], "seconds": 0.0}

    monkeypatch.setattr(T, "train_maskrcnn", fake)
    res = CliRunner().invoke(main, ["train", "maskrcnn", str(tmp_path), "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert {k: seen[k] for k in ("backbone", "norm", "mask_resolution", "anchor_sizes", "box_head_dim",
                                 "warmup_iters", "overrides", "weights_backbone")} == {
        "backbone": "resnet50", "norm": None, "mask_resolution": 28, "anchor_sizes": None,
        "box_head_dim": 1024, "warmup_iters": 0, "overrides": None, "weights_backbone": "none"}
    res = CliRunner().invoke(main, ["train", "maskrcnn", str(tmp_path), "--out", str(tmp_path / "r"),
                                    "--anchor-sizes", " 8, 16,32,48,64", "--norm", "group"])
    assert res.exit_code == 0, res.output
    assert seen["anchor_sizes"] == (8, 16, 32, 48, 64) and seen["norm"] == "group"


@pytest.mark.parametrize("value", ["1,2,x", "8,16,32", "8,16,32,48", "8,16,32,48,64,96", "0,8,16,32,48",
                                   "-8,16,32,48,64", "1.5,8,16,32,48", "", "big"])
def test_malformed_anchor_sizes_are_a_one_line_usage_error(value, tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(main, ["train", "maskrcnn", str(tmp_path), "--out", str(out),
                                    "--anchor-sizes", value])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and isinstance(res.exception, SystemExit)
    errors = [ln for ln in res.output.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1 and "--anchor-sizes" in errors[0], res.output
    assert "five comma-separated positive integers" in errors[0]
    assert not out.exists()  # refused before anything was written
