"""Mask R-CNN with the thesis's changes (§2.2.2, Table 3): the network factory.

The network is torchvision's ``maskrcnn_resnet50_fpn`` (ResNet-50 + FPN, RPN, box and mask heads),
assembled from the same public torchvision parts so that the backbone can take local weights:

* 2 classes (background, particle);
* anchor sizes 10, 24, 32, 48, 64 pixels (one per FPN level P2-P6), aspect ratios 0.5, 1, 2;
* gray input: the first convolution has one input channel and the input transform normalises with
  one mean and standard deviation (the averages of ImageNet's per-channel values, 0.449 and 0.226,
  which fit ImageNet filters summed over the colour channels);
* RoIs are assigned to FPN levels by ``k = floor(3 + log2(sqrt(wh) / 128))`` (canonical level 3,
  canonical scale 128 instead of 4 and 224; eq. 19), set through ``MultiScaleRoIAlign``'s
  ``canonical_level``/``canonical_scale`` for both the box and the mask RoIAlign;
* ``min_size = max_size = 256`` (a 256×256 tile is not resized), ``rpn_nms_thresh = 0.2``;
* the detection limits of Table 3, selectable as configurations 1-4 (:data:`CONFIGS`).

Backbone weights
----------------
``None`` / ``"none"``
    Random initialisation. As in torchvision, the backbone then uses trainable ``BatchNorm2d`` and
    all its layers are trainable.
``"imagenet"``
    ``ResNet50_Weights.IMAGENET1K_V2`` (the thesis's), read from torchvision's local cache
    (``$TORCH_HOME/hub/checkpoints/resnet50-11ad3fa6.pth``) and never downloaded: when the file is
    not there an :class:`~tio2fiji.errors.InputError` says where to put it.
    ``"IMAGENET1K_V1"`` selects the older file.
a path
    A local state dict of a torchvision ResNet-50 (``conv1.weight``, ``bn1.*``, ``layer1.*`` ...;
    ``fc.*`` is ignored; a ``backbone.body.`` prefix, as in a detection model's state dict, is
    stripped). E.g. ``torch.save(torchvision.models.resnet50(weights="IMAGENET1K_V2").state_dict(),
    "r50.pth")`` on a machine with a network.

With pretrained weights the backbone uses ``FrozenBatchNorm2d`` and, unless told otherwise, its
first two stages stay frozen (``trainable_backbone_layers=3``), as torchvision does. A 3-channel
``conv1`` is summed over its channels to one (smp's rule for gray input).

Whole-image prediction with this network is :func:`tio2fiji.predict.predict_instances`; its
detections become a label image by :func:`tio2fiji.instances.paint_instances`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from .weights import resnet_state_from_file

__all__ = ["CONFIGS", "ANCHOR_SIZES", "ASPECT_RATIOS", "CANONICAL_LEVEL", "CANONICAL_SCALE",
           "IMAGE_SIZE", "GRAY_MEAN", "GRAY_STD", "build_maskrcnn", "build_from_config",
           "model_config", "is_maskrcnn", "set_backbone_trainable"]

#: Table 3 of the thesis: the four Mask R-CNN configurations.
CONFIGS = {
    1: {"box_detections_per_img": 1500, "box_batch_size_per_image": 2000,
        "rpn_batch_size_per_image": 2000, "rpn_pre_nms_top_n_train": 3500,
        "rpn_post_nms_top_n_train": 2500, "rpn_pre_nms_top_n_test": 3500,
        "rpn_post_nms_top_n_test": 2500},
    2: {"box_detections_per_img": 2000, "box_batch_size_per_image": 2500,
        "rpn_batch_size_per_image": 2500, "rpn_pre_nms_top_n_train": 6500,
        "rpn_post_nms_top_n_train": 3000, "rpn_pre_nms_top_n_test": 5000,
        "rpn_post_nms_top_n_test": 3000},
    3: {"box_detections_per_img": 2500, "box_batch_size_per_image": 3000,
        "rpn_batch_size_per_image": 3000, "rpn_pre_nms_top_n_train": 6500,
        "rpn_post_nms_top_n_train": 3000, "rpn_pre_nms_top_n_test": 5000,
        "rpn_post_nms_top_n_test": 3000},
    4: {"box_detections_per_img": 3000, "box_batch_size_per_image": 3500,
        "rpn_batch_size_per_image": 3500, "rpn_pre_nms_top_n_train": 5500,
        "rpn_post_nms_top_n_train": 3000, "rpn_pre_nms_top_n_test": 4000,
        "rpn_post_nms_top_n_test": 3000},
}
ANCHOR_SIZES = (10, 24, 32, 48, 64)
ASPECT_RATIOS = (0.5, 1.0, 2.0)
CANONICAL_LEVEL = 3
CANONICAL_SCALE = 128
IMAGE_SIZE = 256
RPN_NMS_THRESH = 0.2
#: ImageNet's channel means and standard deviations, averaged for one gray channel.
GRAY_MEAN, GRAY_STD = 0.449, 0.226
_IMAGENET = {"imagenet": "IMAGENET1K_V2", "imagenet1k_v2": "IMAGENET1K_V2",
             "imagenet1k_v1": "IMAGENET1K_V1"}
_BODY_LAYERS = ("layer4", "layer3", "layer2", "layer1", "conv1")


# --------------------------------------------------------------------------------------------------
# building


def _parse_config(config) -> int:
    k = None
    if isinstance(config, (int, np.integer)) and not isinstance(config, bool):
        k = int(config)
    elif isinstance(config, str) and config.strip().isdigit():
        k = int(config.strip())
    if k not in CONFIGS:
        raise InputError(f"Mask R-CNN configuration must be one of 1, 2, 3, 4 (thesis Table 3), "
                         f"not {config!r}.")
    return k


def _weights_source(weights_backbone):
    """``(None | Path, name)``: the file to read (None: random initialisation) and a label for it."""
    if weights_backbone is None:
        return None, None
    if not isinstance(weights_backbone, (str, os.PathLike)):
        raise InputError(f"weights_backbone must be None, 'none', 'imagenet' or a file path, "
                         f"not {weights_backbone!r}.")
    text = str(weights_backbone)
    if text.strip().lower() in ("", "none", "scratch"):
        return None, None
    key = text.strip().lower()
    if key in _IMAGENET:
        import torch
        from torchvision.models import ResNet50_Weights

        enum = ResNet50_Weights[_IMAGENET[key]]
        # offline only: look where torchvision's downloader would have put the file
        path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(enum.url)
        if not path.is_file():
            raise InputError(
                f"ImageNet weights for the ResNet-50 backbone ({enum}) are not in the local torch "
                f"cache ({path}); tio2fiji never downloads them. On a machine with a network run "
                f"torchvision.models.resnet50(weights='{enum.name}') and copy {path.name} to that "
                f"folder (or set TORCH_HOME), or pass the file itself as the backbone weights, or "
                f"use weights 'none' to train from scratch.")
        return path, f"imagenet ({enum.name})"
    path = Path(text)
    if not path.is_file():
        raise InputError(f"backbone weights {text!r}: not 'imagenet', 'none', or an existing file "
                         f"with a ResNet-50 state dict.")
    return path, str(path)


def _backbone_state(path: Path) -> dict:
    """A ResNet-50 state dict from a file, keys as in ``model.backbone.body``, conv1 for 1 channel."""
    state = resnet_state_from_file(path, strip=("module.", "backbone.body.", "body."),
                                   drop=("fc.", "backbone.", "roi_heads.", "rpn."),
                                   what="backbone weights", arch="ResNet-50")
    w = state["conv1.weight"]
    if w.dim() == 4 and w.shape[1] == 3:
        state["conv1.weight"] = w.sum(dim=1, keepdim=True)  # gray input: sum the colour filters
    return state


def set_backbone_trainable(model, layers: int) -> None:
    """Make the last ``layers`` stages of the ResNet body trainable and freeze the others.

    0 freezes the whole body (the heads phase); 5 makes everything trainable (``bn1`` included),
    as torchvision's ``trainable_backbone_layers``. The FPN, RPN and RoI heads are always trainable.
    """
    layers = int(layers)
    if not 0 <= layers <= 5:
        raise InputError(f"trainable backbone layers must be in 0..5, got {layers}.")
    train = list(_BODY_LAYERS[:layers]) + (["bn1"] if layers == 5 else [])
    for name, p in model.backbone.body.named_parameters():
        p.requires_grad_(any(name.startswith(t) for t in train))


def build_maskrcnn(config=1, weights_backbone=None, trainable_backbone_layers: int | None = None,
                   num_classes: int = 2, norm: str | None = None, **overrides):
    """Mask R-CNN (ResNet-50 FPN) with the thesis's changes and one Table 3 configuration.

    Parameters
    ----------
    config : {1, 2, 3, 4}
        Row of :data:`CONFIGS` (thesis Table 3).
    weights_backbone : None, "none", "imagenet" or path
        See the module docstring. Never downloads.
    trainable_backbone_layers : int, optional
        0-5 stages of the ResNet trainable from the last one; default 3 with pretrained weights and
        5 without (torchvision's rule).
    num_classes : int
        Including the background (2: background, particle).
    norm : {"frozen", "batch"}, optional
        Normalisation layers of the backbone; default ``"frozen"`` (``FrozenBatchNorm2d``) with
        pretrained weights, ``"batch"`` without (as torchvision). Used when rebuilding a model from
        a checkpoint, whose weights must fit the same layers.
    **overrides
        Any other ``torchvision.models.detection.MaskRCNN`` argument (e.g. ``box_score_thresh``),
        or a Table 3 value to change.

    Returns
    -------
    torchvision.models.detection.MaskRCNN
        Takes a list of ``(1, H, W)`` float tensors in ``[0, 1]``. The attribute
        ``tio2fiji_model_config`` holds what :func:`build_from_config` needs to rebuild it.
    """
    from torch import nn
    from torchvision.models import resnet50
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.ops import MultiScaleRoIAlign
    from torchvision.ops import misc as misc_nn_ops
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    k = _parse_config(config)
    path, weights_name = _weights_source(weights_backbone)
    pretrained = path is not None
    if norm is None:
        norm = "frozen" if pretrained else "batch"
    if norm not in ("frozen", "batch"):
        raise InputError(f"norm must be 'frozen' or 'batch', not {norm!r}.")
    if trainable_backbone_layers is None:
        trainable_backbone_layers = 3 if pretrained else 5
    reserved = {"min_size", "max_size", "image_mean", "image_std", "rpn_anchor_generator",
                "box_roi_pool", "mask_roi_pool", "num_classes"}
    bad = sorted(set(overrides) & reserved)
    if bad:
        raise InputError(f"build_maskrcnn: {', '.join(bad)} are fixed by the thesis's model.")

    norm_layer = misc_nn_ops.FrozenBatchNorm2d if norm == "frozen" else nn.BatchNorm2d
    body = resnet50(weights=None, norm_layer=norm_layer)
    body.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    nn.init.kaiming_normal_(body.conv1.weight, mode="fan_out", nonlinearity="relu")  # as ResNet's
    if pretrained:
        state = _backbone_state(path)
        try:
            res = body.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shape mismatches
            raise InputError(f"{path}: weights do not fit a ResNet-50 "
                             f"({' '.join(str(exc).split())[:300]}).") from exc
        missing = [k for k in res.missing_keys
                   if not k.startswith("fc.") and not k.endswith("num_batches_tracked")]
        unexpected = list(res.unexpected_keys)
        if missing or unexpected:
            raise InputError(f"{path}: not a ResNet-50 state dict (missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]}).")
    backbone = BackboneWithFPN(body, return_layers={"layer1": "0", "layer2": "1", "layer3": "2",
                                                    "layer4": "3"},
                               in_channels_list=[256, 512, 1024, 2048], out_channels=256,
                               extra_blocks=LastLevelMaxPool())
    anchors = AnchorGenerator(sizes=tuple((s,) for s in ANCHOR_SIZES),
                              aspect_ratios=(ASPECT_RATIOS,) * len(ANCHOR_SIZES))
    levels = ["0", "1", "2", "3"]
    box_pool = MultiScaleRoIAlign(levels, output_size=7, sampling_ratio=2,
                                  canonical_scale=CANONICAL_SCALE, canonical_level=CANONICAL_LEVEL)
    mask_pool = MultiScaleRoIAlign(levels, output_size=14, sampling_ratio=2,
                                   canonical_scale=CANONICAL_SCALE, canonical_level=CANONICAL_LEVEL)
    kwargs = dict(CONFIGS[k], rpn_nms_thresh=RPN_NMS_THRESH)
    kwargs.update(overrides)
    model = MaskRCNN(backbone, num_classes=int(num_classes), min_size=IMAGE_SIZE, max_size=IMAGE_SIZE,
                     image_mean=[GRAY_MEAN], image_std=[GRAY_STD], rpn_anchor_generator=anchors,
                     box_roi_pool=box_pool, mask_roi_pool=mask_pool, **kwargs)
    set_backbone_trainable(model, trainable_backbone_layers)
    model.tio2fiji_model_config = {
        "arch": "maskrcnn", "config": k, "num_classes": int(num_classes), "in_channels": 1,
        "norm": norm, "trainable_backbone_layers": int(trainable_backbone_layers),
        "image_size": IMAGE_SIZE, "weights_backbone_at_start": weights_name,
        "overrides": dict(overrides), "normalisation": "transforms.normalize_for_network",
    }
    return model


def model_config(model) -> dict:
    """What :func:`build_from_config` needs to rebuild ``model`` (stored in checkpoints)."""
    cfg = getattr(model, "tio2fiji_model_config", None)
    if not cfg:
        raise InputError("model_config: not a model built by tio2fiji.models.maskrcnn.build_maskrcnn.")
    return dict(cfg)


def build_from_config(cfg: dict):
    """Rebuild the (untrained) network a checkpoint's ``model_config`` describes.

    The weights are then loaded from the checkpoint; backbone weights are never read or downloaded
    here. ``cfg`` must hold ``"arch": "maskrcnn"`` and ``"config"`` (1-4).
    """
    if not isinstance(cfg, dict) or cfg.get("arch") != "maskrcnn":
        arch = cfg.get("arch") if isinstance(cfg, dict) else None
        raise InputError(f"build_from_config: model_config is for architecture {arch!r}, not 'maskrcnn'.")
    if "config" not in cfg:
        raise InputError("build_from_config: model_config has no 'config' (1-4).")
    model = build_maskrcnn(cfg["config"], weights_backbone=None,
                           trainable_backbone_layers=cfg.get("trainable_backbone_layers"),
                           num_classes=int(cfg.get("num_classes", 2)), norm=cfg.get("norm", "batch"),
                           **(cfg.get("overrides") or {}))
    model.tio2fiji_model_config = dict(cfg)
    return model


def is_maskrcnn(model) -> bool:
    """True for a torchvision Mask R-CNN (what :func:`tio2fiji.predict.predict_instances` takes)."""
    from torchvision.models.detection import MaskRCNN

    return isinstance(model, MaskRCNN)
