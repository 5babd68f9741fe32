"""The one training engine of both networks: epochs, checkpoints, resume, history.

A network's recipe (:mod:`tio2fiji.training.unet`, :mod:`tio2fiji.training.maskrcnn`) builds the
model, its data and its validation, and hands them to :func:`fit`, which runs the epochs the same
way for every network (as torchvision's detection references keep ``engine.py`` apart from the
model factory):

* **run settings** (:func:`run_settings`): torch's thread count, deterministic kernels and the
  torch/numpy/Python seeds for the run, put back afterwards;
* **one epoch**: the batch order comes from a generator seeded with ``(seed, epoch)``, and a
  dataset's items depend only on ``(seed, epoch, index)`` (its ``set_epoch`` is called), so a
  resumed run sees the same batches; a non-finite loss stops the run at once (:class:`Tio2FijiError`)
  and leaves the last complete epoch on disk;
* **checkpoints**, written atomically through :func:`tio2fiji.models.checkpoint.save_checkpoint`
  after every epoch: ``best.pt`` when the validation IoU improved (on the epochs the recipe counts),
  then ``last.pt`` with everything needed to continue (model, optimizer, scheduler, phase, the
  global RNG states, the history, the best so far), so a run killed at any moment leaves the
  previous complete checkpoint;
* **resume** from ``last.pt``: model, optimizer (when its phase is the one being continued),
  scheduler and RNG states are restored; with a seed and on the CPU a resumed run ends with the
  same weights as an uninterrupted one;
* **history**: ``history.csv`` and ``training_curves.png`` (loss and validation IoU per epoch, like
  the thesis's Fig. 28-29) after every epoch, and ``run.json`` (the run's settings) at the start.

Reruns into a run folder (:func:`check_run_folder`, :func:`resume_changes`): a folder that holds
``last.pt`` or ``best.pt`` is continued only with ``resume``, replaced only with ``overwrite``, and
refused otherwise. A resumed run must have the settings it was started with, except those in
:data:`MAY_CHANGE_ON_RESUME`: the number of epochs (more is the normal use; never fewer than are
done; a cosine schedule then falls from the current learning rate to its end value at the new last
epoch), the thread count and the device.
Any other difference (learning rate, batch size, loss, data, model configuration, ...) is refused
with one line listing it, since the restored optimizer would keep the old values while ``run.json``
said the new ones. What changed is recorded in ``run.json`` and ``last.pt`` under ``"resumes"``.
Option values are checked before anything is built (:func:`check_options`).

The library never prints: ``progress(done, total, name)`` is called after every training step
(``done`` and ``total`` count the steps of the whole run, ``name`` is e.g. ``"epoch 3/50 loss
0.4121"``) and after every epoch's validation (``"epoch 3/50 val_iou 0.8012 (best 0.8012)"``).
"""

from __future__ import annotations

import contextlib
import math
import numbers
import random
import time
from pathlib import Path

import numpy as np

from ..checks import DOMAINS, Domain, check_option
from ..errors import InputError, Tio2FijiError
from ..io import atomic_write, write_csv, write_json
from ..models.checkpoint import load_checkpoint, save_checkpoint

__all__ = ["MAY_CHANGE_ON_RESUME", "EXTRA_DOMAINS", "SCHEDULES", "check_schedule", "adam_optimizer",
           "check_options", "check_run_folder", "resume_changes",
           "run_settings", "rng_states", "set_rng_states", "fit", "pooled_loss_iou", "on_device",
           "write_history", "plot_history"]

#: Settings a resumed run may change (the total of epochs not below the epochs done).
MAY_CHANGE_ON_RESUME = ("epochs", "epochs_all", "threads", "device")
_RUN_FILES = ("last.pt", "best.pt", "history.csv", "training_curves.png", "run.json")


# --------------------------------------------------------------------------------------------------
# options and run folders


def _flag(name: str) -> str:
    return {"num_workers": "--workers"}.get(name, "--" + name.replace("_", "-"))


#: Domains of the training options that :data:`tio2fiji.checks.DOMAINS` does not hold (the recipes'
#: finer settings, not on the command line).
EXTRA_DOMAINS = {
    "ray_scale": Domain(False, 0.0, low_open=True, hint="pixels per output unit, e.g. 16"),
    "ray_bias": Domain(False, hint="pixels, e.g. 8"),
    "ray_weight": Domain(False, 0.0, hint="e.g. 0.2"),
    "clip_grad_norm": Domain(False, 0.0, low_open=True, hint="e.g. 5; None turns it off"),
    "momentum": Domain(False, 0.0, hint="e.g. 0.9"),
    "weight_decay": Domain(False, 0.0, hint="e.g. 1e-4"),
}


def check_options(**values) -> None:
    """Refuse a training option outside its domain before anything is built: one line naming it.

    The domains are :data:`tio2fiji.checks.DOMAINS` (``num_workers`` is its ``workers``) and
    :data:`EXTRA_DOMAINS`; ``None`` means the default and is not checked.
    """
    for name, value in values.items():
        key = "workers" if name == "num_workers" else name
        if key in DOMAINS:
            check_option(key, value, label=f"{name} ({_flag(name)})")
            continue
        dom = EXTRA_DOMAINS[key]
        number = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if value is not None and not (number and dom.contains(float(value))):
            hint = f" ({dom.hint})" if dom.hint else ""
            raise InputError(f"{name} must be {dom.text()}, got {value!r}{hint}.")


def check_run_folder(out_dir, resume: bool = False, overwrite: bool = False) -> None:
    """Refuse to start a run that would silently replace another run's checkpoints.

    ``out_dir`` holding ``last.pt`` or ``best.pt`` needs ``resume`` (continue it) or ``overwrite``
    (replace it); ``resume`` with a ``best.pt`` but no ``last.pt`` has nothing to continue.
    """
    out_dir = Path(out_dir)
    if resume and overwrite:
        raise InputError("--resume continues a run and --overwrite replaces it: give one of them.")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: --out must be a folder, and this is a file.")
    held = [n for n in ("last.pt", "best.pt") if (out_dir / n).is_file()]
    if not held or overwrite:
        return
    if not resume:
        raise InputError(f"{out_dir}: holds {' and '.join(held)} of an earlier run; use --resume to "
                         f"continue it, or a new --out (or --overwrite) to replace it.")
    if "last.pt" not in held:
        raise InputError(f"{out_dir}: holds best.pt but no last.pt, so there is no run to resume; "
                         f"use a new --out (or --overwrite) to start again.")


def _plain(value):
    """Settings as JSON has them (tuples become lists), to compare a checkpoint's with today's."""
    import json

    return json.loads(json.dumps(value, default=str))


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def resume_changes(old: dict, new: dict, where) -> dict:
    """The settings a resumed run changes, ``{name: [old, new]}``; refuses any but
    :data:`MAY_CHANGE_ON_RESUME` with one line listing them.

    ``old`` is the ``settings`` stored in ``last.pt`` (nothing is compared when it has none).
    """
    if not old:
        return {}
    a, b = _flat(_plain(old)), _flat(_plain(new))
    changed = {k: [a.get(k), b.get(k)] for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
    refused = [k for k in changed if k not in MAY_CHANGE_ON_RESUME]
    if refused:
        listed = "; ".join(f"{k} {changed[k][0]!r} -> {changed[k][1]!r}" for k in refused)
        if len(listed) > 400:
            listed = listed[:400] + " ..."
        raise InputError(f"{where}: the run was started with other settings ({listed}); resume it with "
                         f"the same ones (only more epochs, threads and device may change) or "
                         f"start a new run with a new --out.")
    return changed


# --------------------------------------------------------------------------------------------------
# run settings and RNG states


#: The learning-rate schedules of the U-Net recipes (:func:`adam_optimizer`).
SCHEDULES = ("constant", "cosine")


def check_schedule(schedule: str) -> None:
    """Refuse a schedule that is not one of :data:`SCHEDULES` in one line."""
    if schedule not in SCHEDULES:
        raise InputError(f"schedule must be 'constant' or 'cosine', not {schedule!r}.")


def adam_optimizer(model, lr: float, epochs: int, schedule: str):
    """The U-Net recipes' ``optimizer_for(phase)`` of :func:`fit`: Adam at ``lr``, constant or
    cosine-annealed to 1 % of it over ``epochs``."""
    import torch

    check_schedule(schedule)

    def optimizer_for(phase):
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=lr * 0.01)
                     if schedule == "cosine" else None)
        return optimizer, scheduler

    return optimizer_for


@contextlib.contextmanager
def run_settings(threads: int | None = None, seed: int = 0):
    """Threads, deterministic kernels and seeds for a training run (restored on leaving).

    ``torch.set_num_threads(threads)`` when given; ``torch.use_deterministic_algorithms(True,
    warn_only=True)`` (an op without a deterministic CPU kernel warns instead of stopping the run);
    torch, numpy and Python seeded with ``seed``. The thread count and the determinism setting are
    put back afterwards.
    """
    import torch

    check_options(threads=threads)
    old = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
           torch.is_deterministic_algorithms_warn_only_enabled())
    if threads:
        torch.set_num_threads(int(threads))
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(seed)
    np.random.seed(seed % 2 ** 32)
    random.seed(seed)
    try:
        yield
    finally:
        torch.set_num_threads(old[0])
        torch.use_deterministic_algorithms(old[1], warn_only=old[2])


def rng_states() -> dict:
    """The global torch, numpy and Python RNG states (stored in ``last.pt``)."""
    import torch

    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_states(states: dict) -> None:
    """Restore what :func:`rng_states` returned."""
    import torch

    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])


def on_device(tensors, device):
    """The tensors of a batch on ``device`` (non-blocking: from pinned memory on CUDA the copy
    overlaps the GPU's work)."""
    return tuple(t.to(device, non_blocking=True) for t in tensors)


# --------------------------------------------------------------------------------------------------
# validation scores and curves


def pooled_loss_iou(losses, inters, unions, groups):
    """Mean loss and mean IoU per group (image) of per-item intersection/union pixel counts.

    Pooling matters: a tile without particles where the network marks a few pixels scores 0, and
    per-tile means jump with such tiles from epoch to epoch.
    """
    pooled: dict = {}
    for g, i, u in zip(groups, inters, unions):
        a = pooled.setdefault(g, [0, 0])
        a[0] += i
        a[1] += u
    # a group with neither predicted nor true particles is a perfect 1.0 (metrics convention)
    ious = [i / u if u else 1.0 for i, u in pooled.values()]
    return (float(np.mean(losses)) if losses else float("nan"),
            float(np.mean(ious)) if ious else float("nan"))


def write_history(out_dir: Path, history: list, columns) -> None:
    """``history.csv`` and ``training_curves.png`` of a run so far (after every epoch)."""
    import pandas as pd

    write_csv(out_dir / "history.csv", pd.DataFrame(history, columns=columns))
    plot_history(history, out_dir / "training_curves.png")


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
    # runs that select by F1 (the star-convex U-Net) plot it beside the pixel IoU
    key = "val_f1" if history and "val_f1" in history[0] else "val_iou"
    ax2.plot(ep, [h["val_iou"] for h in history], color="C2", label="pixel IoU")
    if key == "val_f1":
        ax2.plot(ep, [h["val_f1"] for h in history], color="C4", label="F1 at IoU 0.5")
    if history:
        best = max(history, key=lambda h: h[key])
        ax2.scatter([best["epoch"]], [best[key]], color="C3", zorder=3,
                    label=f"best {best[key]:.4f} (epoch {best['epoch']})")
        ax2.legend(loc="lower right")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation IoU" if key == "val_iou" else "validation score")
    fig.tight_layout()
    return atomic_write(Path(path), lambda p: fig.savefig(p, dpi=100, format="png"))


# --------------------------------------------------------------------------------------------------
# the loop


def _always(epoch) -> bool:
    return True


def _one_phase(epoch):
    return None


def fit(model, train_ds, out_dir, *, epochs: int, batch_size: int, seed: int, forward, validate,
        optimizer_for, settings: dict, model_config: dict, history_columns, phase_of=_one_phase,
        set_lr=None, step_lr=None, loss_terms=(), clip_grad_norm: float | None = None, eligible=_always,
        check_resume=None, extra_scores=None, score_label: str = "val_iou", resume: bool = False,
        overwrite: bool = False, num_workers: int = 0,
        collate_fn=None, progress=None, what: str = "training", hint: str = "",
        pin_memory: bool = False) -> dict:
    """Train ``model`` for ``epochs`` epochs, validating and checkpointing after every epoch.

    Call it inside :func:`run_settings` (the recipe builds its model there, from the seed).

    Parameters
    ----------
    model : torch.nn.Module
        On its device.
    train_ds : map-style dataset
        ``set_epoch(e)``, if present, is called before every epoch.
    out_dir : path
        Gets ``last.pt``, ``best.pt``, ``history.csv``, ``training_curves.png``, ``run.json``.
    epochs, batch_size, seed : int
        ``epochs`` is the total: a resumed run goes on up to it.
    forward : callable
        ``forward(model, batch) -> (loss, terms, n)``: the batch's loss tensor, a dict of loss terms
        (tensors; those named in ``loss_terms`` are averaged into the history) and its item count.
    validate : callable
        ``validate(model) -> (val_loss, score)``: the score chooses ``best.pt`` (the validation IoU,
        or another score with ``extra_scores``).
    optimizer_for : callable
        ``optimizer_for(phase) -> (optimizer, scheduler or None)``, called when a run or a phase
        starts (a new phase gets a fresh optimizer).
    settings, model_config : dict
        Written to ``run.json`` / stored in the checkpoints (``model_config`` rebuilds the model:
        :func:`tio2fiji.models.checkpoint.load_model`).
    history_columns : list of str
        Columns of ``history.csv``.
    phase_of : callable
        ``phase_of(epoch) -> str or None`` (None: one phase; the history then has no ``phase``).
    set_lr : callable, optional
        ``set_lr(optimizer, epoch)`` before every epoch (learning rates not set by a scheduler).
    step_lr : callable, optional
        ``step_lr(epoch, step, steps) -> float or None`` before every optimizer step (1-based
        ``step`` of ``steps`` in the epoch): a learning rate for every parameter group, e.g. a
        warm-up; None keeps the epoch's. It depends on its arguments only, so a resumed run gets
        the same rates.
    clip_grad_norm : float, optional
        Clip the total gradient norm of the optimizer's first parameter group.
    eligible : callable
        ``eligible(epoch) -> bool``: whether the epoch may become ``best.pt``.
    check_resume : callable, optional
        ``check_resume(checkpoint, path)`` raises when ``last.pt`` holds another kind of run.
    extra_scores : callable, optional
        ``extra_scores() -> dict`` after every validation: more history columns, which override
        the row's (e.g. the pixel ``val_iou`` of a run that selects by F1).
    score_label : str
        The score's name in progress messages.
    resume : bool
        Continue from ``out_dir/last.pt`` if it exists (a fresh start otherwise); its settings must
        be ``settings`` but for :data:`MAY_CHANGE_ON_RESUME` (see the module docstring).
    overwrite : bool
        Replace the run in ``out_dir`` (its checkpoints, history and curves are removed first).
        Without ``resume`` or ``overwrite`` a folder holding ``last.pt``/``best.pt`` is refused.
    num_workers : int
        DataLoader workers. Items do not depend on the worker, so any number gives the same data.
    collate_fn : callable, optional
        The training DataLoader's (detection batches are lists).
    progress : callable, optional
        ``progress(done, total, name)``; see the module docstring.
    what, hint : str
        Wording of the message when the loss stops being finite.
    pin_memory : bool
        The DataLoader's: batches in page-locked memory, for non-blocking copies to a GPU (the
        recipe's ``forward`` moves them to the model's device).

    Returns
    -------
    dict
        ``history`` (list of rows), ``best_epoch``, ``best_val_iou``, ``out_dir``, ``resumed_from``
        (the epoch last.pt held, or None), ``seconds`` (training time of all epochs, resumed runs
        included).
    """
    import torch
    from torch.utils.data import DataLoader

    check_options(epochs=epochs, batch_size=batch_size, num_workers=num_workers)
    if len(train_ds) == 0:
        raise InputError("the training dataset is empty.")
    out_dir = Path(out_dir)
    check_run_folder(out_dir, resume, overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    history, best_iou, best_epoch, start, resumed_from = [], -1.0, None, 1, None
    saved = None  # (phase, optimizer state, scheduler state) of the resumed run
    resumes = []  # what each resume of this run changed (run.json, last.pt)
    if overwrite:
        for name in _RUN_FILES:  # nothing of the replaced run may pass for this one's
            (out_dir / name).unlink(missing_ok=True)
    if resume and last_path.is_file():
        ck = load_checkpoint(last_path)
        if check_resume is not None:
            check_resume(ck, last_path)
        changed = resume_changes(ck.get("settings") or {}, settings, last_path)
        if epochs < int(ck["epoch"]):
            raise InputError(f"{last_path}: holds {int(ck['epoch'])} finished epochs; {epochs} in "
                             f"all would not continue it (give at least {int(ck['epoch'])}).")
        resumes = list(ck.get("resumes") or []) + [{"from_epoch": int(ck["epoch"]), "changed": changed}]
        model.load_state_dict(ck["model"])
        set_rng_states(ck["rng"])
        history = list(ck["history"])
        best_iou, best_epoch = ck["best_val_iou"], ck["best_epoch"]
        if best_epoch is not None and not eligible(best_epoch):
            # e.g. a heads-only Mask R-CNN run continued with a whole-network phase
            best_iou, best_epoch = -1.0, None
        saved = (ck.get("phase"), ck.get("optimizer"), ck.get("scheduler"))
        start = resumed_from = int(ck["epoch"])
        start += 1
    write_json(out_dir / "run.json", {**settings, **({"resumes": resumes} if resumes else {})})

    steps = math.ceil(len(train_ds) / batch_size)
    total_steps = epochs * steps
    optimizer, scheduler, phase_now = None, None, None
    for epoch in range(start, epochs + 1):
        t0 = time.perf_counter()
        phase = phase_of(epoch)
        if optimizer is None or phase != phase_now:
            optimizer, scheduler = optimizer_for(phase)
            if saved is not None and saved[0] == phase and saved[1] is not None:
                optimizer.load_state_dict(saved[1])
                if scheduler is not None and saved[2] is not None:
                    # a schedule's length follows today's epochs (more epochs on resume)
                    length = {k: v for k, v in scheduler.state_dict().items() if k == "T_max"}
                    scheduler.load_state_dict({**saved[2], **length})
            saved, phase_now = None, phase
        if set_lr is not None:
            set_lr(optimizer, epoch)
        if hasattr(train_ds, "set_epoch"):
            train_ds.set_epoch(epoch)
        # the order of an epoch depends on (seed, epoch) only: a resumed run sees the same batches
        order = torch.Generator().manual_seed(seed * 100_003 + epoch)
        loader = DataLoader(train_ds, batch_size=batch_size, shuffle=True, generator=order,
                            num_workers=num_workers, collate_fn=collate_fn, pin_memory=pin_memory)
        label = f"epoch {epoch}/{epochs}" + (f" ({phase})" if phase else "")
        model.train()
        sums = dict.fromkeys(loss_terms, 0.0)
        total, n = 0.0, 0
        for step, batch in enumerate(loader, 1):
            loss, terms, items = forward(model, batch)
            value = float(loss.item())
            if not math.isfinite(value):
                raise Tio2FijiError(f"{what} diverged at epoch {epoch}, step {step} (loss {value}); "
                                    f"{last_path.name} holds the last complete epoch.{hint}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if step_lr is not None:
                rate = step_lr(epoch, step, steps)
                if rate is not None:
                    for g in optimizer.param_groups:
                        g["lr"] = rate
            if clip_grad_norm:
                torch.nn.utils.clip_grad_norm_(optimizer.param_groups[0]["params"], clip_grad_norm)
            optimizer.step()
            total += value * items
            n += items
            for k in loss_terms:
                if k in terms:
                    sums[k] += float(terms[k].item()) * items
            if progress is not None:
                progress((epoch - 1) * steps + step, total_steps, f"{label} loss {value:.4f}")
        lr = optimizer.param_groups[0]["lr"]
        if scheduler is not None:
            scheduler.step()
        val_loss, val_iou = validate(model)
        row = {"epoch": epoch, **({"phase": phase} if phase else {}), "train_loss": total / max(n, 1),
               "val_loss": val_loss, "val_iou": val_iou, "lr": lr,
               "seconds": time.perf_counter() - t0, **{k: s / max(n, 1) for k, s in sums.items()}}
        if extra_scores is not None:
            row.update({k: v for k, v in extra_scores().items() if k in history_columns})
            row["seconds"] = time.perf_counter() - t0
        history.append(row)
        improved = eligible(epoch) and val_iou > best_iou
        if improved:
            best_iou, best_epoch = val_iou, epoch
        state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
        if improved:
            save_checkpoint(best_path, {"model": state, "model_config": model_config, "epoch": epoch,
                                        "val_iou": val_iou, "settings": settings})
        # last.pt is written after best.pt: if the run dies in between, resuming redoes the epoch
        save_checkpoint(last_path, {
            "model": state, "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None, "phase": phase,
            "epoch": epoch, "rng": rng_states(), "history": history,
            "best_val_iou": best_iou, "best_epoch": best_epoch,
            "model_config": model_config, "settings": settings, "resumes": resumes,
        })
        write_history(out_dir, history, history_columns)
        if progress is not None:
            best = f"best {best_iou:.4f}" if best_epoch is not None else "no best yet"
            progress(epoch * steps, total_steps, f"{label} {score_label} {val_iou:.4f} ({best})")
    return {"history": history, "best_epoch": best_epoch, "best_val_iou": best_iou,
            "out_dir": out_dir, "resumed_from": resumed_from,
            "seconds": float(sum(h["seconds"] for h in history))}
