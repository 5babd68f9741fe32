"""Issue 14's Mask R-CNN levers (in progress): anchors from the particles, backbones, U-Net init,
mask resolution. Expectations are hand-computed or read from the files independently."""

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
    ck = load_checkpoint(resolve_model("default"))
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
