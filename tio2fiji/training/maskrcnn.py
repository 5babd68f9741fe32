"""The Mask R-CNN recipe (thesis §3.2.1): instance data from the COCO export, two-phase SGD.

Read :func:`train_maskrcnn` top to bottom: the training and validation tiles of a data folder's
``coco.json`` (:class:`tio2fiji.training.CocoInstanceDataset`), one Table 3 configuration built
from the seed (:mod:`tio2fiji.models.maskrcnn`), then the engine
(:func:`tio2fiji.training.engine.fit`) runs the :class:`TwoPhaseSchedule`: a "heads" phase with the
ResNet body frozen and an "all" phase over the whole network, each with a fresh SGD optimizer and
the learning rate of :func:`two_phase_lr`; validation is :func:`evaluate` (the IoU of the painted
instances).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..instances import paint_instances, paste_masks
from ..models.device import resolve_device
from ..models.maskrcnn import (
    BOX_HEAD_DIM,
    DEFAULT_BACKBONE,
    anchor_sizes_from_masks,
    build_maskrcnn,
    model_config,
    set_backbone_trainable,
)
from ..predict import detect
from .coco import CocoInstanceDataset, collate_detection
from .engine import (
    FitConfig,
    Recipe,
    Schedule,
    check_options,
    check_run_folder,
    fit,
    pooled_loss_iou,
    run_settings,
)

__all__ = ["MASKRCNN_HISTORY_COLUMNS", "two_phase_lr", "warmup_factor", "TwoPhaseSchedule", "evaluate",
           "train_maskrcnn"]

#: history.csv of a Mask R-CNN run: the U-Net's columns, the phase, and the five loss terms.
MASKRCNN_HISTORY_COLUMNS = ["epoch", "phase", "train_loss", "val_loss", "val_iou", "lr", "seconds",
                            "loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness",
                            "loss_rpn_box_reg"]
_LOSS_TERMS = MASKRCNN_HISTORY_COLUMNS[7:]


def two_phase_lr(epoch: int, epochs_heads: int, epochs_all: int, lr: float = 0.01,
                 lr_final: float = 1e-5) -> float:
    """Learning rate of ``epoch`` (1-based): ``lr`` for the first half of each phase (rounded up),
    ``lr_final`` for the rest (thesis: 0.01 for 15 of 30 head epochs, then 1e-5; the same over the
    50 epochs of the whole network)."""
    if epoch <= epochs_heads:
        i, n = epoch, epochs_heads
    else:
        i, n = epoch - epochs_heads, epochs_all
    return lr if i <= math.ceil(n / 2) else lr_final


def warmup_factor(step: int, warmup_iters: int, start_factor: float = 0.001) -> float:
    """Factor on the learning rate at ``step`` (1-based) of a phase: linear from ``start_factor``
    to 1 over ``warmup_iters`` steps, then 1 (torchvision's detection references: 1000 steps from
    0.001)."""
    if warmup_iters <= 0 or step >= warmup_iters:
        return 1.0
    alpha = step / warmup_iters
    return start_factor * (1.0 - alpha) + alpha


def _batchnorm_eval(model) -> None:
    from torch import nn

    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def evaluate(model, val_ds, batch_size, groups, score_threshold, mask_threshold, with_loss, device):
    """Mean validation loss and per-image IoU of the union of predicted masks with the truth.

    The loss is the training loss on the validation items, computed without gradients and with
    every BatchNorm layer in eval mode (torchvision returns losses only in training mode; NaN when
    ``with_loss`` is False). The IoU is pooled over each group's tiles on valid pixels and averaged
    over groups, as the U-Net's (:func:`tio2fiji.training.unet.evaluate`).
    """
    import torch
    from torch.utils.data import DataLoader

    loader = DataLoader(val_ds, batch_size=batch_size, shuffle=False, collate_fn=collate_detection)
    losses, inters, unions = [], [], []
    was_training = model.training
    try:
        for images, targets, valids in loader:
            if with_loss:
                model.train()
                _batchnorm_eval(model)
                with torch.no_grad():
                    out = model([im.to(device) for im in images],
                                [{k: v.to(device) for k, v in t.items()} for t in targets])
                losses.append(float(sum(out.values())))
            dets = detect(model, [im[0].numpy() for im in images], score_threshold)
            for d, t, v in zip(dets, targets, valids):
                shape = tuple(v.shape)
                inst = [(float(s), y, x, p) for s, (y, x, p)
                        in zip(d["scores"], paste_masks(d["masks"], d["boxes"], shape))]
                pred = (paint_instances(shape, inst, mask_threshold)[0] > 0) & v.numpy()
                gt = t["masks"].numpy().any(axis=0) & v.numpy() if len(t["masks"]) else np.zeros(shape, bool)
                inters.append(int((pred & gt).sum()))
                unions.append(int((pred | gt).sum()))
    finally:
        model.train(was_training)
    return pooled_loss_iou(losses, inters, unions, groups)


@dataclass
class TwoPhaseSchedule(Schedule):
    """The thesis's schedule (:func:`train_maskrcnn`): a "heads" phase of ``epochs_heads`` epochs with
    the ResNet body frozen, then an "all" phase of ``epochs_all`` epochs (``train_layers`` backbone
    stages trained), each with a fresh SGD optimizer at the rate of :func:`two_phase_lr` after its
    own warm-up of ``warmup_iters`` steps (:func:`warmup_factor`); ``best.pt`` comes from the
    whole-network phase (from the heads phase when ``epochs_all`` is 0), as the thesis checkpointed.
    """

    model: Any
    epochs_heads: int
    epochs_all: int
    lr: float
    lr_final: float
    momentum: float
    weight_decay: float
    warmup_iters: int
    train_layers: int

    def phase_of(self, epoch: int) -> str:
        return "heads" if epoch <= self.epochs_heads else "all"

    def optimizer_for(self, phase):
        import torch

        # a new phase: another set of trainable parameters and a fresh optimizer
        set_backbone_trainable(self.model, 0 if phase == "heads" else self.train_layers)
        params = [p for p in self.model.parameters() if p.requires_grad]
        return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay), None

    def epoch_lr(self, epoch: int) -> float:
        return two_phase_lr(epoch, self.epochs_heads, self.epochs_all, self.lr, self.lr_final)

    def step_lr(self, epoch: int, step: int, steps: int) -> float | None:
        # each phase has a fresh optimizer and gets its own warm-up
        first = 1 if epoch <= self.epochs_heads else self.epochs_heads + 1
        f = warmup_factor((epoch - first) * steps + step, self.warmup_iters)
        return None if f == 1.0 else self.epoch_lr(epoch) * f

    def eligible(self, epoch: int) -> bool:
        return self.phase_of(epoch) == "all" or self.epochs_all == 0


def _check_options(out_dir, resume, overwrite, *, epochs_heads, epochs_all, batch_size, lr, lr_final,
                   warmup_iters, score_threshold, mask_threshold, **others) -> tuple:
    """Refuse a bad option or run folder in one line before anything is read; ``(epochs_heads,
    epochs_all, batch_size, warmup_iters)`` as ints."""
    check_options(epochs_heads=epochs_heads, epochs_all=epochs_all, batch_size=batch_size, lr=lr,
                  lr_final=lr_final, **others)
    if isinstance(warmup_iters, bool) or int(warmup_iters) != warmup_iters or warmup_iters < 0:
        raise InputError(f"warmup_iters must be a whole number >= 0, got {warmup_iters!r}.")
    check_run_folder(out_dir, resume, overwrite)
    epochs_heads, epochs_all, batch_size = int(epochs_heads), int(epochs_all), int(batch_size)
    if epochs_heads < 0 or epochs_all < 0 or epochs_heads + epochs_all < 1 or batch_size < 1:
        raise InputError(f"epochs_heads and epochs_all must be >= 0 with at least one epoch, and "
                         f"batch_size positive; got {epochs_heads}, {epochs_all}, {batch_size}.")
    if not (lr > 0 and lr_final > 0):
        raise InputError(f"lr and lr_final must be positive, got {lr} and {lr_final}.")
    if not (0.0 <= score_threshold <= 1.0 and 0.0 <= mask_threshold < 1.0):
        raise InputError("score_threshold must be in [0, 1] and mask_threshold in [0, 1).")
    return epochs_heads, epochs_all, batch_size, int(warmup_iters)


def _datasets(data_dir, seed: int, photometric_p: float, crops_per_epoch, anchor_sizes):
    """The training and validation tiles of ``coco.json``, and the anchor sizes (``"auto"``: from
    the training particles' areas)."""
    train_ds = CocoInstanceDataset(data_dir, "train", seed=seed, augment=True,
                                   photometric_p=photometric_p, length=crops_per_epoch)
    val_ds = CocoInstanceDataset(data_dir, "val", seed=seed, augment=False, photometric_p=0.0)
    if len(train_ds) == 0 or len(val_ds) == 0:
        raise InputError(f"{data_dir}: coco.json has {len(train_ds)} training and {len(val_ds)} "
                         f"validation tiles; both are needed.")
    if isinstance(anchor_sizes, str):
        if anchor_sizes.strip().lower() != "auto":
            raise InputError(f"anchor_sizes must be 'auto', None or 5 sizes in pixels, not {anchor_sizes!r}.")
        anchor_sizes = anchor_sizes_from_masks([a["area"] for anns in train_ds.annotations
                                                for a in anns if a.get("area", 0) > 0])
    return train_ds, val_ds, anchor_sizes


def _forward(model, batch, device):
    """The engine's ``forward``: the five loss terms of a detection batch and their sum."""
    images, targets, _ = batch
    images = [im.to(device, non_blocking=True) for im in images]
    targets = [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]
    loss_dict = model(images, targets)
    return sum(loss_dict.values()), loss_dict, len(images)


def _check_resume(wanted: dict, ck: dict, path) -> None:
    """Refuse a ``last.pt`` that holds another network than the ``wanted`` configuration."""
    old = ck.get("model_config") or {}
    keys = ("config", "norm", "backbone", "mask_resolution", "anchor_sizes", "box_head_dim")
    if old.get("arch") != "maskrcnn" or any(old.get(k) != wanted[k] for k in keys):
        def say(c):
            return ", ".join(f"{'configuration' if k == 'config' else k} {c.get(k)}" for k in keys)
        raise InputError(f"{path}: holds a {old.get('arch')} model ({say(old)}), not the Mask R-CNN "
                         f"asked for ({say(wanted)}); use another output folder or the same settings.")


def train_maskrcnn(data_dir, out_dir, config=1, weights_backbone=None, epochs_heads: int = 30,
                   epochs_all: int = 50, batch_size: int = 2, lr: float = 0.01, lr_final: float = 1e-5,
                   momentum: float = 0.9, weight_decay: float = 1e-4, clip_grad_norm: float | None = 5.0,
                   trainable_backbone_layers: int | None = None, seed: int = 0, resume: bool = False,
                   threads: int | None = None, crops_per_epoch: int | None = None,
                   score_threshold: float = 0.5, mask_threshold: float = 0.5,
                   photometric_p: float = 0.4, val_loss: bool = True, num_workers: int = 0,
                   backbone: str = DEFAULT_BACKBONE, norm: str | None = None,
                   mask_resolution: int = 28, anchor_sizes=None, box_head_dim: int = BOX_HEAD_DIM,
                   warmup_iters: int = 0, overrides: dict | None = None, device=None, overwrite: bool = False,
                   progress=None) -> dict:
    """Train one Mask R-CNN configuration of the thesis (Table 3) in two phases.

    Phase 1 ("heads", ``epochs_heads`` epochs) trains the FPN, RPN and box/mask heads with the
    ResNet body frozen; phase 2 ("all", ``epochs_all`` epochs) trains the whole network (the
    backbone's ``trainable_backbone_layers``). Each phase starts a fresh SGD optimizer (momentum
    0.9) whose learning rate is ``lr`` for the first half of the phase and ``lr_final`` for the rest
    (:func:`two_phase_lr`), after an optional linear warm-up over the phase's first
    ``warmup_iters`` steps (:func:`warmup_factor`). After every epoch the model is scored on the validation tiles
    (:func:`evaluate`); ``best.pt`` keeps the epoch with the best validation IoU of the
    whole-network phase (of the heads phase when ``epochs_all`` is 0), as the thesis
    checkpointed. Checkpoints, ``history.csv`` (:data:`MASKRCNN_HISTORY_COLUMNS`),
    ``training_curves.png``, ``run.json`` and resuming are the engine's
    (:mod:`tio2fiji.training.engine`), as for the U-Net: a resumed run on
    the CPU ends with the same weights as an uninterrupted one.

    Parameters
    ----------
    data_dir : path
        Written by :func:`tio2fiji.training.build_dataset`: its ``coco.json`` (``"train"`` and ``"val"`` image
        entries) and tiles (:class:`CocoInstanceDataset`).
    out_dir : path
        The run folder.
    config : {1, 2, 3, 4}
        Row of Table 3 (:data:`tio2fiji.models.maskrcnn.CONFIGS`).
    weights_backbone : None, "none", "imagenet" or path
        See :mod:`tio2fiji.models.maskrcnn`; never downloaded.
    epochs_heads, epochs_all : int
        Thesis: 30 and 50.
    batch_size : int
    lr, lr_final : float
        Thesis: 0.01, then 1e-5 halfway through each phase.
    momentum : float
        Thesis: 0.9.
    weight_decay : float
        Not stated in the thesis; 1e-4 as torchvision's detection references and Matterport's Mask
        R-CNN.
    clip_grad_norm : float or None
        Clip the gradients' total norm (Matterport's Mask R-CNN: 5). Without it, lr 0.01 on a
        randomly initialised network diverges in a few steps (measured). None turns it off.
    trainable_backbone_layers : int, optional
        Backbone stages trained in phase 2 (default 3 with pretrained weights, 5 without).
    seed : int
    resume : bool
        Continue from ``out_dir/last.pt`` (its configuration and settings must be these; more
        epochs, threads and device may change: :mod:`tio2fiji.training.engine`).
    overwrite : bool
        Replace a run already in ``out_dir``; without it or ``resume`` such a folder is refused.
    threads : int, optional
        ``torch.set_num_threads`` for the run (restored afterwards).
    crops_per_epoch : int, optional
        Training items per epoch (random permutations of the tiles); default one per tile.
    score_threshold, mask_threshold : float
        Used for the validation IoU and stored in the checkpoints for prediction.
    photometric_p : float
        Probability of the thesis's brightness + blur augmentation of a training item.
    val_loss : bool
        Also compute the validation loss (one more forward pass over the validation tiles).
    backbone, norm, mask_resolution, box_head_dim
        The network's levers (:func:`tio2fiji.models.maskrcnn.build_maskrcnn`); the defaults are
        the thesis's network (ResNet-50, masks 28, box head 1024).
    anchor_sizes : None, "auto" or 5 ints
        None: the thesis's (:data:`tio2fiji.models.maskrcnn.ANCHOR_SIZES`); ``"auto"``: from the
        training particles' areas in ``coco.json``
        (:func:`tio2fiji.models.maskrcnn.anchor_sizes_from_masks`).
    warmup_iters : int
        Steps of linear warm-up from 0.001 × the phase's learning rate at the start of each phase
        (0: none, the thesis's).
    overrides : dict, optional
        Table 3 values to change for this run (e.g. ``{"box_batch_size_per_image": 512}``: fewer
        sampled RoIs per tile, torchvision's number, make a CPU step about 3× faster than
        configuration 1's 2000); stored in the model's configuration.
    num_workers : int
        DataLoader workers (items do not depend on the worker).
    device : str or torch.device, optional
        Where the model and its batches go (:func:`tio2fiji.models.resolve_device`; default
        ``"auto"``: the GPU when present; recorded as ``device`` in ``run.json``). Runs on a GPU
        are not bit-for-bit reproducible.
    progress : callable, optional
        ``progress(done, total, name)`` after every training step and every epoch
        (:mod:`tio2fiji.training.engine`; ``name`` holds the phase).

    Returns
    -------
    dict
        ``history``, ``best_epoch``, ``best_val_iou``, ``out_dir``, ``resumed_from``, ``seconds``,
        ``model_config``.
    """
    import torch

    device = resolve_device(device)  # a missing GPU is refused before anything is read
    epochs_heads, epochs_all, batch_size, warmup_iters = _check_options(
        out_dir, resume, overwrite, epochs_heads=epochs_heads, epochs_all=epochs_all,
        batch_size=batch_size, lr=lr, lr_final=lr_final, warmup_iters=warmup_iters,
        score_threshold=score_threshold, mask_threshold=mask_threshold, momentum=momentum,
        weight_decay=weight_decay, clip_grad_norm=clip_grad_norm, threads=threads,
        crops_per_epoch=crops_per_epoch, num_workers=num_workers)
    train_ds, val_ds, anchor_sizes = _datasets(data_dir, seed, photometric_p, crops_per_epoch, anchor_sizes)
    val_groups = val_ds.groups()

    with run_settings(threads, seed):
        model = build_maskrcnn(config, weights_backbone,
                               trainable_backbone_layers=trainable_backbone_layers,
                               backbone=backbone, norm=norm, mask_resolution=mask_resolution,
                               anchor_sizes=anchor_sizes, box_head_dim=box_head_dim,
                               **dict(overrides or {}))
        mcfg = dict(model_config(model), score_threshold=float(score_threshold),
                    mask_threshold=float(mask_threshold), threshold=float(mask_threshold),
                    tile=int(model.transform.max_size))
        train_layers = mcfg["trainable_backbone_layers"]
        model.to(device)
        settings = {"arch": "maskrcnn", "config": mcfg["config"], "epochs_heads": epochs_heads,
                    "epochs_all": epochs_all, "batch_size": batch_size, "lr": lr,
                    "lr_final": lr_final, "momentum": momentum, "weight_decay": weight_decay,
                    "clip_grad_norm": clip_grad_norm, "trainable_backbone_layers": train_layers,
                    "seed": seed, "threads": torch.get_num_threads(), "device": str(device),
                    "photometric_p": photometric_p, "score_threshold": score_threshold,
                    "warmup_iters": warmup_iters,
                    "mask_threshold": mask_threshold,
                    "val_iou": ("per image (tiles pooled)" if len(set(val_groups)) < len(val_groups)
                                else "per tile"),
                    "train_items": len(train_ds), "val_items": len(val_ds), "model_config": mcfg,
                    "data_dir": str(Path(data_dir).resolve())}
        run = FitConfig(out_dir, epochs_heads + epochs_all, batch_size, seed, settings, mcfg,
                        MASKRCNN_HISTORY_COLUMNS, loss_terms=_LOSS_TERMS, clip_grad_norm=clip_grad_norm,
                        resume=resume, overwrite=overwrite, num_workers=num_workers,
                        pin_memory=device.type == "cuda", collate_fn=collate_detection,
                        what="Mask R-CNN training", hint=" Lower lr or keep clip_grad_norm.",
                        progress=progress)
        schedule = TwoPhaseSchedule(model, epochs_heads, epochs_all, lr, lr_final, momentum, weight_decay,
                                    warmup_iters, train_layers)
        recipe = Recipe(model, train_ds, partial(_forward, device=device),
                        lambda m: evaluate(m, val_ds, batch_size, val_groups, score_threshold,
                                           mask_threshold, val_loss, device),
                        schedule, check_resume=partial(_check_resume, mcfg))
        res = fit(run, recipe)
    return dict(res, model_config=mcfg)
