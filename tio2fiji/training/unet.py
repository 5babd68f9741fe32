"""The U-Net recipe (thesis §3.2): Dice (+ BCE) loss, Adam, validation IoU per image.

Read :func:`train_unet` top to bottom: it builds the datasets of a data folder
(:func:`tio2fiji.training.training_datasets`) and the configuration's network
(:mod:`tio2fiji.models.unet`) from the seed, and :func:`fit_unet` trains it with the engine
(:func:`tio2fiji.training.engine.fit`): one epoch is a pass over the training dataset (the loss of
:func:`make_loss`, Adam with a constant or cosine learning rate), then the validation dataset (loss
and IoU, :func:`evaluate`); checkpoints, resume, ``history.csv`` (:data:`HISTORY_COLUMNS`) and the
curves are the engine's.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..models.checkpoint import checkpoint_contents, load_checkpoint, resolve_model
from ..models.device import resolve_device
from ..models.unet import build_unet, parse_config
from .datasets import training_datasets
from .engine import (
    FitConfig,
    Recipe,
    adam_schedule,
    check_options,
    check_run_folder,
    check_schedule,
    fit,
    on_device,
    pooled_loss_iou,
    run_settings,
)

__all__ = ["HISTORY_COLUMNS", "gap_pixels", "make_loss", "masked_iou_counts", "evaluate",
           "fit_unet", "train_unet"]

HISTORY_COLUMNS = ["epoch", "train_loss", "val_loss", "val_iou", "lr", "seconds"]
_IGNORE = 255.0  # target value of pixels that must not count (``valid`` False)


# --------------------------------------------------------------------------------------------------
# loss and metric on batches


def gap_pixels(target):
    """Thin background gaps between particles: background pixels whose two opposite neighbours
    along a row, a column or a diagonal are both particle.

    The BAM masks separate touching particles by such 1-pixel lines; a network trained with an
    unweighted loss smooths over them and touching particles merge into one.

    Parameters
    ----------
    target : tensor (N, 1, H, W)
        0/1 masks.

    Returns
    -------
    tensor of bool, same shape
    """
    import torch.nn.functional as F

    fg = F.pad(target > 0.5, (1, 1, 1, 1))
    c = fg[..., 1:-1, 1:-1]
    h, w = c.shape[-2:]

    def at(dy, dx):
        return fg[..., 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]

    between = ((at(0, -1) & at(0, 1)) | (at(-1, 0) & at(1, 0))
               | (at(-1, -1) & at(1, 1)) | (at(-1, 1) & at(1, -1)))
    return ~c & between


def make_loss(kind: str = "dice+bce", gap_weight: float = 0.0):
    """The training loss ``loss(logits, target, valid)`` on ``(N, 1, H, W)`` tensors.

    ``"dice"`` is smp's binary ``DiceLoss`` on the logits (as the thesis); ``"dice+bce"`` adds the
    binary cross-entropy. Pixels where ``valid`` is 0 (invented by a rotation) count in neither
    term: their target is set to smp's ``ignore_index``, and BCE is averaged over valid pixels only.

    ``gap_weight`` > 0 (with ``"dice+bce"``) weights the BCE of the thin gaps between touching
    particles (:func:`gap_pixels`) by ``1 + gap_weight``, in the spirit of the original U-Net's
    separation-border weights, so that the network learns to keep touching particles apart.
    """
    import torch
    import torch.nn.functional as F
    from segmentation_models_pytorch.losses import DiceLoss

    if kind not in ("dice", "dice+bce"):
        raise InputError(f"loss must be 'dice' or 'dice+bce', not {kind!r}.")
    if gap_weight < 0 or (gap_weight > 0 and kind != "dice+bce"):
        raise InputError("gap_weight must be >= 0 and needs loss 'dice+bce'.")
    dice = DiceLoss(mode="binary", from_logits=True, ignore_index=_IGNORE)

    def loss(logits, target, valid):
        t = torch.where(valid > 0, target, torch.full_like(target, _IGNORE))
        out = dice(logits, t)
        if kind == "dice+bce":
            weight = valid
            if gap_weight > 0:
                weight = valid * (1.0 + gap_weight * gap_pixels(target).to(valid.dtype))
            n = valid.sum().clamp_min(1.0)
            out = out + (F.binary_cross_entropy_with_logits(logits, target, weight=weight,
                                                            reduction="sum") / n)
        return out

    return loss


def masked_iou_counts(logits, target, valid):
    """Per item, intersection and union of ``logits > 0`` with the target, on valid pixels."""
    pred = (logits > 0) & (valid > 0)
    gt = (target > 0.5) & (valid > 0)
    inter = (pred & gt).flatten(1).sum(1)
    union = (pred | gt).flatten(1).sum(1)
    return inter, union


def evaluate(model, loader, loss_fn, groups=None):
    """Mean validation loss (per batch) and mean IoU of ``model`` on ``loader``.

    The IoU is pooled over the items of each group (the tiles of one validation image: the
    intersection and union of all its tiles) and averaged over groups, so it is the per-image mean
    IoU of the test metric. Without groups every item is its own group (the thesis's mean over
    validation tiles). Pooling matters: a tile without particles where the network marks a few
    pixels scores 0, and per-tile means jump with such tiles from epoch to epoch.
    """
    import torch

    model.eval()
    device = next(model.parameters(), torch.empty(0)).device  # the model's (a parameter-free one: the CPU)
    losses, inters, unions = [], [], []
    with torch.no_grad():
        for batch in loader:
            image, target, valid = on_device(batch, device)
            logits = model(image)
            losses.append(float(loss_fn(logits, target, valid)))
            inter, union = masked_iou_counts(logits, target, valid)
            inters += inter.tolist()
            unions += union.tolist()
    groups = list(range(len(inters))) if groups is None else list(groups)
    if len(groups) != len(inters):
        raise InputError(f"val_groups has {len(groups)} entries for {len(inters)} validation items.")
    return pooled_loss_iou(losses, inters, unions, groups)


# --------------------------------------------------------------------------------------------------
# the recipe


def fit_unet(model, train_ds, val_ds, out_dir, epochs: int = 50, batch_size: int = 4, lr: float = 1e-4,
             loss: str = "dice", gap_weight: float = 0.0, schedule: str = "constant", seed: int = 0,
             resume: bool = False, num_workers: int = 0, threads: int | None = None,
             val_batch_size: int | None = None, val_groups=None, model_config: dict | None = None,
             run_info: dict | None = None, overwrite: bool = False, progress=None, device=None) -> dict:
    """Train ``model`` on ``train_ds``, validate on ``val_ds`` every epoch, checkpoint to ``out_dir``.

    Parameters
    ----------
    model : torch.nn.Module
        Maps ``(N, 1, H, W)`` images to ``(N, 1, H, W)`` logits.
    train_ds, val_ds : torch-style map datasets
        Items ``(image, mask, valid)``, float32 tensors ``(1, H, W)`` (see
        :mod:`tio2fiji.training.datasets`). A ``set_epoch(e)`` method, if present, is called before
        every epoch.
    out_dir : path
        The run folder (see :mod:`tio2fiji.training.engine`).
    epochs : int
        Total number of epochs (a resumed run goes on up to this number).
    batch_size : int
        The thesis used 1.
    lr : float
        Adam learning rate (thesis: 1e-4).
    loss : {"dice", "dice+bce"}
    gap_weight : float
        Extra BCE weight of the gaps between touching particles (see :func:`make_loss`).
    schedule : {"constant", "cosine"}
        Learning rate: constant (thesis) or cosine annealing to 1 % of ``lr`` over ``epochs``.
    seed : int
        Seeds torch, numpy and Python, and the batch order of every epoch.
    resume : bool
        Continue from ``out_dir/last.pt`` if it exists (a fresh start otherwise), with the settings
        it was started with (more epochs and another thread count are allowed; see
        :mod:`tio2fiji.training.engine`).
    overwrite : bool
        Replace a run already in ``out_dir``; without it or ``resume`` such a folder is refused.
    num_workers : int
        DataLoader workers. Items do not depend on the worker, so any number gives the same data.
    threads : int, optional
        ``torch.set_num_threads`` for the run (restored afterwards); default: leave torch's setting.
    val_batch_size : int, optional
        Default ``2 * batch_size``.
    val_groups : sequence, optional
        Per validation item, the image it belongs to: the validation IoU is pooled over each
        image's items and averaged over images. Default: each item is its own image.
    model_config : dict, optional
        How to rebuild the model (stored in the checkpoints, used by
        :func:`tio2fiji.models.checkpoint.load_model`).
    run_info : dict, optional
        Anything else to record in ``run.json`` (data folder, split, ...).
    progress : callable, optional
        ``progress(done, total, name)`` after every training step and every epoch
        (:mod:`tio2fiji.training.engine`).
    device : str or torch.device, optional
        Where the model and its batches go (:func:`tio2fiji.models.resolve_device`; default
        ``"auto"``: the GPU when present); recorded as ``device`` in ``run.json`` and the
        checkpoints' settings (a resumed run may change it).

    Returns
    -------
    dict
        ``history`` (list of rows), ``best_epoch``, ``best_val_iou``, ``out_dir``, ``resumed_from``
        (the epoch last.pt held, or None), ``seconds`` (training time of all epochs, resumed runs
        included), ``device``.
    """
    import torch
    from torch.utils.data import DataLoader

    device = resolve_device(device)
    check_options(epochs=epochs, batch_size=batch_size, lr=lr, gap_weight=gap_weight,
                  num_workers=num_workers, threads=threads)
    check_run_folder(out_dir, resume, overwrite)
    check_schedule(schedule)
    if len(train_ds) == 0 or len(val_ds) == 0:
        raise InputError("training and validation datasets must not be empty.")
    loss_fn = make_loss(loss, gap_weight)

    def forward(model, batch):
        image, target, valid = on_device(batch, device)
        return loss_fn(model(image), target, valid), {}, image.shape[0]

    lr_schedule = adam_schedule(model, lr, epochs, schedule)

    model.to(device)  # before the optimizer is built on its parameters
    pin = device.type == "cuda"
    with run_settings(threads, seed):
        settings = {"device": str(device), "epochs": epochs, "batch_size": batch_size, "lr": lr, "loss": loss,
                    "gap_weight": gap_weight,
                    "schedule": schedule, "seed": seed, "threads": torch.get_num_threads(),
                    "val_iou": "per tile" if val_groups is None else "per image (tiles pooled)",
                    "train_items": len(train_ds), "val_items": len(val_ds),
                    "model_config": model_config or {}, **(run_info or {})}
        val_loader = DataLoader(val_ds, batch_size=val_batch_size or 2 * batch_size, shuffle=False,
                                num_workers=num_workers, pin_memory=pin)
        config = FitConfig(out_dir, epochs, batch_size, seed, settings, model_config or {},
                           HISTORY_COLUMNS, resume=resume, overwrite=overwrite, num_workers=num_workers,
                           pin_memory=pin, what="U-Net training", hint=" Lower lr.", progress=progress)
        recipe = Recipe(model, train_ds, forward, lambda m: evaluate(m, val_loader, loss_fn, val_groups),
                        lr_schedule)
        return {**fit(config, recipe), "device": str(device)}


def _init_weights(model, path, encoder: str, config: str) -> None:
    """Start a one-output U-Net from another (all weights) or from the particle head (channel 0),
    encoder and decoder of a border or distance U-Net (the bundled default)."""
    cfg, state, _ = checkpoint_contents(load_checkpoint(path), path)
    multi = cfg.get("outputs") in ("border", "distance")
    if cfg.get("encoder") != encoder or (int(cfg.get("classes", 1)) != 1 and not multi):
        raise InputError(f"{path}: holds a {cfg.get('encoder')} U-Net with {cfg.get('classes', 1)} "
                         f"output(s), not a one-output {encoder} ({config}); train border or star "
                         f"continue their own kinds.")
    if multi:
        for key in ("segmentation_head.0.weight", "segmentation_head.0.bias"):
            state[key] = state[key][:1]
    model.load_state_dict(state)


def train_unet(data_dir, out_dir, config: str = "resnet18-scratch", encoder_weights=None,
               epochs: int = 50, batch_size: int = 4, lr: float = 1e-4, loss: str = "dice",
               gap_weight: float = 0.0, schedule: str = "constant", seed: int = 0,
               resume: bool = False, init=None, crops_per_epoch: int | None = None, images_dir=None,
               masks_dir=None, num_workers: int = 0, threads: int | None = None,
               overwrite: bool = False, progress=None, device=None, scale_augmentation: dict | None = None) -> dict:
    """Train one U-Net configuration on a data folder written by
    :func:`tio2fiji.training.build_dataset`.

    Parameters
    ----------
    data_dir : path
        Holds ``split.json`` (thesis mode: and the tiles). Practical mode reads the training and
        validation images from the folders recorded there (or ``images_dir``/``masks_dir``).
    out_dir : path
        The run folder (see :mod:`tio2fiji.training.engine`).
    config : str
        One of :data:`tio2fiji.models.unet.CONFIGS` (e.g. ``"resnet18-scratch"``).
    encoder_weights : optional
        Overrides the configuration's weights (``"none"``, ``"imagenet"`` or a local file).
    init : path, optional
        Start from the weights of this checkpoint (fine-tuning; a fresh optimizer). Its encoder
        must be the configuration's.
    crops_per_epoch : int, optional
        Practical mode: random crops per epoch (default: as many as non-overlapping tiles fit).
    scale_augmentation : dict, optional
        Practical mode: zoom and coarsening of the crops
        (:data:`tio2fiji.training.datasets.SCALE_AUGMENTATION`; see
        :class:`~tio2fiji.training.datasets.RandomCropDataset`), recorded as ``train_scale``.
    Other parameters
        As :func:`fit_unet`.
    """
    # bad options, a missing GPU and a folder holding another run are refused before any data is read
    resolve_device(device)
    check_options(epochs=epochs, batch_size=batch_size, lr=lr, gap_weight=gap_weight,
                  crops_per_epoch=crops_per_epoch, num_workers=num_workers, threads=threads)
    check_run_folder(out_dir, resume, overwrite)
    encoder, weights = parse_config(config)
    if encoder_weights is not None:
        weights = encoder_weights
    train_ds, val_ds = training_datasets(data_dir, seed=seed, images_dir=images_dir,
                                         masks_dir=masks_dir, length=crops_per_epoch,
                                         scale_augmentation=scale_augmentation)
    with run_settings(threads, seed):  # the initial weights come from the seed
        model = build_unet(encoder, weights if init is None else None)
        if init is not None:
            init = resolve_model(init)  # "default" and the bundled names too
            _init_weights(model, init, encoder, config)
        weights_name = weights if weights is None or weights == "imagenet" else str(weights)
        # practical mode: validation IoU per whole validation image (its tiles pooled)
        val_groups = [k for k, _, _ in val_ds.index] if hasattr(val_ds, "index") else None
        model_config = {"arch": "unet", "encoder": encoder, "in_channels": 1, "classes": 1,
                        "config": config, "encoder_weights_at_start": weights_name,
                        "init": None if init is None else str(init),
                        "threshold": 0.5, "normalisation": "transforms.normalize_for_network",
                        **({"train_scale": train_ds.scale_settings()} if scale_augmentation else {})}
        return fit_unet(model, train_ds, val_ds, out_dir, epochs=epochs, batch_size=batch_size,
                        lr=lr, loss=loss, gap_weight=gap_weight, schedule=schedule, seed=seed,
                        resume=resume, overwrite=overwrite, num_workers=num_workers,
                        threads=threads, val_groups=val_groups, model_config=model_config,
                        run_info={"data_dir": str(Path(data_dir).resolve()), "config": config},
                        progress=progress, device=device)
