"""Issue 14's Mask R-CNN levers: anchors from the particles, backbones, U-Net init and its input,
mask resolution, warm-up, overrides. Expectations are hand-computed or read from the files independently."""

import math

import numpy as np
import pytest
import torch

from tio2fiji.errors import InputError
from tio2fiji.models.checkpoint import load_checkpoint, resolve_model
from tio2fiji.models.maskrcnn import anchor_sizes_from_masks, build_maskrcnn


def test_anchor_sizes_are_quantiles_of_the_equivalent_diameters():
    # areas of discs with diameters 4, 8, ..., 40 px: quantiles 0.1..0.9 of 10 diameters
    d = np.arange(4, 44, 4)
    areas = np.pi * d ** 2 / 4
    assert anchor_sizes_from_masks(list(areas)) == (4, 12, 20, 28, 36)


def test_anchor_sizes_from_a_label_image_and_distinct_levels():
    lab = np.zeros((40, 40), np.int32)
    lab[:10, :10] = 1  # 100 px -> d = 11.28
    lab[20:30, 20:30] = 2
    sizes = anchor_sizes_from_masks([lab])
    assert sizes == (11, 12, 13, 14, 15)  # one diameter: each level one more than the previous
    assert round(math.sqrt(400 / math.pi)) == 11


def test_anchor_sizes_refuse_empty_input():
    with pytest.raises(InputError):
        anchor_sizes_from_masks([np.zeros((8, 8), np.uint8)])


def test_resnet18_backbone_takes_the_bundled_unet_encoder():
    model = build_maskrcnn(config=1, backbone="resnet18", weights_backbone="unet")
    from tio2fiji.models.weights import BACKBONE_UNET

    assert BACKBONE_UNET == resolve_model("unet-watershed")  # 'unet': the one-output U-Net's encoder
    ck = load_checkpoint(BACKBONE_UNET)
    entry = ck["weights"]["encoder.layer1.0.conv1.weight"]  # int8, one scale per output channel
    stored = entry["q"].float() * entry["scale"].float().reshape(-1, 1, 1, 1)
    body = model.backbone.body.layer1[0].conv1.weight.detach().float()
    assert body.shape == stored.shape == (64, 64, 3, 3)
    assert torch.allclose(body, stored, atol=1e-3)
    assert not torch.allclose(body, build_maskrcnn(config=1, backbone="resnet18").backbone.body
                              .layer1[0].conv1.weight.detach().float(), atol=1e-3)


def test_mask_resolution_56_doubles_the_mask_head_output():
    model = build_maskrcnn(config=1, backbone="resnet18", mask_resolution=56).eval()
    with torch.no_grad():
        feats = {k: torch.zeros(1, 256, s, s) for k, s in (("0", 64), ("1", 32), ("2", 16), ("3", 8))}
        boxes = [torch.tensor([[10.0, 10.0, 40.0, 40.0]])]
        pooled = model.roi_heads.mask_roi_pool(feats, boxes, [(256, 256)])
        logits = model.roi_heads.mask_predictor(model.roi_heads.mask_head(pooled))
    assert logits.shape[-2:] == (56, 56)


@pytest.mark.parametrize("m", [28, 56])
def test_exact_paste_returns_a_small_disc_that_torchvision_pastes_too_large(m):
    """A radius-4 disc's training target (torchvision's roi_align, aligned=False, as its mask loss
    makes it) pasted back into the image: the default 'exact' paste gives the disc back, torchvision's
    paste_masks_in_image rule a disc grown by a rim of pixels."""
    from torchvision.ops import roi_align

    from tio2fiji.instances import paste_masks

    yy, xx = np.mgrid[:32, :32]
    disc = ((yy - 15.5) ** 2 + (xx - 15.5) ** 2 <= 16).astype(np.float32)
    ys, xs = np.nonzero(disc)
    box = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)
    target = roi_align(torch.from_numpy(disc)[None, None], [torch.from_numpy(box)], (m, m),
                       spatial_scale=1.0, sampling_ratio=2, aligned=False)[:, 0].numpy()

    def iou(method):
        (y0, x0, patch), = paste_masks(target, box, disc.shape, method=method)
        out = np.zeros_like(disc, bool)
        out[y0:y0 + patch.shape[0], x0:x0 + patch.shape[1]] = patch >= 0.5
        return (out & (disc > 0)).sum() / (out | (disc > 0)).sum()

    assert iou("exact") == pytest.approx(1.0)
    assert iou("torchvision") < 0.8


def test_warmup_factor_is_linear_from_one_thousandth():
    from tio2fiji.training.maskrcnn import warmup_factor

    assert warmup_factor(0, 100) == pytest.approx(0.001)
    assert warmup_factor(50, 100) == pytest.approx(0.001 * 0.5 + 0.5)
    assert warmup_factor(100, 100) == 1.0 and warmup_factor(7, 0) == 1.0


def test_unet_encoder_sees_the_input_the_unet_saw():
    """With U-Net weights the detector's body must compute the U-Net encoder's features: no
    ImageNet standardisation in front of an encoder trained on [0, 1] tiles."""
    from tio2fiji.models.checkpoint import load_model

    torch.manual_seed(0)
    unet = load_model("unet-watershed").net.eval()
    model = build_maskrcnn(config=1, backbone="resnet18", weights_backbone="unet").eval()
    assert model.tio2fiji_model_config["input_norm"] == [0.0, 1.0]
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        want = unet.encoder(x)[-1]
        got = model.backbone.body(model.transform.normalize(x[0]).unsqueeze(0))["3"]  # layer4
    assert torch.allclose(got, want, atol=1e-4)
    # random weights keep ImageNet's statistics; a model file rebuilds the same transform
    plain = build_maskrcnn(config=1, backbone="resnet18")
    assert plain.transform.image_mean == [pytest.approx(0.449)]
    from tio2fiji.models.maskrcnn import build_from_config
    again = build_from_config(model.tio2fiji_model_config)
    assert again.transform.image_mean == [0.0] and again.transform.image_std == [1.0]
    old = {k: v for k, v in plain.tio2fiji_model_config.items() if k != "input_norm"}
    assert build_from_config(old).transform.image_std == [pytest.approx(0.226)]


def test_training_warms_up_and_stores_its_overrides(tmp_path):
    """One whole-network epoch of 2 steps with a 1000-step warm-up: the last step's rate is
    lr * (0.001 (1 - 2/1000) + 2/1000); the RoI sample size given as an override is the model's."""
    from PIL import Image

    from tio2fiji.training import build_dataset, train_maskrcnn

    rng = np.random.default_rng(3)
    (tmp_path / "SEM").mkdir()
    (tmp_path / "masks").mkdir()
    yy, xx = np.mgrid[:256, :256]
    for k in range(3):
        mask = np.zeros((256, 256), bool)
        for _ in range(8):
            cy, cx = rng.integers(20, 236, 2)
            mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= 36
        img = np.clip(40 + 160 * mask + rng.normal(0, 8, mask.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(tmp_path / "SEM" / f"i{k}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "masks" / f"i{k}_m.png")
    build_dataset(tmp_path / "SEM", tmp_path / "masks", tmp_path / "data", mode="practical",
                  fractions=(1 / 3, 1 / 3, 1 / 3), data_bar_rows=0)
    res = train_maskrcnn(tmp_path / "data", tmp_path / "run", backbone="resnet18", box_head_dim=32,
                         epochs_heads=0, epochs_all=1, crops_per_epoch=4, lr=0.01, warmup_iters=1000,
                         overrides={"box_batch_size_per_image": 64}, threads=1, val_loss=False,
                         score_threshold=0.99)
    assert res["history"][0]["lr"] == pytest.approx(0.01 * (0.001 * (1 - 2 / 1000) + 2 / 1000))
    ck = load_checkpoint(tmp_path / "run" / "best.pt")
    assert ck["model_config"]["overrides"] == {"box_batch_size_per_image": 64}
    assert ck["settings"]["warmup_iters"] == 1000
    with pytest.raises(InputError, match="warmup_iters"):
        train_maskrcnn(tmp_path / "data", tmp_path / "run2", warmup_iters=-1)
    # an RPN NMS chosen after training is stored beside the training's overrides and reaches the RPN
    from tio2fiji.models.checkpoint import export_model, load_model

    export_model(ck, tmp_path / "m.pt", rpn_nms_thresh=0.4)
    model = load_model(tmp_path / "m.pt")
    assert model.net.rpn.nms_thresh == 0.4 and load_model(tmp_path / "run" / "best.pt").net.rpn.nms_thresh == 0.2
    assert model.net.tio2fiji_model_config["overrides"] == {"box_batch_size_per_image": 64, "rpn_nms_thresh": 0.4}
    assert model.settings.config["overrides"] == model.net.tio2fiji_model_config["overrides"]
    with pytest.raises(InputError, match=r"rpn_nms_thresh must be in \(0, 1\]"):
        export_model(ck, tmp_path / "bad.pt", rpn_nms_thresh=1.5)


def test_max_overlap_drops_duplicates_instead_of_leaving_fragments():
    from tio2fiji.instances import paint_instances

    sq = np.ones((10, 10), np.float32)
    a = (0.9, 0, 0, sq)     # 100 px
    b = (0.8, 0, 4, sq)     # 60 of its 100 px under a: a duplicate
    c = (0.7, 0, 11, sq)    # columns 11-20: 30 px under b's rest (columns 10-13), none under a
    # without the rule b keeps its 40-pixel rest and c the 70 pixels no one took
    lab, scores, prob = paint_instances((12, 40), [a, b, c])
    assert lab.max() == 3 and np.bincount(lab.ravel())[1:].tolist() == [100, 40, 70]
    # with it b is dropped (60 % > 50 %), so c overlaps nothing and keeps all 100 pixels
    lab, scores, prob = paint_instances((12, 40), [a, b, c], max_overlap=0.5)
    assert lab.max() == 2 and np.bincount(lab.ravel())[1:].tolist() == [100, 100]
    assert scores.tolist() == pytest.approx([0.9, 0.7])
    np.testing.assert_array_equal(prob > 0.5, lab > 0)  # b's dropped mask leaves no probability
    with pytest.raises(InputError):
        paint_instances((12, 40), [a], max_overlap=1.5)
