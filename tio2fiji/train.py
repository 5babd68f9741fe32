"""Training loop for the U-Net (thesis §3.2), with atomic checkpoints and resume.

Read :func:`train` top to bottom: one epoch is a pass over the training dataset (Dice loss,
optionally + BCE, Adam), then the validation dataset (loss and IoU); the history row is appended,
``last.pt`` (everything needed to continue) and, when the validation IoU improved, ``best.pt``
are written through a temporary file and ``os.replace``, so a run killed at any moment leaves the
previous complete checkpoint. ``train(..., resume=True)`` continues from ``last.pt``; with a seed
and on the CPU the resumed run ends with the same weights as an uninterrupted one, because

* the training crops depend only on ``(seed, epoch, index)`` (``dataset.RandomCropDataset``),
* the batch order comes from a generator seeded with ``(seed, epoch)``,
* model, optimizer, scheduler and the global RNG states are restored from ``last.pt``,
* ``torch.use_deterministic_algorithms(True)`` is set for the run (and restored afterwards).

The model factory is separate (:mod:`tio2fiji.models.unet`); :func:`train_unet` connects a data
folder written by ``dataset.build_dataset`` to a configuration and calls :func:`train`.

Files in ``out_dir``: ``last.pt``, ``best.pt``, ``history.csv`` (epoch, train_loss, val_loss,
val_iou, lr, seconds), ``training_curves.png`` (loss and validation IoU per epoch, like the
thesis's Fig. 28-29) and ``run.json`` (the run's settings).

The library never prints: progress goes to ``progress(kind, info)``, called with ``"batch"``
after every training step and ``"epoch"`` after every epoch (``info`` is the history row).
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path

import numpy as np

from .errors import InputError
from .io import _atomic_write, write_csv, write_json

__all__ = ["make_loss", "masked_iou_counts", "train", "train_unet", "save_checkpoint",
           "load_checkpoint", "plot_history", "HISTORY_COLUMNS"]

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


# --------------------------------------------------------------------------------------------------
# checkpoints


def save_checkpoint(path, obj) -> Path:
    """``torch.save`` through a temporary file and ``os.replace`` (never a half-written file)."""
    import torch

    return _atomic_write(Path(path), lambda p: torch.save(obj, p))


def load_checkpoint(path) -> dict:
    """Read a checkpoint written by :func:`train` (``last.pt`` or ``best.pt``)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found.")
    try:
        # our checkpoints hold tensors, numbers, strings and numpy RNG states
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise InputError(f"{path}: cannot read the checkpoint ({exc}).") from exc


def _rng_states() -> dict:
    import torch

    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _set_rng_states(states: dict) -> None:
    import torch

    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])


# --------------------------------------------------------------------------------------------------
# curves


def plot_history(history, path) -> Path:
    """Training curves like the thesis's Fig. 28-29: loss (left) and validation IoU (right)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ep = [h["epoch"] for h in history]
    fig = Figure(figsize=(10, 3.6))
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(ep, [h["train_loss"] for h in history], label="training")
    ax1.plot(ep, [h["val_loss"] for h in history], label="validation")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.legend()
    ax2.plot(ep, [h["val_iou"] for h in history], color="C2")
    if history:
        best = max(history, key=lambda h: h["val_iou"])
        ax2.scatter([best["epoch"]], [best["val_iou"]], color="C3", zorder=3,
                    label=f"best {best['val_iou']:.4f} (epoch {best['epoch']})")
        ax2.legend(loc="lower right")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation IoU")
    fig.tight_layout()
    return _atomic_write(Path(path), lambda p: fig.savefig(p, dpi=100, format="png"))


# --------------------------------------------------------------------------------------------------
# the loop


def _evaluate(model, loader, loss_fn, groups=None):
    """Mean validation loss (per batch) and mean IoU of ``model`` on ``loader``.

    The IoU is pooled over the items of each group (the tiles of one validation image: the
    intersection and union of all its tiles) and averaged over groups, so it is the per-image mean
    IoU of the test metric. Without groups every item is its own group (the thesis's mean over
    validation tiles). Pooling matters: a tile without particles where the network marks a few
    pixels scores 0, and per-tile means jump with such tiles from epoch to epoch.
    """
    import torch

    model.eval()
    losses, inters, unions = [], [], []
    with torch.no_grad():
        for image, target, valid in loader:
            logits = model(image)
            losses.append(float(loss_fn(logits, target, valid)))
            inter, union = masked_iou_counts(logits, target, valid)
            inters += inter.tolist()
            unions += union.tolist()
    groups = list(range(len(inters))) if groups is None else list(groups)
    if len(groups) != len(inters):
        raise InputError(f"val_groups has {len(groups)} entries for {len(inters)} validation items.")
    pooled: dict = {}
    for g, i, u in zip(groups, inters, unions):
        a = pooled.setdefault(g, [0, 0])
        a[0] += i
        a[1] += u
    # a group with neither predicted nor true particles is a perfect 1.0 (metrics convention)
    ious = [i / u if u else 1.0 for i, u in pooled.values()]
    return (float(np.mean(losses)) if losses else float("nan"),
            float(np.mean(ious)) if ious else float("nan"))


def train(model, train_ds, val_ds, out_dir, epochs: int = 50, batch_size: int = 4, lr: float = 1e-4,
          loss: str = "dice", gap_weight: float = 0.0, schedule: str = "constant", seed: int = 0,
          resume: bool = False, num_workers: int = 0, threads: int | None = None,
          val_batch_size: int | None = None, val_groups=None, model_config: dict | None = None, run_info: dict | None = None,
          progress=None) -> dict:
    """Train ``model`` on ``train_ds``, validate on ``val_ds`` every epoch, checkpoint to ``out_dir``.

    Parameters
    ----------
    model : torch.nn.Module
        Maps ``(N, 1, H, W)`` images to ``(N, 1, H, W)`` logits.
    train_ds, val_ds : torch-style map datasets
        Items ``(image, mask, valid)``, float32 tensors ``(1, H, W)`` (see :mod:`tio2fiji.dataset`).
        A ``set_epoch(e)`` method, if present, is called before every epoch.
    out_dir : path
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
        Continue from ``out_dir/last.pt`` if it exists (a fresh start otherwise).
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
        How to rebuild the model (stored in the checkpoints, used by ``predict.load_model``).
    run_info : dict, optional
        Anything else to record in ``run.json`` (data folder, split, ...).
    progress : callable, optional
        ``progress("batch", {"epoch", "epochs", "step", "steps", "loss"})`` after every step and
        ``progress("epoch", row)`` after every epoch.

    Returns
    -------
    dict
        ``history`` (list of rows), ``best_epoch``, ``best_val_iou``, ``out_dir``, ``resumed_from``
        (the epoch last.pt held, or None), ``seconds`` (training time of all epochs, resumed runs
        included).
    """
    import torch
    from torch.utils.data import DataLoader

    if epochs < 1 or batch_size < 1:
        raise InputError(f"epochs and batch_size must be positive, got {epochs} and {batch_size}.")
    if schedule not in ("constant", "cosine"):
        raise InputError(f"schedule must be 'constant' or 'cosine', not {schedule!r}.")
    if len(train_ds) == 0 or len(val_ds) == 0:
        raise InputError("training and validation datasets must not be empty.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    loss_fn = make_loss(loss, gap_weight)

    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    old_det_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    if threads:
        torch.set_num_threads(int(threads))
    # warn_only: an op without a deterministic CPU kernel warns instead of stopping the run
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        torch.manual_seed(seed)
        np.random.seed(seed % 2 ** 32)
        random.seed(seed)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=lr * 0.01)
                     if schedule == "cosine" else None)
        history, best_iou, best_epoch, start, resumed_from = [], -1.0, None, 1, None
        last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
        if resume and last_path.is_file():
            ck = load_checkpoint(last_path)
            model.load_state_dict(ck["model"])
            optimizer.load_state_dict(ck["optimizer"])
            if scheduler is not None and ck.get("scheduler") is not None:
                scheduler.load_state_dict(ck["scheduler"])
            _set_rng_states(ck["rng"])
            history = list(ck["history"])
            best_iou, best_epoch = ck["best_val_iou"], ck["best_epoch"]
            start = resumed_from = int(ck["epoch"])
            start += 1
        settings = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "loss": loss,
                    "gap_weight": gap_weight,
                    "schedule": schedule, "seed": seed, "threads": torch.get_num_threads(),
                    "val_iou": "per tile" if val_groups is None else "per image (tiles pooled)",
                    "train_items": len(train_ds), "val_items": len(val_ds),
                    "model_config": model_config or {}, **(run_info or {})}
        write_json(out_dir / "run.json", settings)

        val_loader = DataLoader(val_ds, batch_size=val_batch_size or 2 * batch_size, shuffle=False,
                                num_workers=num_workers)
        steps = math.ceil(len(train_ds) / batch_size)
        for epoch in range(start, epochs + 1):
            t0 = time.perf_counter()
            if hasattr(train_ds, "set_epoch"):
                train_ds.set_epoch(epoch)
            # the order of an epoch depends on (seed, epoch) only: a resumed run sees the same batches
            order = torch.Generator().manual_seed(seed * 100_003 + epoch)
            loader = DataLoader(train_ds, batch_size=batch_size, shuffle=True, generator=order,
                                num_workers=num_workers, drop_last=False)
            model.train()
            total, n = 0.0, 0
            for step, (image, target, valid) in enumerate(loader, 1):
                optimizer.zero_grad(set_to_none=True)
                batch_loss = loss_fn(model(image), target, valid)
                batch_loss.backward()
                optimizer.step()
                total += batch_loss.item() * image.shape[0]
                n += image.shape[0]
                if progress is not None:
                    progress("batch", {"epoch": epoch, "epochs": epochs, "step": step, "steps": steps,
                                       "loss": batch_loss.item()})
            current_lr = optimizer.param_groups[0]["lr"]
            if scheduler is not None:
                scheduler.step()
            val_loss, val_iou = _evaluate(model, val_loader, loss_fn, val_groups)
            row = {"epoch": epoch, "train_loss": total / max(n, 1), "val_loss": val_loss,
                   "val_iou": val_iou, "lr": current_lr, "seconds": time.perf_counter() - t0}
            history.append(row)
            improved = val_iou > best_iou
            if improved:
                best_iou, best_epoch = val_iou, epoch
            state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if improved:
                save_checkpoint(best_path, {"model": state, "model_config": model_config or {},
                                            "epoch": epoch, "val_iou": val_iou, "settings": settings})
            # last.pt is written after best.pt: if the run dies in between, resuming redoes the epoch
            save_checkpoint(last_path, {
                "model": state, "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "epoch": epoch, "rng": _rng_states(), "history": history,
                "best_val_iou": best_iou, "best_epoch": best_epoch,
                "model_config": model_config or {}, "settings": settings,
            })
            import pandas as pd

            write_csv(out_dir / "history.csv", pd.DataFrame(history, columns=HISTORY_COLUMNS))
            plot_history(history, out_dir / "training_curves.png")
            if progress is not None:
                progress("epoch", dict(row, best_val_iou=best_iou, best_epoch=best_epoch))
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det, warn_only=old_det_warn)
    return {"history": history, "best_epoch": best_epoch, "best_val_iou": best_iou,
            "out_dir": out_dir, "resumed_from": resumed_from,
            "seconds": float(sum(h["seconds"] for h in history))}


def train_unet(data_dir, out_dir, config: str = "resnet18-scratch", encoder_weights=None,
               epochs: int = 50, batch_size: int = 4, lr: float = 1e-4, loss: str = "dice",
               gap_weight: float = 0.0, schedule: str = "constant", seed: int = 0,
               resume: bool = False, init=None, crops_per_epoch: int | None = None, images_dir=None,
               masks_dir=None, num_workers: int = 0, threads: int | None = None,
               progress=None) -> dict:
    """Train one U-Net configuration on a data folder written by ``dataset.build_dataset``.

    Parameters
    ----------
    data_dir : path
        Holds ``split.json`` (thesis mode: and the tiles). Practical mode reads the training and
        validation images from the folders recorded there (or ``images_dir``/``masks_dir``).
    out_dir : path
        The run folder (see :func:`train`).
    config : str
        One of :data:`tio2fiji.models.unet.CONFIGS` (e.g. ``"resnet18-scratch"``).
    encoder_weights : optional
        Overrides the configuration's weights (``"none"``, ``"imagenet"`` or a local file).
    init : path, optional
        Start from the weights of this checkpoint (fine-tuning; a fresh optimizer). Its encoder
        must be the configuration's.
    crops_per_epoch : int, optional
        Practical mode: random crops per epoch (default: as many as non-overlapping tiles fit).
    Other parameters
        As :func:`train`.
    """
    from .dataset import training_datasets
    from .models.unet import build_unet, parse_config

    encoder, weights = parse_config(config)
    if encoder_weights is not None:
        weights = encoder_weights
    train_ds, val_ds = training_datasets(data_dir, seed=seed, images_dir=images_dir,
                                         masks_dir=masks_dir, length=crops_per_epoch)
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    torch.manual_seed(seed)  # the initial weights
    model = build_unet(encoder, weights if init is None else None)
    if init is not None:
        ck = load_checkpoint(init)
        if ck.get("model_config", {}).get("encoder") != encoder:
            raise InputError(f"{init}: holds a {ck.get('model_config', {}).get('encoder')} U-Net, "
                             f"not {encoder} ({config}).")
        model.load_state_dict(ck["model"])
    weights_name = weights if weights is None or weights == "imagenet" else str(weights)
    # practical mode: validation IoU per whole validation image (its tiles pooled)
    val_groups = [k for k, _, _ in val_ds.index] if hasattr(val_ds, "index") else None
    model_config = {"arch": "unet", "encoder": encoder, "in_channels": 1, "classes": 1,
                    "config": config, "encoder_weights_at_start": weights_name,
                    "init": None if init is None else str(init),
                    "threshold": 0.5, "normalisation": "io.normalize_for_network"}
    return train(model, train_ds, val_ds, out_dir, epochs=epochs, batch_size=batch_size, lr=lr,
                 loss=loss, gap_weight=gap_weight, schedule=schedule, seed=seed, resume=resume,
                 num_workers=num_workers, threads=threads, val_groups=val_groups, model_config=model_config,
                 run_info={"data_dir": str(Path(data_dir).resolve()), "config": config},
                 progress=progress)
