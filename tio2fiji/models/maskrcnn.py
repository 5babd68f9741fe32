"""Mask R-CNN with the thesis's changes (§2.2.2, Table 3): the network factory.

The network is torchvision's ``maskrcnn_resnet50_fpn`` (ResNet-50 + FPN, RPN, box and mask heads),
assembled from the same public torchvision parts so that the backbone can take local weights:

* 2 classes (background, particle);
* anchor sizes 10, 24, 32, 48, 64 pixels (one per FPN level P2-P6), aspect ratios 0.5, 1, 2;
* gray input: the first convolution has one input channel and the input transform normalises with
  one mean and standard deviation (the averages of ImageNet's per-channel values, 0.449 and 0.226,
  which fit ImageNet filters summed over the colour channels; with a U-Net's encoder, none: it
  saw the ``[0, 1]`` input as it is);
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
    ``ResNet50_Weights.IMAGENET1K_V2`` (the thesis's; ``IMAGENET1K_V1`` for ResNet-18/34), read from
    torchvision's local cache
    (``$TORCH_HOME/hub/checkpoints/resnet50-11ad3fa6.pth``) and never downloaded: when the file is
    not there an :class:`~tio2fiji.errors.InputError` says where to put it.
    ``"IMAGENET1K_V1"`` selects the older file.
a path
    A local state dict of a torchvision ResNet of the chosen ``backbone`` (``conv1.weight``,
    ``bn1.*``, ``layer1.*`` ...;
    ``fc.*`` is ignored; a ``backbone.body.`` prefix, as in a detection model's state dict, is
    stripped). E.g. ``torch.save(torchvision.models.resnet50(weights="IMAGENET1K_V2").state_dict(),
    "r50.pth")`` on a machine with a network.

With pretrained weights the backbone uses ``FrozenBatchNorm2d`` and, unless told otherwise, its
first two stages stay frozen (``trainable_backbone_layers=3``), as torchvision does. A 3-channel
``conv1`` is summed over its channels to one (smp's rule for gray input).

Backbone weights ``"unet"`` or a U-Net file
    The encoder of a tio2fiji U-Net, which already knows SEM particles: ``"unet"`` is the bundled
    one-output U-Net ``unet-watershed`` (:data:`tio2fiji.models.weights.BACKBONE_UNET`, a ResNet-18
    encoder), a path may be any tio2fiji U-Net model file or training ``best.pt``. smp's ResNet encoder keeps
    torchvision's parameter names, so ``encoder.layer1.0.conv1.weight`` becomes
    ``backbone.body.layer1.0.conv1.weight``; its 1-channel ``conv1`` and its BatchNorm statistics
    (learnt on SEM tiles) are used as they are. The encoder must be the chosen ``backbone``
    (ResNet-18 weights do not fit a ResNet-34 or -50): anything else is refused.

The levers beyond the thesis (issue 14), each a :func:`build_maskrcnn` parameter stored in the
model's configuration (:func:`model_config`) so that a model file rebuilds the same network; the
defaults are the thesis's network:

* ``backbone``: ``"resnet50"`` (the thesis's), ``"resnet18"`` or ``"resnet34"`` (lighter on a CPU);
  FPN over the outputs of ``layer1``-``layer4`` with 256 channels and a max-pool level P6, as
  torchvision's ``resnet_fpn_backbone``;
* ``norm``: ``"frozen"`` (``FrozenBatchNorm2d``: the statistics and affine of the weights it
  starts from, never updated; torchvision's choice with pretrained weights), ``"batch"``
  (trainable ``BatchNorm2d``, noisy at batch 2) or ``"group"`` (``GroupNorm`` with 32 groups:
  independent of the batch size). With pretrained weights and ``"group"``, the BatchNorm affine
  (``weight``, ``bias``) is carried over and its running statistics are dropped: GroupNorm
  normalises each tile by its own statistics instead;
* ``mask_resolution``: 28 (mask RoIAlign 14×14, the thesis's) or 56 (RoIAlign 28×28);
* ``anchor_sizes``: five sizes in pixels, one per FPN level P2-P6 (:func:`anchor_sizes_from_masks`
  picks them from the training particles);
* ``box_head_dim``: the representation size of the box head's two fully connected layers
  (torchvision's 1024 is 12.8 M parameters on 256·7·7 inputs, most of a ResNet-18 model's size).

Whole-image prediction with this network is :func:`tio2fiji.predict.predict_instances`; its
detections become a label image by :func:`tio2fiji.instances.paint_instances`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..instances import CONNECTIVITY, connected_components
from .weights import BACKBONE_UNET, is_model_file, load_weights_file, resnet_state, unet_encoder_state

__all__ = ["CONFIGS", "ANCHOR_SIZES", "ANCHOR_QUANTILES", "ASPECT_RATIOS", "BACKBONES", "NORMS",
           "MASK_RESOLUTIONS", "BOX_HEAD_DIM", "CANONICAL_LEVEL", "CANONICAL_SCALE", "IMAGE_SIZE",
           "GRAY_MEAN", "GRAY_STD", "build_maskrcnn", "build_from_config", "model_config",
           "is_maskrcnn", "set_backbone_trainable", "anchor_sizes_from_masks"]

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
#: Quantiles of the particles' equivalent diameters that :func:`anchor_sizes_from_masks` makes the
#: anchor sizes of P2-P6: the middle of each fifth of the particles, sorted by size.
ANCHOR_QUANTILES = (0.1, 0.3, 0.5, 0.7, 0.9)
ASPECT_RATIOS = (0.5, 1.0, 2.0)
#: Backbone -> output channels of layer1..layer4 (the FPN's inputs).
BACKBONES = {"resnet18": (64, 128, 256, 512), "resnet34": (64, 128, 256, 512),
             "resnet50": (256, 512, 1024, 2048)}
DEFAULT_BACKBONE = "resnet50"
#: Normalisation layers of the backbone body (see the module docstring).
NORMS = ("frozen", "batch", "group")
_NORM_NAMES = {"frozen": "frozen", "frozenbn": "frozen", "frozen_bn": "frozen", "batch": "batch",
               "batchnorm": "batch", "bn": "batch", "group": "group", "groupnorm": "group", "gn": "group"}
GN_GROUPS = 32
#: Side of the mask head's output: 28 (RoIAlign 14, the thesis's) or 56 (RoIAlign 28).
MASK_RESOLUTIONS = (28, 56)
#: torchvision's box head representation size (TwoMLPHead).
BOX_HEAD_DIM = 1024
CANONICAL_LEVEL = 3
CANONICAL_SCALE = 128
IMAGE_SIZE = 256
RPN_NMS_THRESH = 0.2
#: ImageNet's channel means and standard deviations, averaged for one gray channel.
GRAY_MEAN, GRAY_STD = 0.449, 0.226
#: torchvision's weights enum per backbone, and the file "imagenet" means for it.
_IMAGENET_ENUM = {"resnet18": ("ResNet18_Weights", "IMAGENET1K_V1"),
                  "resnet34": ("ResNet34_Weights", "IMAGENET1K_V1"),
                  "resnet50": ("ResNet50_Weights", "IMAGENET1K_V2")}
_IMAGENET_KEYS = ("imagenet", "imagenet1k_v1", "imagenet1k_v2")
_BODY_LAYERS = ("layer4", "layer3", "layer2", "layer1", "conv1")
_ARCH = {"resnet18": "ResNet-18", "resnet34": "ResNet-34", "resnet50": "ResNet-50"}


# --------------------------------------------------------------------------------------------------
# options


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


def _parse_backbone(backbone) -> str:
    name = str(backbone).strip().lower().replace("-", "")
    if name not in BACKBONES:
        raise InputError(f"Mask R-CNN backbone must be one of {', '.join(BACKBONES)}, not {backbone!r}.")
    return name


def _parse_norm(norm, pretrained: bool) -> str:
    if norm is None:
        return "frozen" if pretrained else "batch"
    name = _NORM_NAMES.get(str(norm).strip().lower())
    if name is None:
        raise InputError(f"norm must be one of {', '.join(NORMS)} (or batchnorm, groupnorm), "
                         f"not {norm!r}.")
    return name


def _parse_mask_resolution(value) -> int:
    if isinstance(value, bool) or value not in MASK_RESOLUTIONS:
        raise InputError(f"mask_resolution must be one of {', '.join(map(str, MASK_RESOLUTIONS))} "
                         f"(mask head output side in pixels), not {value!r}.")
    return int(value)


def _parse_anchor_sizes(sizes) -> tuple:
    if sizes is None:
        return ANCHOR_SIZES
    try:
        out = tuple(int(round(float(s))) for s in sizes)
    except (TypeError, ValueError):
        out = ()
    if len(out) != 5 or min(out) < 1:
        raise InputError(f"anchor_sizes must be 5 positive sizes in pixels, one per FPN level "
                         f"P2-P6 (e.g. {', '.join(map(str, ANCHOR_SIZES))}), not {sizes!r}.")
    return out


def _parse_box_head_dim(value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 16 <= value <= 4096:
        raise InputError(f"box_head_dim must be an integer in 16..4096 (torchvision: 1024), not {value!r}.")
    return int(value)


def anchor_sizes_from_masks(particles, quantiles=ANCHOR_QUANTILES, connectivity: int = CONNECTIVITY) -> tuple:
    """Five anchor sizes (pixels, one per FPN level P2-P6) matched to the particles' sizes.

    The rule: every particle's equivalent circular diameter ``d = sqrt(4 A / pi)`` (a disc's box
    side, the size of a square anchor around it); the sizes are the ``quantiles`` of ``d``
    (default :data:`ANCHOR_QUANTILES`, the middle of each fifth of the particles sorted by size;
    ``inverted_cdf``: each one a diameter that occurs), rounded, at least 2 and each at least one
    more than the previous one (the levels stay distinct).

    Parameters
    ----------
    particles : sequence
        Either particle areas in pixels (numbers), or label images / masks (2-D arrays; a mask of
        0/1 values is split into particles by ``connectivity``; labels are used as they are).
    quantiles : 5 floats in [0, 1]
    connectivity : {4, 8}

    Returns
    -------
    tuple of 5 int
        For :func:`build_maskrcnn` ``anchor_sizes``.
    """
    items = list(particles)
    if items and all(np.ndim(a) == 0 for a in items):
        areas = np.asarray(items, dtype=np.float64)
    else:
        found = []
        for a in items:
            a = np.asarray(a)
            if a.ndim != 2:
                raise InputError(f"anchor_sizes_from_masks: expected areas or 2-D label images, "
                                 f"got an array of shape {a.shape}.")
            lab = connected_components(a > 0, connectivity) if a.dtype == bool or a.max(initial=0) <= 1 \
                else a.astype(np.int64)
            found.append(np.bincount(lab.ravel())[1:])
        areas = np.concatenate(found) if found else np.zeros(0)
        areas = areas[areas > 0]
    q = np.asarray(quantiles, dtype=np.float64)
    if q.shape != (5,) or not np.all((q >= 0) & (q <= 1)):
        raise InputError(f"anchor_sizes_from_masks: quantiles must be 5 numbers in [0, 1], not {quantiles!r}.")
    if areas.size == 0 or not np.all(np.isfinite(areas)) or areas.min() <= 0:
        raise InputError("anchor_sizes_from_masks: no particles (positive areas) to size the anchors from.")
    d = np.sqrt(4.0 * areas / np.pi)
    sizes = []
    for v in np.quantile(d, q, method="inverted_cdf"):
        sizes.append(max(int(round(float(v))), 2, sizes[-1] + 1 if sizes else 2))
    return tuple(sizes)


# --------------------------------------------------------------------------------------------------
# backbone weights


def _weights_source(weights_backbone, backbone: str):
    """``(None | Path, name)``: the file to read (None: random initialisation) and a label for it."""
    if weights_backbone is None:
        return None, None
    if not isinstance(weights_backbone, (str, os.PathLike)):
        raise InputError(f"weights_backbone must be None, 'none', 'imagenet', 'unet' or a file path, "
                         f"not {weights_backbone!r}.")
    text = str(weights_backbone)
    key = text.strip().lower()
    if key in ("", "none", "scratch"):
        return None, None
    if key in _IMAGENET_KEYS:
        return _imagenet_file(key, backbone)
    if key == "unet":
        if not BACKBONE_UNET.is_file():
            raise InputError(f"weights_backbone 'unet': the bundled one-output U-Net ({BACKBONE_UNET}) is "
                             f"missing from this installation; give a U-Net model file instead.")
        return BACKBONE_UNET, f"unet (encoder of the bundled one-output U-Net, {BACKBONE_UNET.name})"
    path = Path(text)
    if not path.is_file():
        raise InputError(f"backbone weights {text!r}: not 'imagenet', 'unet', 'none', or an existing "
                         f"file (a {_ARCH[backbone]} state dict or a tio2fiji U-Net model file).")
    return path, str(path)


def _imagenet_file(key: str, backbone: str):
    """The local torch-cache file of ImageNet weights for ``backbone`` (never downloaded)."""
    import torch
    import torchvision.models as tvm

    enum_name, default = _IMAGENET_ENUM[backbone]
    member = default if key == "imagenet" else key.upper()
    enums = getattr(tvm, enum_name)
    if member not in enums.__members__:
        raise InputError(f"{_ARCH[backbone]} has no ImageNet weights {member} (torchvision has "
                         f"{', '.join(enums.__members__)}); use 'imagenet'.")
    enum = enums[member]
    # offline only: look where torchvision's downloader would have put the file
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(enum.url)
    if not path.is_file():
        raise InputError(
            f"ImageNet weights for the {_ARCH[backbone]} backbone ({enum}) are not in the local torch "
            f"cache ({path}); tio2fiji never downloads them. On a machine with a network run "
            f"torchvision.models.{backbone}(weights='{enum.name}') and copy {path.name} to that "
            f"folder (or set TORCH_HOME), or pass the file itself as the backbone weights, or "
            f"use weights 'none' to train from scratch.")
    return path, f"imagenet ({enum.name})"


def _backbone_state(path: Path, backbone: str, norm: str) -> tuple[dict, bool]:
    """``(state dict keyed as model.backbone.body, from a U-Net)``, conv1 for 1 channel."""
    obj = load_weights_file(path, "backbone weights")
    from_unet = is_model_file(obj)
    if from_unet:
        encoder, state = unet_encoder_state(obj, path)
        if encoder != backbone:
            raise InputError(f"{path}: the U-Net's encoder is {encoder}, which does not fit backbone "
                             f"{backbone}; use backbone {encoder!r} with these weights, or other weights.")
    else:
        state = resnet_state(obj, path, strip=("module.", "backbone.body.", "body."),
                             drop=("fc.", "backbone.", "roi_heads.", "rpn."),
                             what="backbone weights", arch=_ARCH[backbone])
    w = state["conv1.weight"]
    if w.dim() == 4 and w.shape[1] == 3:
        state["conv1.weight"] = w.sum(dim=1, keepdim=True)  # gray input: sum the colour filters
    if norm == "group":
        # GroupNorm keeps BatchNorm's affine; its statistics come from each tile, not the file
        state = {k: v for k, v in state.items()
                 if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    return state, from_unet


def _load_body(body, path: Path, backbone: str, norm: str) -> bool:
    """Load the weights file into the ResNet body; True when they came from a U-Net."""
    state, from_unet = _backbone_state(path, backbone, norm)
    name = _ARCH[backbone]
    try:
        res = body.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise InputError(f"{path}: weights do not fit a {name} "
                         f"({' '.join(str(exc).split())[:300]}).") from exc
    missing = [k for k in res.missing_keys
               if not k.startswith("fc.") and not k.endswith("num_batches_tracked")]
    unexpected = list(res.unexpected_keys)
    if missing or unexpected:
        raise InputError(f"{path}: not a {name} state dict (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}); choose the backbone these weights are for.")
    return from_unet


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


# --------------------------------------------------------------------------------------------------
# building


def _norm_layer(norm: str):
    from torch import nn
    from torchvision.ops import misc as misc_nn_ops

    if norm == "frozen":
        return misc_nn_ops.FrozenBatchNorm2d
    if norm == "batch":
        return nn.BatchNorm2d

    def group_norm(channels: int):
        groups = max(g for g in range(1, GN_GROUPS + 1) if channels % g == 0)
        return nn.GroupNorm(groups, channels)

    return group_norm


def _body(backbone: str, norm: str):
    """The ResNet of ``backbone`` with 1-channel input and ``norm`` layers (random weights)."""
    import torchvision.models as tvm
    from torch import nn

    body = getattr(tvm, backbone)(weights=None, norm_layer=_norm_layer(norm))
    body.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    nn.init.kaiming_normal_(body.conv1.weight, mode="fan_out", nonlinearity="relu")  # as ResNet's
    return body


def _heads(box_head_dim: int, num_classes: int, pool_size: int = 7) -> dict:
    """MaskRCNN arguments for a box head of ``box_head_dim`` (empty: torchvision's own 1024)."""
    if box_head_dim == BOX_HEAD_DIM:
        return {"num_classes": num_classes}  # torchvision builds them (same weights as before)
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

    return {"num_classes": None,
            "box_head": TwoMLPHead(256 * pool_size ** 2, box_head_dim),
            "box_predictor": FastRCNNPredictor(box_head_dim, num_classes),
            "mask_head": MaskRCNNHeads(256, (256, 256, 256, 256), 1),
            "mask_predictor": MaskRCNNPredictor(256, 256, num_classes)}


def build_maskrcnn(config=1, weights_backbone=None, trainable_backbone_layers: int | None = None,
                   num_classes: int = 2, norm: str | None = None, backbone: str = DEFAULT_BACKBONE,
                   mask_resolution: int = 28, anchor_sizes=None, box_head_dim: int = BOX_HEAD_DIM,
                   input_norm=None, **overrides):
    """Mask R-CNN (ResNet FPN) with the thesis's changes and one Table 3 configuration.

    Parameters
    ----------
    config : {1, 2, 3, 4}
        Row of :data:`CONFIGS` (thesis Table 3).
    weights_backbone : None, "none", "imagenet", "unet" or path
        See the module docstring. Never downloads.
    trainable_backbone_layers : int, optional
        0-5 stages of the ResNet trainable from the last one; default 3 with pretrained weights and
        5 without (torchvision's rule).
    num_classes : int
        Including the background (2: background, particle).
    norm : {"frozen", "batch", "group"}, optional
        Normalisation layers of the backbone (``"batchnorm"``/``"groupnorm"`` are accepted too);
        default ``"frozen"`` with pretrained weights, ``"batch"`` without (as torchvision).
    backbone : {"resnet50", "resnet18", "resnet34"}
        The ResNet under the FPN (thesis: ResNet-50).
    mask_resolution : {28, 56}
        Side of the predicted masks (thesis: 28).
    anchor_sizes : 5 ints, optional
        Anchor sizes of P2-P6 in pixels; default :data:`ANCHOR_SIZES` (the thesis's). See
        :func:`anchor_sizes_from_masks`.
    box_head_dim : int
        Box head representation size (torchvision and the thesis: 1024).
    input_norm : (mean, std), optional
        What the input transform subtracts and divides by. Default: ``(0, 1)`` with U-Net
        weights (the U-Net's encoder saw the ``[0, 1]`` input of
        :func:`tio2fiji.transforms.normalize_for_network` as it is), else
        ``(GRAY_MEAN, GRAY_STD)`` (ImageNet's statistics). Stored in the model's configuration.
    **overrides
        Any other ``torchvision.models.detection.MaskRCNN`` argument (e.g. ``box_score_thresh``),
        or a Table 3 value to change.

    Returns
    -------
    torchvision.models.detection.MaskRCNN
        Takes a list of ``(1, H, W)`` float tensors in ``[0, 1]``. The attribute
        ``tio2fiji_model_config`` holds what :func:`build_from_config` needs to rebuild it.
    """
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.ops import MultiScaleRoIAlign
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    k = _parse_config(config)
    backbone = _parse_backbone(backbone)
    mask_resolution = _parse_mask_resolution(mask_resolution)
    anchors_px = _parse_anchor_sizes(anchor_sizes)
    box_head_dim = _parse_box_head_dim(box_head_dim)
    path, weights_name = _weights_source(weights_backbone, backbone)
    pretrained = path is not None
    norm = _parse_norm(norm, pretrained)
    if trainable_backbone_layers is None:
        trainable_backbone_layers = 3 if pretrained else 5
    reserved = {"min_size", "max_size", "image_mean", "image_std", "rpn_anchor_generator",
                "box_roi_pool", "mask_roi_pool", "num_classes", "box_head", "box_predictor",
                "mask_head", "mask_predictor"}
    bad = sorted(set(overrides) & reserved)
    if bad:
        raise InputError(f"build_maskrcnn: {', '.join(bad)} are fixed by the thesis's model.")

    body = _body(backbone, norm)
    from_unet = pretrained and _load_body(body, path, backbone, norm)
    if from_unet and weights_name == str(path):
        weights_name = f"unet (encoder of {path})"
    if input_norm is None:
        input_norm = (0.0, 1.0) if from_unet else (GRAY_MEAN, GRAY_STD)
    mean, std = (float(v) for v in input_norm)
    if not (np.isfinite(mean) and np.isfinite(std) and std > 0):
        raise InputError(f"input_norm must be a finite mean and a positive std, not {input_norm!r}.")
    fpn = BackboneWithFPN(body, return_layers={"layer1": "0", "layer2": "1", "layer3": "2",
                                               "layer4": "3"},
                          in_channels_list=list(BACKBONES[backbone]), out_channels=256,
                          extra_blocks=LastLevelMaxPool())
    anchors = AnchorGenerator(sizes=tuple((s,) for s in anchors_px),
                              aspect_ratios=(ASPECT_RATIOS,) * len(anchors_px))
    levels = ["0", "1", "2", "3"]
    box_pool = MultiScaleRoIAlign(levels, output_size=7, sampling_ratio=2,
                                  canonical_scale=CANONICAL_SCALE, canonical_level=CANONICAL_LEVEL)
    # the mask head doubles its input (a transposed convolution): 14 -> 28, 28 -> 56
    mask_pool = MultiScaleRoIAlign(levels, output_size=mask_resolution // 2, sampling_ratio=2,
                                   canonical_scale=CANONICAL_SCALE, canonical_level=CANONICAL_LEVEL)
    kwargs = dict(CONFIGS[k], rpn_nms_thresh=RPN_NMS_THRESH)
    kwargs.update(overrides)
    model = MaskRCNN(fpn, min_size=IMAGE_SIZE, max_size=IMAGE_SIZE, image_mean=[mean],
                     image_std=[std], rpn_anchor_generator=anchors, box_roi_pool=box_pool,
                     mask_roi_pool=mask_pool, **_heads(box_head_dim, int(num_classes)), **kwargs)
    set_backbone_trainable(model, trainable_backbone_layers)
    model.tio2fiji_model_config = {
        "arch": "maskrcnn", "config": k, "num_classes": int(num_classes), "in_channels": 1,
        "backbone": backbone, "norm": norm, "trainable_backbone_layers": int(trainable_backbone_layers),
        "mask_resolution": mask_resolution, "anchor_sizes": list(anchors_px),
        "box_head_dim": box_head_dim, "image_size": IMAGE_SIZE, "input_norm": [mean, std],
        "weights_backbone_at_start": weights_name, "overrides": dict(overrides),
        "normalisation": "transforms.normalize_for_network",
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
    here. ``cfg`` must hold ``"arch": "maskrcnn"`` and ``"config"`` (1-4); files written before the
    issue-14 levers existed have none of their keys and get the thesis's network (ResNet-50,
    masks 28, :data:`ANCHOR_SIZES`, box head 1024).
    """
    if not isinstance(cfg, dict) or cfg.get("arch") != "maskrcnn":
        arch = cfg.get("arch") if isinstance(cfg, dict) else None
        raise InputError(f"build_from_config: model_config is for architecture {arch!r}, not 'maskrcnn'.")
    if "config" not in cfg:
        raise InputError("build_from_config: model_config has no 'config' (1-4).")
    model = build_maskrcnn(cfg["config"], weights_backbone=None,
                           trainable_backbone_layers=cfg.get("trainable_backbone_layers"),
                           num_classes=int(cfg.get("num_classes", 2)), norm=cfg.get("norm", "batch"),
                           backbone=cfg.get("backbone", DEFAULT_BACKBONE),
                           mask_resolution=int(cfg.get("mask_resolution", 28)),
                           anchor_sizes=cfg.get("anchor_sizes"),
                           box_head_dim=int(cfg.get("box_head_dim", BOX_HEAD_DIM)),
                           input_norm=cfg.get("input_norm", (GRAY_MEAN, GRAY_STD)),
                           **(cfg.get("overrides") or {}))
    model.tio2fiji_model_config = dict(cfg)
    return model


def is_maskrcnn(model) -> bool:
    """True for a torchvision Mask R-CNN (what :func:`tio2fiji.predict.predict_instances` takes)."""
    import sys

    # a Mask R-CNN exists only once torchvision's detection models were imported; not importing
    # them to ask keeps a U-Net's Dask worker from loading torchvision (2 s)
    detection = sys.modules.get("torchvision.models.detection")
    return detection is not None and isinstance(model, detection.MaskRCNN)
