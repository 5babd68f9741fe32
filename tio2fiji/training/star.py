"""The star-convex U-Net recipe: a U-Net that knows where one particle ends.

The network (:func:`tio2fiji.models.unet.build_unet` with ``2 + n_rays`` output channels,
``model_config["outputs"] = "star"``) predicts, per pixel, the particle logit of the one-output
U-Net, and StarDist's two maps (:func:`tio2fiji.instances.star_targets`): the object probability
and the distances to the particle's edge along ``n_rays`` rays. Touching particles that one mask
cannot tell apart get separate centres and separate polygons
(:func:`tio2fiji.instances.labels_from_star`).

Read :func:`train_star` top to bottom: training crops are drawn as for the one-output U-Net
(:class:`tio2fiji.training.datasets.RandomCropDataset`, the thesis's augmentation) from the
*label images* of the manual masks (4-connected components: the BAM masks separate touching
particles by one-pixel gaps), so that rotations keep particles apart, and the targets are made
from each augmented crop. The loss (:func:`make_star_loss`) is the one-output U-Net's loss on the
particle channel, StarDist's binary cross-entropy on the object probability and its
object-probability-weighted L1 loss on the ray distances. After every epoch the model segments the
whole validation images and the engine keeps the epoch with the best F1 at IoU 0.5 (one-to-one
matching, pooled over the images) as ``best.pt``; the history's ``val_iou`` column holds the
validation *pixel* IoU and ``val_f1`` the selection score.

A run can start from a one-output U-Net (``init``, e.g. the bundled model, which was trained on the
same training images): its encoder, decoder and particle head are kept; the object-probability
head starts as a copy of the particle head; the ray head starts at zero weights and a bias of
``ray_bias`` pixels (outputs are in units of ``ray_scale`` pixels).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from ..instances import CONNECTIVITY, STAR_DEFAULTS, connected_components, labels_from_star, star_targets
from ..metrics import instance_scores, match_counts, match_instances
from ..models.checkpoint import checkpoint_contents, load_checkpoint, resolve_model
from ..models.device import resolve_device
from ..models.settings import Model, ModelSettings
from ..models.unet import build_unet, parse_config
from ..predict import predict_maps
from ..transforms import TILE
from .datasets import RandomCropDataset, load_samples, split_pairs
from .engine import (
    FitConfig,
    Recipe,
    Schedule,
    adam_optimizer,
    check_options,
    check_run_folder,
    check_schedule,
    fit,
    on_device,
    run_settings,
)
from .splits import read_split
from .unet import make_loss

__all__ = ["STAR_HISTORY_COLUMNS", "StarCropDataset", "make_star_loss", "star_samples", "validate_star",
           "train_star"]

STAR_HISTORY_COLUMNS = ["epoch", "train_loss", "val_iou", "val_f1", "lr", "seconds",
                        "fg_loss", "prob_loss", "dist_loss"]


def star_samples(pairs, data_bar_rows=None) -> list:
    """:func:`~tio2fiji.training.datasets.load_samples` with the manual masks turned into label
    images (4-connected components, uint16)."""
    samples = load_samples(pairs, data_bar_rows=data_bar_rows)
    for s in samples:
        lab = connected_components(s.mask, CONNECTIVITY)
        if lab.max() > np.iinfo(np.uint16).max:
            raise InputError(f"{s.mask_path}: more than 65535 particles in one mask.")
        s.mask = lab.astype(np.uint16)
    return samples


class StarCropDataset(RandomCropDataset):
    """Random augmented crops of label images with StarDist's targets.

    Items ``(image (1, t, t), target (2 + n_rays, t, t), valid (1, t, t))``, float32 tensors: the
    target's channels are the particle mask, the object probability and the ray distances of the
    augmented crop (:func:`tio2fiji.instances.star_targets`). Other parameters as
    :class:`~tio2fiji.training.datasets.RandomCropDataset`; ``samples`` hold label images
    (:func:`star_samples`).
    """

    def __init__(self, samples, n_rays: int = 32, **kwargs):
        super().__init__(samples, **kwargs)
        self.n_rays = int(n_rays)

    def __getitem__(self, index: int):
        import torch

        img, lab, val, _ = self.item_arrays(index)
        prob, dist = star_targets(lab.astype(np.int32), self.n_rays)
        target = np.concatenate([(lab > 0)[None].astype(np.float32), prob[None], dist])
        return (torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None],
                torch.from_numpy(target),
                torch.from_numpy(val.astype(np.float32))[None])


def make_star_loss(gap_weight: float = 10.0, ray_weight: float = 0.2, ray_scale: float = 1.0):
    """``loss(logits, target, valid) -> (loss, terms)`` on ``(N, 2 + n_rays, H, W)`` tensors.

    * particle channel: :func:`tio2fiji.training.unet.make_loss` ``("dice+bce", gap_weight)``;
    * object probability: binary cross-entropy with the target as soft label (StarDist);
    * ray distances: L1 error in pixels, weighted per pixel by the target object probability
      (StarDist's weighting: centres count most, background not at all), times ``ray_weight``
      (StarDist's default 0.2). The ray channels are in units of ``ray_scale`` pixels: an output
      of 1 is a ray of ``ray_scale`` pixels, so that Adam's small steps reach particle radii in a
      CPU budget of epochs.

    Pixels where ``valid`` is 0 count in none of the terms.
    """
    import torch.nn.functional as F

    if gap_weight < 0 or ray_weight < 0:
        raise InputError(f"gap_weight and ray_weight must be >= 0, got {gap_weight}, {ray_weight}.")
    fg_loss = make_loss("dice+bce", gap_weight)

    def loss(logits, target, valid):
        fg = fg_loss(logits[:, :1], target[:, :1], valid)
        n = valid.sum().clamp_min(1.0)
        prob = F.binary_cross_entropy_with_logits(logits[:, 1:2], target[:, 1:2], weight=valid,
                                                  reduction="sum") / n
        w = target[:, 1:2] * valid
        dist = ((logits[:, 2:] * ray_scale - target[:, 2:]).abs() * w).sum() / (w.sum().clamp_min(1e-6)
                                                                   * (logits.shape[1] - 2))
        total = fg + prob + ray_weight * dist
        return total, {"fg_loss": fg.detach(), "prob_loss": prob.detach(), "dist_loss": dist.detach()}

    return loss


def validate_star(model, samples, star: dict | None = None, threshold: float = 0.5,
                  overlap: int = 0) -> dict:
    """Segment whole validation images: mean pixel IoU and pooled F1/PQ at IoU 0.5.

    ``samples`` are :func:`star_samples` (label images); ``model`` is a
    :class:`tio2fiji.models.Model` whose settings give the ray scale (``Model(net,
    ModelSettings.from_config(model_config))``). No loss: the whole-image scores are what the run
    selects by, and a second pass over the tiles would double the validation time.
    """
    star = dict(STAR_DEFAULTS if star is None else star)
    tp = fp = fn = 0
    sum_iou, ious = 0.0, []
    for s in samples:
        # PyTorch itself: an ONNX graph of weights that change every epoch would be rebuilt each time
        maps = predict_maps(model, s.image, overlap=overlap, outputs="star", engine="torch")
        mask = maps[0] > threshold
        labels = labels_from_star(maps[1], maps[2:], mask=mask, **star)
        c = match_counts(match_instances(labels, s.mask))
        tp, fp, fn, sum_iou = tp + c["tp"], fp + c["fp"], fn + c["fn"], sum_iou + c["sum_iou"]
        gt = s.mask > 0
        union = (mask | gt).sum()
        ious.append(float((mask & gt).sum() / union) if union else 1.0)
    scores = instance_scores(tp, fp, fn, sum_iou)
    return {"val_loss": float("nan"), "val_iou": float(np.mean(ious)), "val_f1": scores["f1"],
            "val_pq": scores["pq"], "tp": tp, "fp": fp, "fn": fn}


def _init_weights(model, path, encoder: str, ray_bias: float, n_rays: int, ray_scale: float) -> None:
    """Start ``model`` from a star-convex U-Net of the same shape (all weights: a longer run), or
    from a one-output U-Net (see the module docstring); ``ray_bias`` is in output units."""
    import torch

    cfg, state, _ = checkpoint_contents(load_checkpoint(path), path)
    if cfg.get("encoder") != encoder:
        raise InputError(f"{path}: holds a {cfg.get('encoder')} U-Net, not {encoder}.")
    if cfg.get("outputs") == "star":
        if int(cfg.get("n_rays", 0)) != n_rays or float(cfg.get("ray_scale", 1.0)) != ray_scale:
            raise InputError(f"{path}: a star-convex U-Net with {cfg.get('n_rays')} rays and ray scale "
                             f"{cfg.get('ray_scale')}, not {n_rays} and {ray_scale}.")
        model.load_state_dict(state)
        return
    w, b = state.pop("segmentation_head.0.weight"), state.pop("segmentation_head.0.bias")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or set(missing) != {"segmentation_head.0.weight", "segmentation_head.0.bias"}:
        raise InputError(f"{path}: weights do not fit a {encoder} U-Net ({(missing + unexpected)[:3]}).")
    head = model.segmentation_head[0]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(float(ray_bias))
        head.weight[:2] = w.float()[:1]
        head.bias[:2] = b.float()[:1]


def train_star(data_dir, out_dir, config: str = "resnet18-scratch", n_rays: int = 32, init=None,
               epochs: int = 30, batch_size: int = 4, lr: float = 3e-4, schedule: str = "cosine",
               gap_weight: float = 10.0, ray_weight: float = 0.2, ray_bias: float = 8.0,
               ray_scale: float = 16.0,
               crops_per_epoch: int | None = None, seed: int = 0, resume: bool = False,
               images_dir=None, masks_dir=None, threads: int | None = None, overwrite: bool = False,
               progress=None, device=None) -> dict:
    """Train a star-convex U-Net on a practical-mode data folder (:func:`tio2fiji.training.build_dataset`).

    Parameters
    ----------
    data_dir : path
        Holds ``split.json``; the training and validation images are read from the folders it
        records (or ``images_dir``/``masks_dir``).
    out_dir : path
        The run folder (see :mod:`tio2fiji.training.engine`); ``best.pt`` is the epoch with the best
        validation F1.
    config : str
        One of :data:`tio2fiji.models.unet.CONFIGS` (its encoder; weights from ``init`` or scratch).
    n_rays : int
        Rays per pixel (StarDist's default 32).
    init : path, optional
        A one-output U-Net checkpoint or model file (``"default"`` for the bundled one) to start
        from (see the module docstring), or a star-convex U-Net's (all its weights: a longer run
        with a fresh optimizer and schedule).
    epochs, batch_size, lr, schedule, seed, resume, overwrite, threads, progress, device
        As :func:`tio2fiji.training.unet.fit_unet` (the validation images are segmented on the
        same device).
    gap_weight, ray_weight : float
        See :func:`make_star_loss`.
    ray_bias : float
        Initial ray length (pixels) of a fresh ray head.
    ray_scale : float
        Pixels per unit of the ray outputs (see :func:`make_star_loss`; stored with the model).
    crops_per_epoch : int, optional
        Random crops per epoch.

    Returns
    -------
    dict
        As :func:`tio2fiji.training.engine.fit`.
    """
    import torch

    device = resolve_device(device)
    check_options(epochs=epochs, batch_size=batch_size, lr=lr, gap_weight=gap_weight,
                  ray_weight=ray_weight, ray_bias=ray_bias, ray_scale=ray_scale,
                  crops_per_epoch=crops_per_epoch, threads=threads, n_rays=n_rays)
    check_run_folder(out_dir, resume, overwrite)
    check_schedule(schedule)
    if n_rays < 3:
        raise InputError(f"n_rays must be at least 3, got {n_rays}.")
    _, meta = read_split(Path(data_dir) / "split.json")
    if meta.get("mode") == "thesis":
        raise InputError(f"{data_dir}: a thesis-mode data folder (tiles); the star-convex U-Net "
                         f"trains on whole images (dataset build --mode practical).")
    train_pairs, val_pairs, meta = split_pairs(data_dir, images_dir, masks_dir)
    bar = meta.get("data_bar_rows")
    train = star_samples(train_pairs, bar)
    val = star_samples(val_pairs, bar)
    if not val:
        raise InputError(f"{data_dir}: the split has no validation images; the star-convex U-Net "
                         f"chooses its epoch on them.")
    train_ds = StarCropDataset(train, n_rays=n_rays, seed=seed, length=crops_per_epoch,
                               tile=int(meta.get("tile", TILE)))
    encoder, weights = parse_config(config)
    loss_fn = make_star_loss(gap_weight, ray_weight, ray_scale)
    init_path = None if init is None else str(resolve_model(init))

    def forward(model, batch):
        image, target, valid = on_device(batch, device)
        loss, terms = loss_fn(model(image), target, valid)
        return loss, terms, image.shape[0]

    last = {}

    def validate(model):
        last.clear()
        last.update(validate_star(Model(model, star_settings), val))
        return last["val_loss"], last["val_f1"]

    with run_settings(threads, seed):
        model = build_unet(encoder, weights if init is None else None, classes=2 + n_rays)
        if init is not None:
            _init_weights(model, init_path, encoder, ray_bias / ray_scale, n_rays, ray_scale)
        else:
            with torch.no_grad():
                model.segmentation_head[0].bias[2:] = float(ray_bias) / ray_scale
        model.to(device)

        optimizer_for = adam_optimizer(model, lr, epochs, schedule)

        model_config = {"arch": "unet", "encoder": encoder, "in_channels": 1, "classes": 2 + n_rays,
                        "outputs": "star", "n_rays": n_rays, "ray_scale": float(ray_scale),
                        "config": config, "init": init_path,
                        "threshold": 0.5, "star": dict(STAR_DEFAULTS),
                        "normalisation": "transforms.normalize_for_network"}
        star_settings = ModelSettings.from_config(model_config)  # validation reads the ray scale
        settings = {"recipe": "star", "device": str(device), "epochs": epochs, "batch_size": batch_size, "lr": lr,
                    "schedule": schedule, "gap_weight": gap_weight, "ray_weight": ray_weight,
                    "ray_bias": ray_bias, "ray_scale": ray_scale, "seed": seed, "threads": torch.get_num_threads(),
                    "train_items": len(train_ds), "val_images": [s.name for s in val],
                    "selection": "val_f1 (F1 at IoU 0.5, pooled over the validation images)",
                    "model_config": model_config, "data_dir": str(Path(data_dir).resolve())}
        run = FitConfig(out_dir, epochs, batch_size, seed, settings, model_config, STAR_HISTORY_COLUMNS,
                        loss_terms=("fg_loss", "prob_loss", "dist_loss"), resume=resume, overwrite=overwrite,
                        pin_memory=device.type == "cuda", score_label="val_f1",
                        what="star-convex U-Net training", hint=" Lower lr.", progress=progress)
        return fit(run, Recipe(model, train_ds, forward, validate, Schedule(optimizer_for),
                               extra_scores=lambda: dict(last)))
