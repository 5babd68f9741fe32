"""The pinned torch/torchvision pair and segmentation-models-pytorch really run on the CPU."""

import torch


def test_torchvision_nms_runs_on_cpu():
    import torchvision

    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7])
    # boxes 0 and 1 overlap with IoU 81/119 = 0.68 > 0.5, so box 1 is suppressed
    keep = torchvision.ops.nms(boxes, scores, iou_threshold=0.5)
    assert keep.tolist() == [0, 2]


def test_smp_unet_forward_on_cpu():
    import segmentation_models_pytorch as smp

    torch.manual_seed(0)
    model = smp.Unet("resnet18", encoder_weights=None, in_channels=1, classes=1).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 1, 64, 64))
    assert out.shape == (2, 1, 64, 64)
    assert torch.isfinite(out).all()
