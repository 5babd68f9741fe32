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


def _write_history(out_dir: Path, history: list, columns) -> None:
    """``history.csv`` and ``training_curves.png`` of a run so far (after every epoch)."""
    import pandas as pd

    write_csv(out_dir / "history.csv", pd.DataFrame(history, columns=columns))
    plot_history(history, out_dir / "training_curves.png")


def _start_run(threads, seed):
    """Threads, deterministic kernels and seeds for one training run; returns the function that
    puts the thread count and determinism setting back."""
    import torch

    old = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
           torch.is_deterministic_algorithms_warn_only_enabled())
    if threads:
        torch.set_num_threads(int(threads))
    # warn_only: an op without a deterministic CPU kernel warns instead of stopping the run
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(seed)
    np.random.seed(seed % 2 ** 32)
    random.seed(seed)

    def restore():
        torch.set_num_threads(old[0])
        torch.use_deterministic_algorithms(old[1], warn_only=old[2])

    return restore


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


def _pooled_loss_iou(losses, inters, unions, groups):
    """Mean loss and mean IoU per group (image) of per-item intersection/union pixel counts."""
    pooled: dict = {}
    for g, i, u in zip(groups, inters, unions):
        a = pooled.setdefault(g, [0, 0])
        a[0] += i
        a[1] += u
    # a group with neither predicted nor true particles is a perfect 1.0 (metrics convention)
    ious = [i / u if u else 1.0 for i, u in pooled.values()]
    return (float(np.mean(losses)) if losses else float("nan"),
            float(np.mean(ious)) if ious else float("nan"))


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
    return _pooled_loss_iou(losses, inters, unions, groups)


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

    restore = _start_run(threads, seed)
    try:
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
            _write_history(out_dir, history, HISTORY_COLUMNS)
            if progress is not None:
                progress("epoch", dict(row, best_val_iou=best_iou, best_epoch=best_epoch))
    finally:
        restore()
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


# --------------------------------------------------------------------------------------------------
# Mask R-CNN (thesis §3.2.1): instance data from the COCO export, two-phase SGD training

__all__ += ["MASKRCNN_HISTORY_COLUMNS", "CocoInstanceDataset", "two_phase_lr", "train_maskrcnn"]

#: history.csv of a Mask R-CNN run: the U-Net's columns, the phase, and the five loss terms.
MASKRCNN_HISTORY_COLUMNS = ["epoch", "phase", "train_loss", "val_loss", "val_iou", "lr", "seconds",
                            "loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness",
                            "loss_rpn_box_reg"]
_LOSS_TERMS = MASKRCNN_HISTORY_COLUMNS[7:]


class CocoInstanceDataset:
    """Tiles and their particle instances from the ``coco.json`` of ``dataset.build_dataset``.

    Every image entry of ``coco.json`` whose ``split`` is ``split`` is an item (entries without a
    ``split`` field are assigned by ``split.json``'s tile lists). Its instances are its
    annotations (RLE or polygons; ``iscrowd`` ones are skipped): for a data folder written by
    ``dataset build``, the 4-connected components of the mask tile, so touching particles separated
    by a 1-pixel gap are separate instances. The image is scaled by
    :func:`tio2fiji.io.normalize_for_network` with the bit depth of its source image
    (``tiles.csv``); pixels a rotation invented (``tiles.csv``'s ``valid`` files) are 0 and hold no
    instance.

    With ``augment`` every item is rotated by a random multiple of 90° and flipped left-right with
    probability 1/2 (tile and instance masks alike, exactly), then gets the thesis's photometric
    augmentation (:func:`tio2fiji.dataset.photometric`, image only). Item ``i`` of epoch ``e``
    draws from ``numpy.random.default_rng([seed, e, i])``; call :meth:`set_epoch` every epoch.

    Items are ``(image, target, valid)``: a float32 tensor ``(1, H, W)``, a torchvision detection
    target (:func:`tio2fiji.models.maskrcnn.targets_from_instances`; empty masks dropped) and a bool
    tensor ``(H, W)``.

    Parameters
    ----------
    data_dir : path
        Holds ``coco.json`` (and normally ``tiles.csv``, ``split.json``).
    split : {"train", "val", "test"}
    seed : int
    augment : bool
        Default: True for ``"train"``.
    photometric_p : float, optional
        Default 0.4 (the thesis) when augmenting, else 0.
    length : int, optional
        Items per epoch. Default: one per tile. Otherwise each epoch walks through fresh random
        permutations of the tiles (depending on ``seed`` and the epoch).
    """

    def __init__(self, data_dir, split: str = "train", seed: int = 0, augment: bool | None = None,
                 photometric_p: float | None = None, length: int | None = None):
        import json

        import pandas as pd

        self.data_dir = Path(data_dir)
        coco_path = self.data_dir / "coco.json"
        if not coco_path.is_file():
            raise InputError(f"{self.data_dir}: no coco.json; build the data set first "
                             f"(tio2fiji dataset build).")
        try:
            coco = json.loads(coco_path.read_text(encoding="utf-8"))
            images, anns = coco["images"], coco.get("annotations", [])
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{coco_path}: not a COCO annotation file ({exc}).") from exc
        names = None
        if any("split" not in im for im in images):
            split_path = self.data_dir / "split.json"
            if not split_path.is_file():
                raise InputError(f"{coco_path}: image entries have no 'split' field and there is no "
                                 f"split.json next to it; rebuild with tio2fiji dataset build.")
            from .dataset import read_split

            _, meta = read_split(split_path)
            names = set((meta.get("tiles") or {}).get(split, []))
        self.images = [im for im in images
                       if (im.get("split") == split if names is None else Path(im["file_name"]).stem in names)]
        by_image: dict = {}
        for a in anns:
            if not a.get("iscrowd", 0):
                by_image.setdefault(a["image_id"], []).append(a)
        self.annotations = [by_image.get(im["id"], []) for im in self.images]
        self.tiles = {}
        table = self.data_dir / "tiles.csv"
        if table.is_file():
            t = pd.read_csv(table, keep_default_na=False)
            self.tiles = {r["image"]: r for r in t.to_dict("records")}
        self.split = split
        self.seed = int(seed)
        self.augment = (split == "train") if augment is None else bool(augment)
        self.photometric_p = (0.4 if self.augment else 0.0) if photometric_p is None else float(photometric_p)
        self.length = None if length is None else int(length)
        if self.length is not None and self.length < 1:
            raise InputError(f"length (crops per epoch) must be positive, got {length}.")
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.images) if self.length is None else (self.length if self.images else 0)

    def groups(self) -> list:
        """Per item, the validation group: the source image in practical mode, else the tile.

        As the U-Net's validation (:func:`train_unet`): a practical data set's tiles are pooled per
        whole image, the thesis's validation tiles count one by one.
        """
        from .dataset import read_split

        mode = None
        if (self.data_dir / "split.json").is_file():
            mode = read_split(self.data_dir / "split.json")[1].get("mode")
        if mode == "practical" and self.length is None:
            return [im.get("source", im["id"]) for im in self.images]
        return list(range(len(self)))

    def _tile_index(self, index: int) -> int:
        if self.length is None:
            return index
        n = len(self.images)
        perm = np.random.default_rng([self.seed, self.epoch, 1_000_003, index // n]).permutation(n)
        return int(perm[index % n])

    def item_arrays(self, index: int):
        """``(image float32 (H, W), instance masks bool (N, H, W), valid bool (H, W))``."""
        from pycocotools import mask as mask_utils

        from .dataset import _read_tile, photometric
        from .io import normalize_for_network

        if not 0 <= index < len(self):
            raise IndexError(index)
        k = self._tile_index(index)
        entry, anns = self.images[k], self.annotations[k]
        path = self.data_dir / entry["file_name"]
        if not path.is_file():
            raise InputError(f"{path}: image of coco.json not found (was the data folder moved?).")
        raw = _read_tile(path)
        if raw.ndim == 3:  # an RGB(A) export of a gray tile
            raw = raw[..., 0]
        row = self.tiles.get(entry["file_name"], {})
        bits = row.get("bits", "")
        img = normalize_for_network(raw, bits=int(bits) if str(bits) not in ("", "nan") else None)
        h, w = img.shape
        if row.get("valid"):
            valid = _read_tile(self.data_dir / row["valid"]) > 0
        else:
            valid = np.ones((h, w), bool)
        rles = []
        for a in anns:
            seg = a["segmentation"]
            if isinstance(seg, list):  # polygons
                rles.append(mask_utils.merge(mask_utils.frPyObjects(seg, h, w)))
            elif isinstance(seg.get("counts"), list):  # uncompressed RLE
                rles.append(mask_utils.frPyObjects(seg, h, w))
            else:
                rles.append({"size": seg["size"], "counts": seg["counts"].encode("ascii")
                             if isinstance(seg["counts"], str) else seg["counts"]})
        masks = np.zeros((0, h, w), bool)
        if rles:
            import warnings

            with warnings.catch_warnings():
                # pycocotools' own numpy-2 deprecation notice, not about our data
                warnings.simplefilter("ignore", DeprecationWarning)
                masks = np.moveaxis(mask_utils.decode(rles), 2, 0) > 0
            if masks.shape[1:] != (h, w):
                raise InputError(f"{path}: coco.json masks are {masks.shape[2]}x{masks.shape[1]}, "
                                 f"the image {w}x{h}.")
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, int(index)])
            turns, mirror = int(rng.integers(4)), bool(rng.integers(2))
            img, valid = np.rot90(img, turns), np.rot90(valid, turns)
            masks = np.rot90(masks, turns, axes=(1, 2))
            if mirror:
                img, valid, masks = img[:, ::-1], valid[:, ::-1], masks[:, :, ::-1]
            img = photometric(np.ascontiguousarray(img), rng, p=self.photometric_p)
        img = np.where(valid, img, 0.0).astype(np.float32)
        return np.ascontiguousarray(img), np.ascontiguousarray(masks & valid), np.ascontiguousarray(valid)

    def __getitem__(self, index: int):
        import torch

        from .models.maskrcnn import targets_from_instances

        img, masks, valid = self.item_arrays(index)
        return torch.from_numpy(img)[None], targets_from_instances(masks), torch.from_numpy(valid)


def _collate_detection(batch):
    """Detection batches are lists: images (and targets) may differ in size and instance count."""
    return tuple(zip(*batch))


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


def _batchnorm_eval(model) -> None:
    from torch import nn

    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def _evaluate_maskrcnn(model, val_ds, batch_size, groups, score_threshold, mask_threshold,
                       with_loss, device):
    """Mean validation loss and per-image IoU of the union of predicted masks with the truth.

    The loss is the training loss on the validation items, computed without gradients and with
    every BatchNorm layer in eval mode (torchvision returns losses only in training mode; NaN when
    ``with_loss`` is False). The IoU is pooled over each group's tiles on valid pixels and averaged
    over groups, as the U-Net's :func:`_evaluate`.
    """
    import torch
    from torch.utils.data import DataLoader

    from .models.maskrcnn import _paste, detect, paint_instances

    loader = DataLoader(val_ds, batch_size=batch_size, shuffle=False, collate_fn=_collate_detection)
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
                        in zip(d["scores"], _paste(d["masks"], d["boxes"], shape))]
                pred = (paint_instances(shape, inst, mask_threshold)[0] > 0) & v.numpy()
                gt = t["masks"].numpy().any(axis=0) & v.numpy() if len(t["masks"]) else np.zeros(shape, bool)
                inters.append(int((pred & gt).sum()))
                unions.append(int((pred | gt).sum()))
    finally:
        model.train(was_training)
    return _pooled_loss_iou(losses, inters, unions, groups)


def train_maskrcnn(data_dir, out_dir, config=1, weights_backbone=None, epochs_heads: int = 30,
                   epochs_all: int = 50, batch_size: int = 2, lr: float = 0.01, lr_final: float = 1e-5,
                   momentum: float = 0.9, weight_decay: float = 1e-4, clip_grad_norm: float | None = 5.0,
                   trainable_backbone_layers: int | None = None, seed: int = 0, resume: bool = False,
                   threads: int | None = None, crops_per_epoch: int | None = None,
                   score_threshold: float = 0.5, mask_threshold: float = 0.5,
                   photometric_p: float = 0.4, val_loss: bool = True, num_workers: int = 0,
                   device=None, progress=None) -> dict:
    """Train one Mask R-CNN configuration of the thesis (Table 3) in two phases.

    Phase 1 ("heads", ``epochs_heads`` epochs) trains the FPN, RPN and box/mask heads with the
    ResNet body frozen; phase 2 ("all", ``epochs_all`` epochs) trains the whole network (the
    backbone's ``trainable_backbone_layers``). Each phase starts a fresh SGD optimizer (momentum
    0.9) whose learning rate is ``lr`` for the first half of the phase and ``lr_final`` for the rest
    (:func:`two_phase_lr`). After every epoch the model is scored on the validation tiles
    (:func:`_evaluate_maskrcnn`); ``best.pt`` keeps the epoch with the best validation IoU of the
    whole-network phase (of the heads phase when ``epochs_all`` is 0), as the thesis
    checkpointed. Checkpoints, ``history.csv`` (:data:`MASKRCNN_HISTORY_COLUMNS`),
    ``training_curves.png``, ``run.json`` and resuming work as in :func:`train`: a resumed run on
    the CPU ends with the same weights as an uninterrupted one.

    Parameters
    ----------
    data_dir : path
        Written by ``dataset.build_dataset``: its ``coco.json`` (``"train"`` and ``"val"`` image
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
        Continue from ``out_dir/last.pt`` (its configuration must be ``config``).
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
    num_workers : int
        DataLoader workers (items do not depend on the worker).
    device : str or torch.device, optional
        Default ``"cpu"``. Runs on a GPU are not bit-for-bit reproducible.
    progress : callable, optional
        ``progress("batch", {"epoch", "epochs", "step", "steps", "loss", "phase"})`` after every
        step, ``progress("epoch", row)`` after every epoch (as :func:`train`).

    Returns
    -------
    dict
        ``history``, ``best_epoch``, ``best_val_iou``, ``out_dir``, ``resumed_from``, ``seconds``,
        ``model_config``.
    """
    import torch
    from torch.utils.data import DataLoader

    from .errors import Tio2FijiError
    from .models.maskrcnn import build_maskrcnn, model_config, set_backbone_trainable

    epochs_heads, epochs_all, batch_size = int(epochs_heads), int(epochs_all), int(batch_size)
    if epochs_heads < 0 or epochs_all < 0 or epochs_heads + epochs_all < 1 or batch_size < 1:
        raise InputError(f"epochs_heads and epochs_all must be >= 0 with at least one epoch, and "
                         f"batch_size positive; got {epochs_heads}, {epochs_all}, {batch_size}.")
    if not (lr > 0 and lr_final > 0):
        raise InputError(f"lr and lr_final must be positive, got {lr} and {lr_final}.")
    if not (0.0 <= score_threshold <= 1.0 and 0.0 <= mask_threshold < 1.0):
        raise InputError("score_threshold must be in [0, 1] and mask_threshold in [0, 1).")
    train_ds = CocoInstanceDataset(data_dir, "train", seed=seed, augment=True,
                                   photometric_p=photometric_p, length=crops_per_epoch)
    val_ds = CocoInstanceDataset(data_dir, "val", seed=seed, augment=False, photometric_p=0.0)
    if len(train_ds) == 0 or len(val_ds) == 0:
        raise InputError(f"{data_dir}: coco.json has {len(train_ds)} training and {len(val_ds)} "
                         f"validation tiles; both are needed.")
    val_groups = val_ds.groups()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device or "cpu")
    epochs = epochs_heads + epochs_all

    restore = _start_run(threads, seed)
    try:
        model = build_maskrcnn(config, weights_backbone,
                               trainable_backbone_layers=trainable_backbone_layers)
        mcfg = dict(model_config(model), score_threshold=float(score_threshold),
                    mask_threshold=float(mask_threshold), threshold=float(mask_threshold),
                    tile=int(model.transform.max_size))
        train_layers = mcfg["trainable_backbone_layers"]
        model.to(device)
        history, best_iou, best_epoch, start, resumed_from = [], -1.0, None, 1, None
        opt_state, opt_phase = None, None
        last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
        if resume and last_path.is_file():
            ck = load_checkpoint(last_path)
            old = ck.get("model_config") or {}
            if old.get("arch") != "maskrcnn" or old.get("config") != mcfg["config"] \
                    or old.get("norm") != mcfg["norm"]:
                raise InputError(f"{last_path}: holds a {old.get('arch')} model (configuration "
                                 f"{old.get('config')}, norm {old.get('norm')}), not Mask R-CNN "
                                 f"configuration {mcfg['config']} (norm {mcfg['norm']}); use "
                                 f"another output folder or the same settings.")
            model.load_state_dict(ck["model"])
            _set_rng_states(ck["rng"])
            history = list(ck["history"])
            best_iou, best_epoch = ck["best_val_iou"], ck["best_epoch"]
            if epochs_all > 0 and best_epoch is not None and best_epoch <= epochs_heads:
                # a heads-only run continued with a whole-network phase: the best comes from that
                best_iou, best_epoch = -1.0, None
            opt_state, opt_phase = ck.get("optimizer"), ck.get("phase")
            start = resumed_from = int(ck["epoch"])
            start += 1
        settings = {"arch": "maskrcnn", "config": mcfg["config"], "epochs_heads": epochs_heads,
                    "epochs_all": epochs_all, "batch_size": batch_size, "lr": lr,
                    "lr_final": lr_final, "momentum": momentum, "weight_decay": weight_decay,
                    "clip_grad_norm": clip_grad_norm, "trainable_backbone_layers": train_layers,
                    "seed": seed, "threads": torch.get_num_threads(), "device": str(device),
                    "photometric_p": photometric_p, "score_threshold": score_threshold,
                    "mask_threshold": mask_threshold,
                    "val_iou": ("per image (tiles pooled)" if len(set(val_groups)) < len(val_groups)
                                else "per tile"),
                    "train_items": len(train_ds), "val_items": len(val_ds), "model_config": mcfg,
                    "data_dir": str(Path(data_dir).resolve())}
        write_json(out_dir / "run.json", settings)

        steps = math.ceil(len(train_ds) / batch_size)
        optimizer, phase_now = None, None
        for epoch in range(start, epochs + 1):
            t0 = time.perf_counter()
            phase = "heads" if epoch <= epochs_heads else "all"
            if phase != phase_now:
                # a new phase: another set of trainable parameters and a fresh optimizer
                set_backbone_trainable(model, 0 if phase == "heads" else train_layers)
                params = [p for p in model.parameters() if p.requires_grad]
                optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
                if opt_state is not None and opt_phase == phase:
                    optimizer.load_state_dict(opt_state)
                opt_state, phase_now = None, phase
            current_lr = two_phase_lr(epoch, epochs_heads, epochs_all, lr, lr_final)
            for g in optimizer.param_groups:
                g["lr"] = current_lr
            train_ds.set_epoch(epoch)
            order = torch.Generator().manual_seed(seed * 100_003 + epoch)
            loader = DataLoader(train_ds, batch_size=batch_size, shuffle=True, generator=order,
                                num_workers=num_workers, collate_fn=_collate_detection)
            model.train()
            sums = dict.fromkeys(_LOSS_TERMS, 0.0)
            total, n = 0.0, 0
            for step, (images, targets, _) in enumerate(loader, 1):
                images = [im.to(device) for im in images]
                targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
                loss_dict = model(images, targets)
                batch_loss = sum(loss_dict.values())
                value = float(batch_loss.item())
                if not math.isfinite(value):
                    raise Tio2FijiError(
                        f"Mask R-CNN training diverged at epoch {epoch}, step {step} (loss {value}); "
                        f"{last_path.name} holds the last complete epoch. Lower lr or keep "
                        f"clip_grad_norm.")
                optimizer.zero_grad(set_to_none=True)
                batch_loss.backward()
                if clip_grad_norm:
                    torch.nn.utils.clip_grad_norm_(optimizer.param_groups[0]["params"], clip_grad_norm)
                optimizer.step()
                total += value * len(images)
                n += len(images)
                for k in _LOSS_TERMS:
                    if k in loss_dict:
                        sums[k] += float(loss_dict[k].item()) * len(images)
                if progress is not None:
                    progress("batch", {"epoch": epoch, "epochs": epochs, "step": step, "steps": steps,
                                       "loss": value, "phase": phase})
            v_loss, v_iou = _evaluate_maskrcnn(model, val_ds, batch_size, val_groups, score_threshold,
                                               mask_threshold, val_loss, device)
            row = {"epoch": epoch, "phase": phase, "train_loss": total / max(n, 1),
                   "val_loss": v_loss, "val_iou": v_iou, "lr": current_lr,
                   "seconds": time.perf_counter() - t0,
                   **{k: s / max(n, 1) for k, s in sums.items()}}
            history.append(row)
            # the thesis checkpointed during the whole-network phase only
            eligible = phase == "all" or epochs_all == 0
            improved = eligible and v_iou > best_iou
            if improved:
                best_iou, best_epoch = v_iou, epoch
            state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
            if improved:
                save_checkpoint(best_path, {"model": state, "model_config": mcfg, "epoch": epoch,
                                            "val_iou": v_iou, "settings": settings})
            save_checkpoint(last_path, {
                "model": state, "optimizer": optimizer.state_dict(), "phase": phase,
                "epoch": epoch, "rng": _rng_states(), "history": history,
                "best_val_iou": best_iou, "best_epoch": best_epoch,
                "model_config": mcfg, "settings": settings,
            })
            _write_history(out_dir, history, MASKRCNN_HISTORY_COLUMNS)
            if progress is not None:
                progress("epoch", dict(row, best_val_iou=best_iou, best_epoch=best_epoch))
    finally:
        restore()
    return {"history": history, "best_epoch": best_epoch, "best_val_iou": best_iou,
            "out_dir": out_dir, "resumed_from": resumed_from,
            "seconds": float(sum(h["seconds"] for h in history)), "model_config": mcfg}
