"""The border U-Net recipe: a U-Net that marks where touching particles meet.

The network (:func:`tio2fiji.models.unet.build_unet` with two output channels,
``model_config["outputs"] = "border"``) predicts, per pixel, the particle logit of the one-output
U-Net and a *border* logit: the band where two particles meet (:func:`tio2fiji.instances.border_band`,
a pixel whose 5×5 window holds two manual particles), as the DSB-2018 winners did. Particles are the
particle mask's regions off the band, grown back over the mask
(:func:`tio2fiji.instances.labels_from_border`): a watershed of the particle probability alone cannot
cut what the probability does not hold, the band says where to cut.

Read :func:`train_border` top to bottom. Training crops are drawn as for the one-output U-Net
(:class:`tio2fiji.training.datasets.RandomCropDataset`, the thesis's augmentation) from the manual
masks' *label images*, so that rotations keep particles apart, and both targets are made from each
augmented crop (:class:`BorderCropDataset`). Drawing fragments of the manual masks (4-connected
components under ``min_fragment`` pixels: most are single pixels touching a real particle
diagonally) are neither particle nor background: their pixels and a one-pixel ring around them do
not count in the loss, and they make no border band. The loss (:func:`make_border_loss`) is the
shipped model's loss on the particle channel (Dice + BCE, gaps weighted) plus Dice + BCE on the
band. After every epoch the model segments the whole validation images and the engine keeps the
epoch with the best F1 at IoU 0.5 (objects under 10 px dropped on both sides, as BAM's scorer) as
``best.pt``.

A run starts from a one-output U-Net (``init``, e.g. the bundled model, trained on the same training
images): its encoder, decoder and particle head are kept, the border head starts at zero weights
and a bias of ``border_bias`` (a small prior probability), so the first epochs go to the new skill.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from ..errors import InputError
from ..instances import BORDER_DEFAULTS, BORDER_WIDTH, border_band, drop_small, labels_from_border
from ..metrics import BAM_MIN_SIZE, count_error, instance_scores, match_counts, match_instances
from ..models.checkpoint import load_checkpoint, load_model, resolve_model
from ..models.device import resolve_device
from ..models.unet import build_unet, parse_config
from ..predict import predict_maps
from ..transforms import TILE
from .datasets import RandomCropDataset, split_pairs
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
from .star import star_samples
from .unet import make_loss

__all__ = ["BORDER_HISTORY_COLUMNS", "FRAGMENT", "SCORE_MIN_SIZE", "BorderCropDataset", "border_samples",
           "make_border_loss", "particle_sizes", "training_pixel_size", "validate_border", "train_border"]

BORDER_HISTORY_COLUMNS = ["epoch", "train_loss", "val_iou", "val_f1", "val_pq", "val_count_error", "lr",
                          "seconds", "fg_loss", "border_loss"]
#: Label value that marks a drawing fragment in a training label image (ignored by the loss).
FRAGMENT = np.iinfo(np.uint16).max
#: Objects under this many pixels are dropped on both sides when validation scores are computed
#: (BAM's scorer counts only objects over 9 px).
SCORE_MIN_SIZE = BAM_MIN_SIZE


def border_samples(pairs, data_bar_rows=None, min_fragment: int = SCORE_MIN_SIZE) -> list:
    """Training images with their manual masks as label images (4-connected, uint16), the
    components under ``min_fragment`` pixels relabelled :data:`FRAGMENT`."""
    samples = star_samples(pairs, data_bar_rows=data_bar_rows)
    for s in samples:
        area = np.bincount(s.mask.ravel())
        small = area < int(min_fragment)
        small[0] = False
        if small.any():
            s.mask = np.where(small[s.mask], FRAGMENT, s.mask).astype(np.uint16)
    return samples


def particle_sizes(samples, pixel_size_m: float | None = None) -> dict:
    """ECD quantiles (10, 50, 90 %) of the particles of :func:`border_samples` (fragments left
    out), in pixels and, with ``pixel_size_m``, in nm: what a model trained on them has seen."""
    areas = np.concatenate([np.bincount(s.mask[(s.mask > 0) & (s.mask != FRAGMENT)].ravel())[1:] for s in samples])
    ecd = np.sqrt(4.0 * areas[areas > 0] / np.pi)
    q = {f"d{int(p)}_px": float(np.percentile(ecd, p)) for p in (10, 50, 90)}
    if pixel_size_m is not None:
        q.update({k.replace("_px", "_nm"): v * pixel_size_m * 1e9 for k, v in list(q.items())})
    return {**q, "particles": int(ecd.size)}


class BorderCropDataset(RandomCropDataset):
    """Random augmented crops of label images with a border U-Net's two targets.

    Items ``(image (1, t, t), target (2, t, t), valid (1, t, t))``, float32 tensors: the target's
    channels are the particle mask and the border band (:func:`tio2fiji.instances.border_band`,
    half-width ``width``) of the augmented crop; ``valid`` is 0 where a rotation invented pixels and
    on the drawing fragments (:data:`FRAGMENT`) with a one-pixel ring. Other parameters as
    :class:`~tio2fiji.training.datasets.RandomCropDataset`; ``samples`` from :func:`border_samples`.
    """

    def __init__(self, samples, width: int = BORDER_WIDTH, **kwargs):
        super().__init__(samples, **kwargs)
        self.width = int(width)

    def __getitem__(self, index: int):
        import torch

        img, lab, val, _ = self.item_arrays(index)
        lab = lab.astype(np.int32)
        frag = lab == FRAGMENT
        if frag.any():
            val = val & ~ndi.binary_dilation(frag, np.ones((3, 3), bool))
            lab = np.where(frag, 0, lab)
        target = np.stack([lab > 0, border_band(lab, self.width)]).astype(np.float32)
        return (torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None],
                torch.from_numpy(target),
                torch.from_numpy(val.astype(np.float32))[None])


def make_border_loss(gap_weight: float = 10.0, border_weight: float = 1.0):
    """``loss(logits, target, valid) -> (loss, terms)`` on ``(N, 2, H, W)`` tensors.

    * particle channel: :func:`tio2fiji.training.unet.make_loss` ``("dice+bce", gap_weight)``, the
      shipped model's loss;
    * border channel: Dice + BCE on the band (:func:`~tio2fiji.training.unet.make_loss` without gap
      weights; the Dice term keeps a band of ~1 % of the pixels from being predicted away), times
      ``border_weight``.

    Pixels where ``valid`` is 0 count in neither term.
    """
    if gap_weight < 0 or border_weight <= 0:
        raise InputError(f"gap_weight must be >= 0 and border_weight > 0, got {gap_weight}, {border_weight}.")
    fg_loss = make_loss("dice+bce", gap_weight)
    band_loss = make_loss("dice+bce", 0.0)

    def loss(logits, target, valid):
        fg = fg_loss(logits[:, :1], target[:, :1], valid)
        band = band_loss(logits[:, 1:2], target[:, 1:2], valid)
        return fg + border_weight * band, {"fg_loss": fg.detach(), "border_loss": band.detach()}

    return loss


def validate_border(model, samples, border: dict | None = None, threshold: float = 0.5,
                    min_size: int = SCORE_MIN_SIZE) -> dict:
    """Segment whole validation images: mean pixel IoU, pooled F1/PQ at IoU 0.5 and the mean count
    error, objects under ``min_size`` pixels dropped on both sides.

    ``samples`` are :func:`border_samples` (fragments count as manual objects here, as in the
    scoring protocol, and under ``min_size`` they are dropped anyway).
    """
    border = dict(BORDER_DEFAULTS if border is None else border)
    tp = fp = fn = 0
    sum_iou, ious, counts = 0.0, [], []
    for s in samples:
        # PyTorch itself: an ONNX graph of weights that change every epoch would be rebuilt each time
        maps = predict_maps(model, s.image, mode="whole", outputs="border", engine="torch")
        labels = drop_small(labels_from_border(maps[0], maps[1], threshold=threshold, **border), min_size)
        gt = drop_small(np.where(s.mask == FRAGMENT, 1, s.mask), min_size)
        c = match_counts(match_instances(labels, gt))
        tp, fp, fn, sum_iou = tp + c["tp"], fp + c["fp"], fn + c["fn"], sum_iou + c["sum_iou"]
        counts.append(count_error(int(labels.max()), int(gt.max())))
        mask, truth = maps[0] > threshold, s.mask > 0
        union = (mask | truth).sum()
        ious.append(float((mask & truth).sum() / union) if union else 1.0)
    scores = instance_scores(tp, fp, fn, sum_iou)
    return {"val_loss": float("nan"), "val_iou": float(np.mean(ious)), "val_f1": scores["f1"],
            "val_pq": scores["pq"], "val_count_error": float(np.mean(counts)), "tp": tp, "fp": fp, "fn": fn}


def training_pixel_size(samples) -> float | None:
    """The training images' common pixel size (m), the model's working scale; None when they have
    none. Images more than 2 % apart are refused: a model has one scale."""
    sizes = [s.pixel_size_m for s in samples]
    known = [p for p in sizes if p is not None]
    if not known:
        return None
    lo, hi = min(known), max(known)
    if hi > 1.02 * lo or len(known) < len(sizes):
        raise InputError(f"training images have different pixel sizes ({lo * 1e9:.4g}-{hi * 1e9:.4g} nm, "
                         f"{len(sizes) - len(known)} uncalibrated); resample them to one pixel size first.")
    return float(np.median(known))


def _init_weights(model, path, encoder: str, border_bias: float) -> None:
    """Start ``model`` from a border U-Net (all weights: a longer run) or a one-output U-Net (see
    the module docstring)."""
    import torch

    ck = load_checkpoint(path)
    cfg = ck.get("model_config", {})
    if cfg.get("encoder") != encoder:
        raise InputError(f"{path}: holds a {cfg.get('encoder')} U-Net, not {encoder}.")
    state = dict(ck.get("model") or {})
    if not state and "weights" in ck:  # a compact model file: expand it through load_model
        state = load_model(path).net.state_dict()
    state = {k: v.float() if torch.is_floating_point(v) else v for k, v in state.items()}
    if cfg.get("outputs") == "border":
        model.load_state_dict(state)
        return
    if cfg.get("outputs", "probability") != "probability":
        raise InputError(f"{path}: a {cfg.get('outputs')!r} U-Net; start from a one-output or border U-Net.")
    w, b = state.pop("segmentation_head.0.weight"), state.pop("segmentation_head.0.bias")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or set(missing) != {"segmentation_head.0.weight", "segmentation_head.0.bias"}:
        raise InputError(f"{path}: weights do not fit a {encoder} U-Net ({(missing + unexpected)[:3]}).")
    head = model.segmentation_head[0]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(float(border_bias))
        head.weight[:1] = w[:1]
        head.bias[:1] = b[:1]


def _decoding(decoding: dict | None, init_path) -> tuple:
    """``(threshold, border)`` that validation decodes with: ``decoding``, else the init border
    U-Net's stored ones, else 0.5 and :data:`~tio2fiji.instances.BORDER_DEFAULTS`."""
    if decoding is None and init_path is not None:
        cfg = load_checkpoint(init_path).get("model_config", {})
        if cfg.get("outputs") == "border":
            decoding = {"threshold": cfg.get("threshold", 0.5), "border": cfg.get("border")}
    decoding = dict(decoding or {})
    unknown = set(decoding) - {"threshold", "border"}
    border = {**BORDER_DEFAULTS, **(decoding.get("border") or {})}
    if unknown or set(border) != set(BORDER_DEFAULTS):
        raise InputError(f"decoding: keys 'threshold' and 'border' ({', '.join(BORDER_DEFAULTS)}), "
                         f"got {sorted(decoding)} / {sorted(border)}.")
    return float(decoding.get("threshold", 0.5)), border


def train_border(data_dir, out_dir, config: str = "resnet18-scratch", init="default", epochs: int = 30,
                 batch_size: int = 4, lr: float = 3e-4, schedule: str = "cosine", gap_weight: float = 10.0,
                 border_weight: float = 1.0, width: int = BORDER_WIDTH, min_fragment: int = SCORE_MIN_SIZE,
                 border_bias: float = -4.0, crops_per_epoch: int | None = None, seed: int = 0,
                 resume: bool = False, images_dir=None, masks_dir=None, threads: int | None = None,
                 overwrite: bool = False, progress=None, device=None, decoding: dict | None = None,
                 scale_augmentation: dict | None = None) -> dict:
    """Train a border U-Net on a practical-mode data folder (:func:`tio2fiji.training.build_dataset`).

    Parameters
    ----------
    data_dir : path
        Holds ``split.json``; the training and validation images are read from the folders it
        records (or ``images_dir``/``masks_dir``).
    out_dir : path
        The run folder (:mod:`tio2fiji.training.engine`); ``best.pt`` is the epoch with the best
        validation F1 (objects over 9 px).
    config : str
        One of :data:`tio2fiji.models.unet.CONFIGS` (its encoder).
    init : path or None
        A one-output U-Net (``"default"``: the bundled one) or a border U-Net to start from; None
        trains from scratch (the configuration's encoder weights).
    gap_weight, border_weight : float
        See :func:`make_border_loss`.
    width : int
        Half-width of the border band in pixels (stored with the model).
    min_fragment : int
        Manual components under this many pixels are drawing fragments, ignored by the loss.
    border_bias : float
        Initial bias of a fresh border head (logit; -4 is a prior probability of 1.8 %).
    epochs, batch_size, lr, schedule, crops_per_epoch, seed, resume, overwrite, threads, progress, device
        As :func:`tio2fiji.training.unet.fit_unet` (the validation images are segmented on the
        same device).
    decoding : dict, optional
        How validation turns the outputs into particles, and what the saved models store:
        ``{"threshold": ..., "border": {...}}`` (:func:`tio2fiji.instances.labels_from_border`).
        Default: the init's own when it is a border U-Net, else threshold 0.5 and
        :data:`tio2fiji.instances.BORDER_DEFAULTS`. Give the decoding a model ships with, so that
        the epoch is chosen as the model will be used.
    scale_augmentation : dict, optional
        Zoom and coarsening of the crops, as :func:`tio2fiji.training.unet.train_unet`
        (:data:`tio2fiji.training.datasets.SCALE_AUGMENTATION`); recorded as ``train_scale``.

    Returns
    -------
    dict
        As :func:`tio2fiji.training.engine.fit`.
    """
    import torch

    device = resolve_device(device)
    check_options(epochs=epochs, batch_size=batch_size, lr=lr, gap_weight=gap_weight, border_weight=border_weight,
                  crops_per_epoch=crops_per_epoch, threads=threads)
    check_run_folder(out_dir, resume, overwrite)
    check_schedule(schedule)
    if int(width) < 1 or int(min_fragment) < 1:
        raise InputError(f"width and min_fragment must be at least 1 pixel (got {width}, {min_fragment}).")
    _, meta = read_split(Path(data_dir) / "split.json")
    if meta.get("mode") == "thesis":
        raise InputError(f"{data_dir}: a thesis-mode data folder (tiles); the border U-Net trains on "
                         f"whole images (dataset build --mode practical).")
    train_pairs, val_pairs, meta = split_pairs(data_dir, images_dir, masks_dir)
    bar = meta.get("data_bar_rows")
    train, val = border_samples(train_pairs, bar, min_fragment), border_samples(val_pairs, bar, min_fragment)
    pixel_size_m = training_pixel_size(train)
    if not val:
        raise InputError(f"{data_dir}: the split has no validation images; the border U-Net chooses "
                         f"its epoch on them.")
    train_ds = BorderCropDataset(train, width=width, seed=seed, length=crops_per_epoch,
                                 tile=int(meta.get("tile", TILE)), **(scale_augmentation or {}))
    encoder, weights = parse_config(config)
    loss_fn = make_border_loss(gap_weight, border_weight)
    init_path = None if init is None else str(resolve_model(init))
    threshold, border = _decoding(decoding, init_path)
    train_scale = train_ds.scale_settings()

    def forward(model, batch):
        image, target, valid = on_device(batch, device)
        loss, terms = loss_fn(model(image), target, valid)
        return loss, terms, image.shape[0]

    last = {}

    def validate(model):
        last.clear()
        last.update(validate_border(model, val, border=border, threshold=threshold))
        return last["val_loss"], last["val_f1"]

    with run_settings(threads, seed):
        model = build_unet(encoder, weights if init is None else None, classes=2)
        if init_path is not None:
            _init_weights(model, init_path, encoder, border_bias)
        model.to(device)

        optimizer_for = adam_optimizer(model, lr, epochs, schedule)

        model_config = {"arch": "unet", "encoder": encoder, "in_channels": 1, "classes": 2,
                        "outputs": "border", "border_width": int(width), "config": config,
                        "init": init_path, "threshold": threshold, "border": dict(border),
                        "pixel_size_m": pixel_size_m, "train_ecd": particle_sizes(train, pixel_size_m),
                        "train_scale": train_scale,
                        "normalisation": "transforms.normalize_for_network"}
        settings = {"recipe": "border", "device": str(device), "epochs": epochs, "batch_size": batch_size,
                    "lr": lr, "schedule": schedule, "gap_weight": gap_weight, "border_weight": border_weight,
                    "width": int(width), "min_fragment": int(min_fragment), "border_bias": border_bias,
                    "seed": seed, "threads": torch.get_num_threads(), "train_items": len(train_ds),
                    "val_images": [s.name for s in val],
                    "selection": f"val_f1 (F1 at IoU 0.5 pooled over the validation images, objects "
                                 f"under {SCORE_MIN_SIZE} px dropped on both sides)",
                    **({"train_scale": train_scale} if scale_augmentation else {}),
                    **({} if decoding is None else {"decoding": {"threshold": threshold, "border": border}}),
                    "model_config": model_config, "data_dir": str(Path(data_dir).resolve())}
        run = FitConfig(out_dir, epochs, batch_size, seed, settings, model_config, BORDER_HISTORY_COLUMNS,
                        loss_terms=("fg_loss", "border_loss"), resume=resume, overwrite=overwrite,
                        pin_memory=device.type == "cuda", score_label="val_f1",
                        what="border U-Net training", hint=" Lower lr.", progress=progress)
        return fit(run, Recipe(model, train_ds, forward, validate, Schedule(optimizer_for),
                               extra_scores=lambda: dict(last)))
