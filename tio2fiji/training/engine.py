"""The one training engine of both networks: epochs, checkpoints, resume, history.

A network's recipe (:mod:`tio2fiji.training.unet`, :mod:`tio2fiji.training.maskrcnn`, ...) builds
the model, its data and its validation, and hands them to :func:`fit` as a :class:`Recipe` (the
network's parts: model, training data, ``forward``, ``validate``, its :class:`Schedule` of
optimizers and learning rates) with a :class:`FitConfig` (the run's settings: folder, epochs, batch
size, seed, history columns, resume/overwrite, ...); :func:`fit` runs the epochs the same way for
every network (as torchvision's detection references keep ``engine.py`` apart from the model
factory):

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..checks import DOMAINS, Domain, check_option
from ..errors import InputError, Tio2FijiError
from ..io import atomic_write, write_csv, write_json
from ..models.checkpoint import load_checkpoint, save_checkpoint

__all__ = ["MAY_CHANGE_ON_RESUME", "EXTRA_DOMAINS", "SCHEDULES", "check_schedule", "adam_optimizer",
           "adam_schedule", "check_options", "check_run_folder", "resume_changes",
           "run_settings", "rng_states", "set_rng_states", "Schedule", "Recipe", "FitConfig", "fit",
           "pooled_loss_iou", "on_device", "write_history", "plot_history"]

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


def adam_optimizer(model, lr: float, epochs: int, schedule: str, head_lr_factor: float = 1.0):
    """The U-Net recipes' ``optimizer_for(phase)`` of a :class:`Schedule`: Adam at ``lr``, constant or
    cosine-annealed to 1 % of it over ``epochs``; the output head (``model.segmentation_head``) at
    ``head_lr_factor`` times that (a new head learns from scratch while the rest is fine-tuned:
    Adam moves each weight by about the learning rate per step)."""
    import torch

    check_schedule(schedule)

    def optimizer_for(phase):
        groups = model.parameters()
        if head_lr_factor != 1.0:
            head = {id(p) for p in model.segmentation_head.parameters()}
            groups = [{"params": [p for p in model.parameters() if id(p) not in head]},
                      {"params": list(model.segmentation_head.parameters()), "lr": lr * head_lr_factor}]
        optimizer = torch.optim.Adam(groups, lr=lr)
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
# what a run is: its settings (FitConfig) and its network's parts (Recipe, Schedule)


class Schedule:
    """The optimizers and learning rates of a run, and which epochs may become ``best.pt``.

    The base class is one phase with the optimizer that ``optimizer_for(phase)`` builds (the U-Nets'
    Adam: :func:`adam_schedule`); a recipe with phases subclasses it (Mask R-CNN's two-phase SGD,
    :class:`tio2fiji.training.maskrcnn.TwoPhaseSchedule`). Every method depends on its arguments
    only, so a resumed run gets the same phases and rates.
    """

    def __init__(self, optimizer_for: Callable | None = None):
        self._optimizer_for = optimizer_for

    def phase_of(self, epoch: int) -> str | None:
        """The phase of ``epoch`` (1-based); None: one phase, and the history has no ``phase``."""
        return None

    def optimizer_for(self, phase):
        """``(optimizer, scheduler or None)``, built when the run or a phase starts (a new phase gets
        a fresh optimizer)."""
        return self._optimizer_for(phase)

    def epoch_lr(self, epoch: int) -> float | None:
        """The learning rate of every parameter group for ``epoch``, set before it starts; None
        leaves the optimizer's (or its scheduler's)."""
        return None

    def step_lr(self, epoch: int, step: int, steps: int) -> float | None:
        """The learning rate of every parameter group before the optimizer step ``step`` (1-based)
        of ``steps`` in ``epoch``, e.g. a warm-up; None keeps the epoch's."""
        return None

    def eligible(self, epoch: int) -> bool:
        """Whether ``epoch`` may become ``best.pt``."""
        return True


def adam_schedule(model, lr: float, epochs: int, schedule: str) -> Schedule:
    """The U-Net recipes' :class:`Schedule`: one phase of :func:`adam_optimizer`."""
    return Schedule(adam_optimizer(model, lr, epochs, schedule))


@dataclass
class Recipe:
    """The network's parts of a run: what :func:`fit` trains and how it scores it.

    Attributes
    ----------
    model : torch.nn.Module
        On its device, built inside :func:`run_settings` (its initial weights come from the seed).
    train_ds : map-style dataset
        ``set_epoch(e)``, if present, is called before every epoch.
    forward : callable
        ``forward(model, batch) -> (loss, terms, n)``: the batch's loss tensor, a dict of loss terms
        (tensors; those named in :attr:`FitConfig.loss_terms` are averaged into the history) and its
        item count. It moves the batch to the model's device.
    validate : callable
        ``validate(model) -> (val_loss, score)``: the score chooses ``best.pt`` (the validation IoU,
        or another score with ``extra_scores``).
    schedule : Schedule
        Optimizers, phases, learning rates and the epochs that may become ``best.pt``.
    extra_scores : callable, optional
        ``extra_scores() -> dict`` after every validation: more history columns, which override the
        row's (e.g. the pixel ``val_iou`` of a run that selects by F1).
    check_resume : callable, optional
        ``check_resume(checkpoint, path)`` raises when ``last.pt`` holds another kind of run.
    """

    model: Any
    train_ds: Any
    forward: Callable
    validate: Callable
    schedule: Schedule
    extra_scores: Callable | None = None
    check_resume: Callable | None = None


@dataclass
class FitConfig:
    """The settings of a run of :func:`fit` (the network's parts are its :class:`Recipe`).

    Attributes
    ----------
    out_dir : path
        Gets ``last.pt``, ``best.pt``, ``history.csv``, ``training_curves.png``, ``run.json``.
    epochs, batch_size, seed : int
        ``epochs`` is the total: a resumed run goes on up to it. The seed orders every epoch's batches.
    settings, model_config : dict
        Written to ``run.json`` / stored in the checkpoints (``model_config`` rebuilds the model:
        :func:`tio2fiji.models.checkpoint.load_model`).
    history_columns : list of str
        Columns of ``history.csv``.
    loss_terms : sequence of str
        The terms of ``forward`` averaged into the history.
    clip_grad_norm : float, optional
        Clip the total gradient norm of the optimizer's first parameter group.
    resume : bool
        Continue from ``out_dir/last.pt`` if it exists (a fresh start otherwise); its settings must
        be ``settings`` but for :data:`MAY_CHANGE_ON_RESUME` (see the module docstring).
    overwrite : bool
        Replace the run in ``out_dir`` (its checkpoints, history and curves are removed first).
        Without ``resume`` or ``overwrite`` a folder holding ``last.pt``/``best.pt`` is refused.
    num_workers : int
        DataLoader workers. Items do not depend on the worker, so any number gives the same data.
    pin_memory : bool
        The DataLoader's: batches in page-locked memory, for non-blocking copies to a GPU.
    collate_fn : callable, optional
        The training DataLoader's (detection batches are lists).
    score_label : str
        The score's name in progress messages.
    what, hint : str
        Wording of the message when the loss stops being finite.
    progress : callable, optional
        ``progress(done, total, name)``; see the module docstring.
    """

    out_dir: Path
    epochs: int
    batch_size: int
    seed: int
    settings: dict
    model_config: dict
    history_columns: Sequence[str]
    loss_terms: Sequence[str] = ()
    clip_grad_norm: float | None = None
    resume: bool = False
    overwrite: bool = False
    num_workers: int = 0
    pin_memory: bool = False
    collate_fn: Callable | None = None
    score_label: str = "val_iou"
    what: str = "training"
    hint: str = ""
    progress: Callable | None = None


@dataclass
class _Run:
    """A run in progress: what ``last.pt`` holds and what the next epoch continues."""

    out_dir: Path
    history: list = field(default_factory=list)
    best_iou: float = -1.0
    best_epoch: int | None = None
    resumed_from: int | None = None  # the epoch last.pt held
    resumes: list = field(default_factory=list)  # what each resume of this run changed
    saved: tuple | None = None  # (phase, optimizer state, scheduler state) of the resumed run
    optimizer: Any = None
    scheduler: Any = None
    phase: str | None = None


# --------------------------------------------------------------------------------------------------
# the loop


def fit(config: FitConfig, recipe: Recipe) -> dict:
    """Train ``recipe.model`` for ``config.epochs`` epochs, validating and checkpointing after every
    epoch.

    Call it inside :func:`run_settings` (the recipe builds its model there, from the seed).

    Parameters
    ----------
    config : FitConfig
        The run's settings and folder.
    recipe : Recipe
        The model, its data, loss, validation and schedule.

    Returns
    -------
    dict
        ``history`` (list of rows), ``best_epoch``, ``best_val_iou``, ``out_dir``, ``resumed_from``
        (the epoch last.pt held, or None), ``seconds`` (training time of all epochs, resumed runs
        included).
    """
    run = _open_run(config, recipe)
    steps = math.ceil(len(recipe.train_ds) / config.batch_size)
    first = 1 if run.resumed_from is None else run.resumed_from + 1
    for epoch in range(first, config.epochs + 1):
        t0 = time.perf_counter()
        phase = recipe.schedule.phase_of(epoch)
        _start_phase(run, recipe.schedule, phase)
        label = f"epoch {epoch}/{config.epochs}" + (f" ({phase})" if phase else "")
        trained = _train_epoch(config, recipe, run, epoch, steps, label)
        row, score = _validate(config, recipe, epoch, phase, trained, t0)
        _save_epoch(config, recipe, run, epoch, row, score)
        if config.progress is not None:
            best = f"best {run.best_iou:.4f}" if run.best_epoch is not None else "no best yet"
            config.progress(epoch * steps, config.epochs * steps,
                            f"{label} {config.score_label} {score:.4f} ({best})")
    return {"history": run.history, "best_epoch": run.best_epoch, "best_val_iou": run.best_iou,
            "out_dir": run.out_dir, "resumed_from": run.resumed_from,
            "seconds": float(sum(h["seconds"] for h in run.history))}


def _open_run(config: FitConfig, recipe: Recipe) -> _Run:
    """Check the options and the run folder, clear a replaced run, continue a resumed one, then
    write ``run.json``."""
    check_options(epochs=config.epochs, batch_size=config.batch_size, num_workers=config.num_workers)
    if len(recipe.train_ds) == 0:
        raise InputError("the training dataset is empty.")
    out_dir = Path(config.out_dir)
    check_run_folder(out_dir, config.resume, config.overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    run = _Run(out_dir)
    if config.overwrite:
        for name in _RUN_FILES:  # nothing of the replaced run may pass for this one's
            (out_dir / name).unlink(missing_ok=True)
    if config.resume and (out_dir / "last.pt").is_file():
        _resume(config, recipe, run)
    write_json(out_dir / "run.json", {**config.settings, **({"resumes": run.resumes} if run.resumes else {})})
    return run


def _resume(config: FitConfig, recipe: Recipe, run: _Run) -> None:
    """Restore ``last.pt``: weights, RNG states, history, best so far; the optimizer's state waits
    in ``run.saved`` for its phase (:func:`_start_phase`)."""
    path = run.out_dir / "last.pt"
    ck = load_checkpoint(path)
    if recipe.check_resume is not None:
        recipe.check_resume(ck, path)
    changed = resume_changes(ck.get("settings") or {}, config.settings, path)
    done = int(ck["epoch"])
    if config.epochs < done:
        raise InputError(f"{path}: holds {done} finished epochs; {config.epochs} in "
                         f"all would not continue it (give at least {done}).")
    run.resumes = list(ck.get("resumes") or []) + [{"from_epoch": done, "changed": changed}]
    recipe.model.load_state_dict(ck["model"])
    set_rng_states(ck["rng"])
    run.history = list(ck["history"])
    run.best_iou, run.best_epoch = ck["best_val_iou"], ck["best_epoch"]
    if run.best_epoch is not None and not recipe.schedule.eligible(run.best_epoch):
        # e.g. a heads-only Mask R-CNN run continued with a whole-network phase
        run.best_iou, run.best_epoch = -1.0, None
    run.saved = (ck.get("phase"), ck.get("optimizer"), ck.get("scheduler"))
    run.resumed_from = done


def _start_phase(run: _Run, schedule: Schedule, phase) -> None:
    """A fresh optimizer when the run or a phase starts, with the resumed run's state when it
    continues that phase."""
    if run.optimizer is not None and phase == run.phase:
        return
    run.optimizer, run.scheduler = schedule.optimizer_for(phase)
    saved = run.saved
    if saved is not None and saved[0] == phase and saved[1] is not None:
        run.optimizer.load_state_dict(saved[1])
        if run.scheduler is not None and saved[2] is not None:
            # a schedule's length follows today's epochs (more epochs on resume)
            length = {k: v for k, v in run.scheduler.state_dict().items() if k == "T_max"}
            run.scheduler.load_state_dict({**saved[2], **length})
    run.saved, run.phase = None, phase


def _set_lr(optimizer, rate: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = rate


def _train_epoch(config: FitConfig, recipe: Recipe, run: _Run, epoch: int, steps: int, label: str) -> dict:
    """One pass over the training data: ``train_loss``, ``lr`` (the epoch's, before the scheduler
    steps) and ``terms`` (the loss terms' means per item)."""
    import torch
    from torch.utils.data import DataLoader

    rate = recipe.schedule.epoch_lr(epoch)
    if rate is not None:
        _set_lr(run.optimizer, rate)
    if hasattr(recipe.train_ds, "set_epoch"):
        recipe.train_ds.set_epoch(epoch)
    # the order of an epoch depends on (seed, epoch) only: a resumed run sees the same batches
    order = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
    loader = DataLoader(recipe.train_ds, batch_size=config.batch_size, shuffle=True, generator=order,
                        num_workers=config.num_workers, collate_fn=config.collate_fn,
                        pin_memory=config.pin_memory)
    recipe.model.train()
    sums = dict.fromkeys(config.loss_terms, 0.0)
    total, n = 0.0, 0
    for step, batch in enumerate(loader, 1):
        loss, terms, items = recipe.forward(recipe.model, batch)
        value = float(loss.item())
        if not math.isfinite(value):
            raise Tio2FijiError(f"{config.what} diverged at epoch {epoch}, step {step} (loss {value}); "
                                f"last.pt holds the last complete epoch.{config.hint}")
        _optimizer_step(config, recipe.schedule, run.optimizer, loss, (epoch, step, steps))
        total += value * items
        n += items
        for k in config.loss_terms:
            if k in terms:
                sums[k] += float(terms[k].item()) * items
        if config.progress is not None:
            config.progress((epoch - 1) * steps + step, config.epochs * steps, f"{label} loss {value:.4f}")
    lr = run.optimizer.param_groups[0]["lr"]
    if run.scheduler is not None:
        run.scheduler.step()
    return {"train_loss": total / max(n, 1), "lr": lr, "terms": {k: s / max(n, 1) for k, s in sums.items()}}


def _optimizer_step(config: FitConfig, schedule: Schedule, optimizer, loss, where) -> None:
    """Backward pass, the step's learning rate (``where``: epoch, step, steps), clipping, step."""
    import torch

    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    rate = schedule.step_lr(*where)
    if rate is not None:
        _set_lr(optimizer, rate)
    if config.clip_grad_norm:
        torch.nn.utils.clip_grad_norm_(optimizer.param_groups[0]["params"], config.clip_grad_norm)
    optimizer.step()


def _validate(config: FitConfig, recipe: Recipe, epoch: int, phase, trained: dict, t0: float):
    """The epoch's history row and the score that chooses ``best.pt``."""
    val_loss, score = recipe.validate(recipe.model)
    row = {"epoch": epoch, **({"phase": phase} if phase else {}), "train_loss": trained["train_loss"],
           "val_loss": val_loss, "val_iou": score, "lr": trained["lr"],
           "seconds": time.perf_counter() - t0, **trained["terms"]}
    if recipe.extra_scores is not None:
        row.update({k: v for k, v in recipe.extra_scores().items() if k in config.history_columns})
        row["seconds"] = time.perf_counter() - t0
    return row, score


def _save_epoch(config: FitConfig, recipe: Recipe, run: _Run, epoch: int, row: dict, score: float) -> None:
    """Record the epoch: ``best.pt`` when its score improved (on an eligible epoch), then
    ``last.pt``, ``history.csv`` and the curves."""
    run.history.append(row)
    improved = recipe.schedule.eligible(epoch) and score > run.best_iou
    if improved:
        run.best_iou, run.best_epoch = score, epoch
    state = {k: v.detach().to("cpu").clone() for k, v in recipe.model.state_dict().items()}
    if improved:
        save_checkpoint(run.out_dir / "best.pt", {"model": state, "model_config": config.model_config,
                                                  "epoch": epoch, "val_iou": score,
                                                  "settings": config.settings})
    # last.pt is written after best.pt: if the run dies in between, resuming redoes the epoch
    save_checkpoint(run.out_dir / "last.pt", {
        "model": state, "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict() if run.scheduler is not None else None,
        "phase": run.phase, "epoch": epoch, "rng": rng_states(), "history": run.history,
        "best_val_iou": run.best_iou, "best_epoch": run.best_epoch,
        "model_config": config.model_config, "settings": config.settings, "resumes": run.resumes,
    })
    write_history(run.out_dir, run.history, config.history_columns)
