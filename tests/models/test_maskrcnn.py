"""Mask R-CNN (issue 6): the thesis's model, instance data, two-phase training, tiled prediction.

Everything runs on tiny generated data with one CPU thread; a ResNet-50 Mask R-CNN step on a
256×256 tile still takes seconds, so each test does as few steps as it can.
"""

import json

import numpy as np
import pytest
import torch

from tio2fiji import predict as P
from tio2fiji.errors import InputError
from tio2fiji.instances import connected_components, paint_instances, paste_masks
from tio2fiji.models import maskrcnn as mr
from tio2fiji.training import targets_from_instances

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _blobs(size, n, seed, rmin=3, rmax=9):
    """A gray image (uint8) of bright discs on a noisy dark background, and its 0/1 mask."""
    rng = np.random.default_rng(seed)
    h, w = (size, size) if np.isscalar(size) else size
    yy, xx = np.mgrid[:h, :w]
    mask = np.zeros((h, w), bool)
    for _ in range(n):
        r = int(rng.integers(rmin, rmax + 1))
        cy, cx = int(rng.integers(r, h - r)), int(rng.integers(r, w - r))
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    img = np.clip(50 + 150 * mask + rng.normal(0, 8, mask.shape), 0, 255).astype(np.uint8)
    return img, mask


def _target(mask):
    lab = connected_components(mask, 4)
    return targets_from_instances(np.stack([lab == i for i in range(1, lab.max() + 1)]))


# --------------------------------------------------------------------------------------------------
# the model


def test_configs_are_table_3():
    assert [mr.CONFIGS[k]["box_detections_per_img"] for k in (1, 2, 3, 4)] == [1500, 2000, 2500, 3000]
    assert [mr.CONFIGS[k]["box_batch_size_per_image"] for k in (1, 2, 3, 4)] == [2000, 2500, 3000, 3500]
    assert [mr.CONFIGS[k]["rpn_batch_size_per_image"] for k in (1, 2, 3, 4)] == [2000, 2500, 3000, 3500]
    assert [mr.CONFIGS[k]["rpn_pre_nms_top_n_train"] for k in (1, 2, 3, 4)] == [3500, 6500, 6500, 5500]
    assert [mr.CONFIGS[k]["rpn_post_nms_top_n_train"] for k in (1, 2, 3, 4)] == [2500, 3000, 3000, 3000]
    assert [mr.CONFIGS[k]["rpn_pre_nms_top_n_test"] for k in (1, 2, 3, 4)] == [3500, 5000, 5000, 4000]
    assert [mr.CONFIGS[k]["rpn_post_nms_top_n_test"] for k in (1, 2, 3, 4)] == [2500, 3000, 3000, 3000]
    for bad in (0, 5, "x", 1.5, None):
        with pytest.raises(InputError, match="1, 2, 3, 4"):
            mr.build_maskrcnn(bad)


@pytest.mark.parametrize("config", [1, 2, 3, 4])
def test_every_configuration_builds_trains_a_step_and_predicts(config):
    torch.manual_seed(config)
    model = mr.build_maskrcnn(config)
    c = mr.CONFIGS[config]
    # the thesis's changes are in the built network
    assert model.roi_heads.detections_per_img == c["box_detections_per_img"]
    assert model.roi_heads.fg_bg_sampler.batch_size_per_image == c["box_batch_size_per_image"]
    assert model.rpn.fg_bg_sampler.batch_size_per_image == c["rpn_batch_size_per_image"]
    assert model.rpn._pre_nms_top_n == {"training": c["rpn_pre_nms_top_n_train"],
                                        "testing": c["rpn_pre_nms_top_n_test"]}
    assert model.rpn._post_nms_top_n == {"training": c["rpn_post_nms_top_n_train"],
                                         "testing": c["rpn_post_nms_top_n_test"]}
    assert model.rpn.nms_thresh == 0.2
    assert model.rpn.anchor_generator.sizes == ((10,), (24,), (32,), (48,), (64,))
    assert all(a == (0.5, 1.0, 2.0) for a in model.rpn.anchor_generator.aspect_ratios)
    for pool in (model.roi_heads.box_roi_pool, model.roi_heads.mask_roi_pool):
        assert (pool.canonical_level, pool.canonical_scale) == (3, 128)
    assert model.transform.min_size == (256,) and model.transform.max_size == 256
    assert model.transform.image_mean == [mr.GRAY_MEAN] and model.transform.image_std == [mr.GRAY_STD]
    assert model.backbone.body.conv1.in_channels == 1
    assert model.roi_heads.box_predictor.cls_score.out_features == 2

    # one training step on a gray tile with a few particles (and an empty tile)
    img, mask = _blobs(256, 6, seed=config)
    model.train()
    losses = model([torch.from_numpy(img / 255.0).float()[None]], [_target(mask)])
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness",
                           "loss_rpn_box_reg"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert model.backbone.body.conv1.weight.grad is not None
    for pool in (model.roi_heads.box_roi_pool, model.roi_heads.mask_roi_pool):
        # the level mapper the forward pass set up: k = floor(3 + log2(sqrt(wh) / 128))
        assert (pool.map_levels.lvl0, pool.map_levels.s0) == (3, 128)
        lv = pool.map_levels([torch.tensor([[0, 0, 128.0, 128.0], [0, 0, 256.0, 256.0],
                                            [0, 0, 10.0, 10.0]])])
        assert lv.tolist() == [1, 2, 0]  # P3, P4, P2 (indices from the finest level, P2)
    assert model.roi_heads.mask_predictor.mask_fcn_logits.weight.grad.abs().sum() > 0

    # whole-image inference on an image smaller than a tile
    small, _ = _blobs((90, 140), 4, seed=10 + config)
    labels, scores, prob = P.predict_instances(model, small, score_threshold=0.9)
    assert labels.shape == small.shape and labels.dtype == np.uint32
    assert scores.dtype == np.float32 and prob.dtype == np.float32 and prob.shape == small.shape
    assert len(scores) == labels.max() and np.all(scores > 0.9)
    assert np.array_equal(labels > 0, prob > 0.5)


def test_targets_from_instances():
    m = np.zeros((3, 6, 8), bool)
    m[0, 2, 3] = True  # a one-pixel particle: a 1x1 box, not a degenerate one
    m[2, 1:4, 5:8] = True
    t = targets_from_instances(m)  # the empty mask is dropped
    assert t["boxes"].tolist() == [[3, 2, 4, 3], [5, 1, 8, 4]]
    assert t["labels"].tolist() == [1, 1] and t["masks"].shape == (2, 6, 8)
    assert t["masks"].dtype == torch.uint8
    e = targets_from_instances(np.zeros((0, 6, 8), bool))
    assert e["boxes"].shape == (0, 4) and e["masks"].shape == (0, 6, 8)


def test_backbone_weights_from_file_and_offline_cache(tmp_path, monkeypatch):
    from torchvision.models import ResNet50_Weights, resnet50

    torch.manual_seed(0)
    state = resnet50().state_dict()  # stands in for ImageNet weights (3-channel conv1, fc)
    path = tmp_path / "r50.pth"
    torch.save(state, path)
    model = mr.build_maskrcnn(1, weights_backbone=path)
    body = model.backbone.body
    assert torch.allclose(body.conv1.weight, state["conv1.weight"].sum(1, keepdim=True))
    assert torch.equal(body.layer3[0].conv2.weight, state["layer3.0.conv2.weight"])
    assert type(body.bn1).__name__ == "FrozenBatchNorm2d"
    # torchvision's rule with pretrained weights: conv1 and layer1 stay frozen
    assert not body.conv1.weight.requires_grad and not body.layer1[0].conv1.weight.requires_grad
    assert body.layer2[0].conv1.weight.requires_grad
    cfg = mr.model_config(model)
    assert cfg["norm"] == "frozen" and cfg["trainable_backbone_layers"] == 3
    # a checkpoint's config rebuilds a network the weights fit, without reading any weights file
    again = mr.build_from_config(json.loads(json.dumps(cfg)))
    again.load_state_dict(model.state_dict())

    # "imagenet" is read from the local torch cache only
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(InputError, match="resnet50-11ad3fa6.pth"):
        mr.build_maskrcnn(1, weights_backbone="imagenet")
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / ResNet50_Weights.IMAGENET1K_V2.url.rsplit("/", 1)[-1]).write_bytes(path.read_bytes())
    m2 = mr.build_maskrcnn(2, weights_backbone="imagenet")
    assert torch.equal(m2.backbone.body.conv1.weight, body.conv1.weight)
    assert mr.model_config(m2)["weights_backbone_at_start"] == "imagenet (IMAGENET1K_V2)"
    with pytest.raises(InputError, match="not 'imagenet'"):
        mr.build_maskrcnn(1, weights_backbone=tmp_path / "missing.pth")
    with pytest.raises(InputError, match="maskrcnn"):
        mr.build_from_config({"arch": "unet", "encoder": "resnet18"})


# --------------------------------------------------------------------------------------------------
# tiled prediction


def _fake_detect(model, images, score_threshold=0.5, regions=None):
    """A perfect detector: the 4-connected bright components of each tile, with their masks
    sampled on a 28x28 grid over the box (as torchvision makes the mask head's targets); with
    ``regions``, only those whose box centre lies in the tile's region, as :func:`detect` does."""
    from scipy import ndimage
    from torchvision.ops import roi_align

    out = []
    for img in images:
        lab = connected_components(img > 0.5, 4)
        boxes, masks = [], []
        for i, (ys, xs) in enumerate(ndimage.find_objects(lab), 1):
            box = np.array([xs.start, ys.start, xs.stop, ys.stop], np.float32)
            crop = torch.from_numpy((lab[ys, xs] == i).astype(np.float32))[None, None]
            roi = torch.tensor([[0, 0, 0, xs.stop - xs.start, ys.stop - ys.start]], dtype=torch.float32)
            boxes.append(box)
            masks.append(roi_align(crop, roi, (28, 28), 1.0)[0, 0].numpy())
        boxes = np.array(boxes, np.float32).reshape(-1, 4)
        masks = np.array(masks, np.float32).reshape(-1, 28, 28)
        # scores by size: larger particles win where masks overlap
        scores = 0.6 + 0.3 * (boxes[:, 2] - boxes[:, 0]) / 64.0
        keep = scores > score_threshold
        if regions is not None:
            y0, y1, x0, x1 = regions[len(out)]
            cy, cx = (boxes[:, 1] + boxes[:, 3]) / 2, (boxes[:, 0] + boxes[:, 2]) / 2
            keep &= (cy >= y0) & (cy < y1) & (cx >= x0) & (cx < x1)
        out.append({"boxes": boxes[keep], "scores": scores[keep].astype(np.float32),
                    "masks": masks[keep]})
    return out


@pytest.fixture(scope="module")
def model1():
    torch.manual_seed(0)
    return mr.build_maskrcnn(1)


def test_tiles_keep_border_particles_whole_and_once(model1, monkeypatch):
    """1024x704 image, particles everywhere (many across tile borders): with a perfect detector in
    place of the network, every particle comes back exactly once, and as whole as when the
    detector sees the entire image at once."""
    monkeypatch.setattr(P._maskrcnn, "detect", _fake_detect)  # where tiled_detections calls it
    img, mask = _blobs((704, 1024), 160, seed=3, rmin=4, rmax=12)
    truth = connected_components(mask, 4)
    seen = []
    labels, scores, prob = P.predict_instances(model1, img, overlap=64, batch_size=3,
                                                progress=lambda d, t, name: seen.append((d, t, name)))
    assert seen[-1] == (20, 20, "tile")  # 4 x 5 tiles of 256 with 64 overlap (the last ones flush)
    # the same detector on the whole image, no tiles
    d = _fake_detect(None, [img / 255.0])[0]
    whole = [(float(s), y, x, p) for s, (y, x, p)
             in zip(d["scores"], paste_masks(d["masks"], d["boxes"], img.shape))]
    ref = paint_instances(img.shape, whole)[0]
    assert labels.max() == ref.max() == truth.max() == len(scores)

    from scipy import ndimage

    areas = np.bincount(labels.ravel())

    def iou(a, b):
        return (a & b).sum() / (a | b).sum()

    for i, sl in enumerate(ndimage.find_objects(truth), 1):
        sl = tuple(slice(max(s.start - 8, 0), s.stop + 8) for s in sl)  # room for a larger mask
        t, lab, rf = truth[sl] == i, labels[sl], ref[sl]
        got, want = np.unique(lab[t]), np.unique(rf[t])
        got = got[got != 0]
        assert got.size == 1, f"particle {i} missed or split between instances {got}"
        assert (lab == got[0]).sum() == areas[got[0]]  # the whole instance lies around the particle
        # 28x28 masks lose a little of small discs (IoU 0.69 for r = 4), tiles lose nothing more
        assert iou(lab == got[0], t) >= iou(rf == want[want != 0][0], t) - 0.02, i
    assert np.array_equal(labels > 0, prob > 0.5)
    # labels are numbered in raster order like connected components
    first = [np.flatnonzero(labels.ravel() == i)[0] for i in range(1, labels.max() + 1)]
    assert first == sorted(first)


def test_detect_in_regions_is_detect_filtered_before_the_mask_head(model1, monkeypatch):
    """``regions`` drops the detections whose box centre lies outside before the mask head runs:
    the kept ones are exactly those of a plain ``detect`` (same boxes, scores and masks), and the
    mask head sees only them."""
    monkeypatch.setattr(model1.roi_heads, "detections_per_img", 40)
    rng = np.random.default_rng(0)
    tiles = [rng.random((256, 256)).astype(np.float32) for _ in range(2)]
    full = P.detect(model1, tiles, 0.0)
    seen = []
    hook = model1.roi_heads.mask_head.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    # windows that cut through the detections: above the median centre row; left of the median column
    cy = [float(np.median((f["boxes"][:, 1] + f["boxes"][:, 3]) / 2)) for f in full]
    cx = [float(np.median((f["boxes"][:, 0] + f["boxes"][:, 2]) / 2)) for f in full]
    regions = [(0, cy[0], 0, 256), (0, 256, 0, cx[1])]
    try:
        part = P.detect(model1, tiles, 0.0, regions=regions)
    finally:
        hook.remove()
    assert all(len(f["scores"]) == 40 for f in full)
    for f, p, (y0, y1, x0, x1) in zip(full, part, regions):
        b = f["boxes"]
        cy, cx = (b[:, 1] + b[:, 3]) / 2, (b[:, 0] + b[:, 2]) / 2
        inside = (cy >= y0) & (cy < y1) & (cx >= x0) & (cx < x1)
        assert 0 < inside.sum() < 40
        assert np.array_equal(p["boxes"], b[inside]) and np.array_equal(p["scores"], f["scores"][inside])
        # the mask head runs on fewer RoIs at once: float sums in another order (random weights)
        np.testing.assert_allclose(p["masks"], f["masks"][inside], atol=1e-4)
    assert seen == [sum(len(p["scores"]) for p in part)]


def test_overlapping_masks_go_to_the_higher_score():
    a = np.full((6, 6), 0.9, np.float32)
    labels, scores, prob = paint_instances((10, 12), [(0.6, 0, 0, a), (0.8, 3, 3, a),
                                                         (0.7, 20, 20, a)])
    # the lower-scored instance keeps only what the higher one does not cover; off-image one dropped
    assert scores.tolist() == pytest.approx([0.6, 0.8])
    assert (labels[3:9, 3:9] == 2).all() and (labels[:3, :6] == 1).all() and labels[5, 2] == 1
    assert labels.dtype == np.uint32 and prob.max() == pytest.approx(0.9)
    # an instance that keeps no pixel disappears and the labels stay consecutive
    labels, scores, _ = paint_instances((10, 10), [(0.5, 2, 2, a[:2, :2]), (0.9, 0, 0, a)])
    assert labels.max() == 1 and scores.tolist() == pytest.approx([0.9])


def test_predict_instances_rejects_bad_input(model1):
    with pytest.raises(InputError, match="2-D"):
        P.predict_instances(model1, np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(InputError, match="input size 256"):
        P.predict_instances(model1, np.zeros((300, 300), np.uint8), tile=512)
    with pytest.raises(InputError, match="Mask R-CNN"):
        P.predict_instances(torch.nn.Conv2d(1, 1, 3), np.zeros((30, 30), np.uint8))


# --------------------------------------------------------------------------------------------------
# data and training


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A practical-mode data folder from three generated 256x256 images (1 train, 1 val, 1 test)."""
    from PIL import Image

    from tio2fiji.training import build_dataset

    root = tmp_path_factory.mktemp("mrcnn")
    (root / "SEM").mkdir()
    (root / "masks").mkdir()
    for k in range(3):
        img, mask = _blobs(256, 12, seed=100 + k)
        # two squares that touch but for a 1-pixel gap: separate 4-connected particles
        mask[200:220, 20:40] = True
        mask[200:220, 41:60] = True
        mask[200:220, 40] = False
        img = np.where(mask, np.maximum(img, 180), img).astype(np.uint8)
        Image.fromarray(img).save(root / "SEM" / f"img{k}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / "masks" / f"img{k}_m.png")
    build_dataset(root / "SEM", root / "masks", root / "data", mode="practical",
                  fractions=(1 / 3, 1 / 3, 1 / 3), data_bar_rows=0)
    return root / "data"


def test_coco_dataset_items_and_augmentation(data_dir):
    from tio2fiji.training import CocoInstanceDataset

    coco = json.loads((data_dir / "coco.json").read_text())
    ds = CocoInstanceDataset(data_dir, "train", seed=1, photometric_p=0.0)
    assert len(ds) == 1
    train_id = next(im["id"] for im in coco["images"] if im["split"] == "train")
    n_ann = sum(a["image_id"] == train_id for a in coco["annotations"])
    plain = CocoInstanceDataset(data_dir, "train", augment=False)
    img, masks, valid = plain.item_arrays(0)
    assert masks.shape[0] == n_ann and valid.all() and img.dtype == np.float32
    assert masks[:, 205, 30].sum() == 1 and masks[:, 205, 50].sum() == 1  # the gap separates them
    assert masks[:, 205, 30].argmax() != masks[:, 205, 50].argmax()
    seen = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        a_img, a_masks, _ = ds.item_arrays(0)
        # a flip/rot90 of the tile, with the instance masks moved alike
        match = [(k, f) for k in range(4) for f in (False, True)
                 if np.array_equal(_d4(img, k, f), a_img)]
        assert len(match) >= 1
        k, f = match[0]
        assert np.array_equal(np.stack([_d4(m, k, f) for m in masks]), a_masks)
        seen.add(match[0])
        again = ds.item_arrays(0)[0]
        assert np.array_equal(again, a_img)  # (seed, epoch, index) decide the item
    assert len(seen) > 1
    image, target, v = ds[0]
    assert image.shape == (1, 256, 256) and target["boxes"].shape == (n_ann, 4) and v.dtype == torch.bool
    longer = CocoInstanceDataset(data_dir, "train", length=3)
    assert len(longer) == 3 and longer.groups() == [0, 1, 2]
    val = CocoInstanceDataset(data_dir, "val")  # practical mode: validation pooled per image
    assert len(val) == 1 and val.groups() == [val.images[0]["source"]] and not val.augment


def _d4(a, k, f):
    a = np.rot90(a, k)
    return a[:, ::-1] if f else a


def test_two_phase_learning_rate():
    from tio2fiji.training import two_phase_lr

    lrs = [two_phase_lr(e, 30, 50) for e in range(1, 81)]
    assert lrs[:15] == [0.01] * 15 and lrs[15:30] == [1e-5] * 15
    assert lrs[30:55] == [0.01] * 25 and lrs[55:] == [1e-5] * 25
    assert [two_phase_lr(e, 1, 1) for e in (1, 2)] == [0.01, 0.01]


def test_two_phase_training_cli_resume_and_checkpoint(data_dir, tmp_path):
    """Heads phase through the CLI, then the whole network by resuming; the best checkpoint
    rebuilds and predicts."""
    from click.testing import CliRunner

    from tio2fiji.cli import main
    from tio2fiji.models.checkpoint import load_checkpoint
    from tio2fiji.training import MASKRCNN_HISTORY_COLUMNS, train_maskrcnn

    run = tmp_path / "run"
    res = CliRunner().invoke(main, ["train", "maskrcnn", str(data_dir), "--out", str(run), "--config",
                                    "1", "--epochs-heads", "1", "--epochs-all", "0", "--threads", "1",
                                    # an untrained network scores hundreds of boxes above 0.5 and
                                    # its mask head needs ~30 ms each on one thread: keep few
                                    "--score-threshold", "0.99"])
    assert res.exit_code == 0, (res.output, repr(res.exception))
    assert "best validation IoU" in res.output
    heads = load_checkpoint(run / "last.pt")
    assert heads["phase"] == "heads" and heads["model_config"]["arch"] == "maskrcnn"
    torch.manual_seed(0)  # the run's initial weights (and the network to load best.pt into)
    model = mr.build_from_config(heads["model_config"])
    start = {k: v.clone() for k, v in model.state_dict().items()}
    body = [k for k in start if k.startswith("backbone.body.") and k.endswith("weight")]
    assert all(torch.equal(heads["model"][k], start[k]) for k in body)  # frozen in phase 1
    assert not torch.equal(heads["model"]["backbone.fpn.layer_blocks.0.0.weight"],
                           start["backbone.fpn.layer_blocks.0.0.weight"])

    events = []
    out = train_maskrcnn(data_dir, run, config=1, epochs_heads=1, epochs_all=1, resume=True,
                         threads=1, score_threshold=0.99,
                         progress=lambda done, total, name: events.append((done, total, name)))
    assert out["resumed_from"] == 1 and [(d, t) for d, t, _ in events] == [(2, 2), (2, 2)]
    assert events[0][2].startswith("epoch 2/2 (all) loss ") and " val_iou " in events[1][2]
    assert [h["phase"] for h in out["history"]] == ["heads", "all"]
    assert out["best_epoch"] == 2  # the thesis checkpointed in the whole-network phase
    last = load_checkpoint(run / "last.pt")
    assert not torch.equal(last["model"]["backbone.body.layer4.0.conv1.weight"],
                           start["backbone.body.layer4.0.conv1.weight"])
    import pandas as pd

    hist = pd.read_csv(run / "history.csv")
    assert list(hist.columns) == MASKRCNN_HISTORY_COLUMNS and hist["epoch"].tolist() == [1, 2]
    assert hist["val_iou"].between(0, 1).all() and np.isfinite(hist["val_loss"]).all()
    assert (run / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert not list(run.glob(".*.tmp"))
    assert not torch.are_deterministic_algorithms_enabled()

    best = load_checkpoint(run / "best.pt")
    cfg = best["model_config"]
    assert cfg["arch"] == "maskrcnn" and cfg["config"] == 1 and cfg["threshold"] == 0.5
    assert cfg["score_threshold"] == 0.99
    model.load_state_dict(best["model"])
    img, _ = _blobs((200, 250), 5, seed=7)
    labels, scores, _ = P.predict_instances(model.eval(), img, score_threshold=0.95)
    assert labels.shape == img.shape and len(scores) == labels.max()

    # a resumed run with another configuration is refused; imagenet weights offline: one clear line
    with pytest.raises(InputError, match="configuration 2"):
        train_maskrcnn(data_dir, run, config=2, epochs_heads=1, epochs_all=2, resume=True)
    res = CliRunner().invoke(main, ["train", "maskrcnn", str(data_dir), "--out", str(tmp_path / "r2"),
                                    "--weights-backbone", str(tmp_path / "nothing.pth")])
    assert res.exit_code == 1 and "error:" in res.output and "Traceback" not in res.output


class _Stop(Exception):
    pass


@pytest.mark.slow
def test_interrupted_training_resumes_to_the_same_weights(data_dir, tmp_path):
    """Stopped in the middle of the heads phase (optimizer state restored) and resumed through the
    phase change, a run ends exactly where an uninterrupted one ends (CPU, one thread)."""
    from tio2fiji.models.checkpoint import load_checkpoint
    from tio2fiji.training import train_maskrcnn

    kw = dict(config=1, seed=4, threads=1, epochs_heads=2, epochs_all=1, batch_size=1,
              score_threshold=0.99, val_loss=False)

    def stop(done, total, name):
        if name.startswith("epoch 2/3") and " loss " in name:  # after a step of epoch 2: it is lost
            raise _Stop

    with pytest.raises(_Stop):
        train_maskrcnn(data_dir, tmp_path / "a", progress=stop, **kw)
    assert load_checkpoint(tmp_path / "a" / "last.pt")["epoch"] == 1
    res = train_maskrcnn(data_dir, tmp_path / "a", resume=True, **kw)
    assert res["resumed_from"] == 1
    train_maskrcnn(data_dir, tmp_path / "b", **kw)
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    assert a["epoch"] == b["epoch"] == 3
    for k, v in b["model"].items():
        assert torch.equal(a["model"][k], v), k
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]


def test_segment_runs_mask_rcnn_with_its_stored_score_threshold(model1, monkeypatch):
    """predict.segment takes a Mask R-CNN unchanged: labels, scores and the detection score
    threshold stored with the model (not a fixed 0.5)."""
    from tio2fiji.models import Model, ModelSettings
    from tio2fiji.predict import segment

    used = []

    def detect(model, images, score_threshold=0.5, regions=None):
        used.append(score_threshold)
        return _fake_detect(model, images, score_threshold, regions)

    monkeypatch.setattr(P._maskrcnn, "detect", detect)
    img, mask = _blobs((256, 256), 12, seed=5, rmin=4, rmax=9)
    settings = ModelSettings.from_config({"arch": "maskrcnn", "score_threshold": 0.2, "threshold": 0.5})
    seg = segment(Model(model1, settings), img)
    assert used and set(used) == {0.2}
    assert seg.info["arch"] == "maskrcnn" and seg.info["score_threshold"] == 0.2
    assert seg.labels.dtype == np.uint32 and len(seg.scores) == seg.labels.max() > 0
    assert np.array_equal(seg.mask, seg.labels > 0)
    assert seg.labels.max() == connected_components(mask, 4).max()
    with pytest.raises(InputError, match="own particles"):
        segment(model1, img, separate="watershed")
