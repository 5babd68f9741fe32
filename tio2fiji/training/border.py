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
from ..instances import (
    BORDER_DEFAULTS,
    BORDER_WIDTH,
    DISTANCE_DEFAULTS,
    border_band,
    drop_small,
    inner_distance,
    labels_from_maps,
)
from ..metrics import BAM_MIN_SIZE, count_error, instance_scores, match_counts, match_instances
from ..models.checkpoint import checkpoint_contents, load_checkpoint, resolve_model
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

__all__ = ["BORDER_HISTORY_COLUMNS", "DISTANCE_HISTORY_COLUMNS", "FRAGMENT", "SCORE_MIN_SIZE", "BorderCropDataset",
           "border_samples", "make_border_loss", "particle_sizes", "training_pixel_size", "validate_border",
           "train_border"]

BORDER_HISTORY_COLUMNS = ["epoch", "train_loss", "val_iou", "val_f1", "val_pq", "val_count_error", "lr",
                          "seconds", "fg_loss", "border_loss"]
#: The decoding parameters of each output kind this recipe trains, when none are given.
_DECODING_DEFAULTS = {"border": BORDER_DEFAULTS, "distance": DISTANCE_DEFAULTS}
#: A distance U-Net's history: the border U-Net's, and its distance loss.
DISTANCE_HISTORY_COLUMNS = BORDER_HISTORY_COLUMNS + ["distance_loss"]
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
    half-width ``width``) of the augmented crop, and with ``distance`` a third, each particle's
    normalised distance to its edge (:func:`tio2fiji.instances.inner_distance`); ``valid`` is 0
    where a rotation invented pixels and on the drawing fragments (:data:`FRAGMENT`) with a
    one-pixel ring. With ``touch_p`` > 0 that share of the crops is centred on a random pixel of
    an image's border band (where two manual particles meet), and images are drawn by a mixture of
    their areas and (with that weight) their band pixels, so that the dense agglomerates, where
    particles merge, are seen more often; 0 (default) draws as
    :class:`~tio2fiji.training.datasets.RandomCropDataset`. Other parameters as that class;
    ``samples`` from :func:`border_samples`.
    """

    def __init__(self, samples, width: int = BORDER_WIDTH, distance: bool = False, touch_p: float = 0.0,
                 **kwargs):
        super().__init__(samples, **kwargs)
        self.width = int(width)
        self.distance = bool(distance)
        check_options(touch_p=touch_p)
        self.touch_p = float(touch_p)
        self._touch = None
        if self.touch_p > 0:
            self._touch = [np.flatnonzero(border_band(np.where(s.mask == FRAGMENT, 0, s.mask), self.width))
                           for s in self.samples]
            band = np.array([t.size for t in self._touch], dtype=np.float64)
            if band.sum() > 0:
                self._weights = (1 - self.touch_p) * self._weights + self.touch_p * band / band.sum()

    def _window_origin(self, rng, k: int, side: int) -> tuple[int, int]:
        if self._touch is None or not rng.random() < self.touch_p or self._touch[k].size == 0:
            return super()._window_origin(rng, k, side)
        h, w = self.samples[k].image.shape
        cy, cx = divmod(int(self._touch[k][int(rng.integers(self._touch[k].size))]), w)
        wy = min(max(cy - side // 2, 0), h - side) if h >= side else -((side - h) // 2)
        wx = min(max(cx - side // 2, 0), w - side) if w >= side else -((side - w) // 2)
        return wy, wx

    def __getitem__(self, index: int):
        import torch

        img, lab, val, _ = self.item_arrays(index)
        lab = lab.astype(np.int32)
        frag = lab == FRAGMENT
        if frag.any():
            val = val & ~ndi.binary_dilation(frag, np.ones((3, 3), bool))
            lab = np.where(frag, 0, lab)
        maps = [lab > 0, border_band(lab, self.width)] + ([inner_distance(lab)] if self.distance else [])
        target = np.stack(maps).astype(np.float32)
        return (torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None],
                torch.from_numpy(target),
                torch.from_numpy(val.astype(np.float32))[None])


def make_border_loss(gap_weight: float = 10.0, border_weight: float = 1.0, distance_weight: float = 0.0):
    """``loss(logits, target, valid) -> (loss, terms)`` on ``(N, 2, H, W)`` tensors (``(N, 3, H, W)``
    with ``distance_weight > 0``).

    * particle channel: :func:`tio2fiji.training.unet.make_loss` ``("dice+bce", gap_weight)``, the
      shipped model's loss;
    * border channel: Dice + BCE on the band (:func:`~tio2fiji.training.unet.make_loss` without gap
      weights; the Dice term keeps a band of ~1 % of the pixels from being predicted away), times
      ``border_weight``;
    * distance channel (``distance_weight > 0``): binary cross-entropy of its sigmoid against the
      normalised distance (a soft target), on the manual particles' pixels only (outside them the
      particle channel decides), times ``distance_weight``.

    Pixels where ``valid`` is 0 count in no term.
    """
    import torch

    if gap_weight < 0 or border_weight <= 0 or distance_weight < 0:
        raise InputError(f"gap_weight and distance_weight must be >= 0 and border_weight > 0, got "
                         f"{gap_weight}, {border_weight}, {distance_weight}.")
    fg_loss = make_loss("dice+bce", gap_weight)
    band_loss = make_loss("dice+bce", 0.0)

    def loss(logits, target, valid):
        fg = fg_loss(logits[:, :1], target[:, :1], valid)
        band = band_loss(logits[:, 1:2], target[:, 1:2], valid)
        total, terms = fg + border_weight * band, {"fg_loss": fg.detach(), "border_loss": band.detach()}
        if distance_weight > 0:
            inside = valid * target[:, :1]
            bce = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 2:3], target[:, 2:3], reduction="none")
            dist = (bce * inside).sum() / inside.sum().clamp_min(1.0)
            total, terms["distance_loss"] = total + distance_weight * dist, dist.detach()
        return total, terms

    return loss


def validate_border(model, samples, border: dict | None = None, threshold: float = 0.5,
                    min_size: int = SCORE_MIN_SIZE, outputs: str = "border") -> dict:
    """Segment whole validation images: mean pixel IoU, pooled F1/PQ at IoU 0.5 and the mean count
    error, objects under ``min_size`` pixels dropped on both sides.

    ``samples`` are :func:`border_samples` (fragments count as manual objects here, as in the
    scoring protocol, and under ``min_size`` they are dropped anyway). ``border``: the decoding
    parameters of ``outputs`` (``"border"``: :func:`tio2fiji.instances.labels_from_border`,
    ``"distance"``: :func:`tio2fiji.instances.labels_from_distance`; default theirs).
    """
    border = dict(_DECODING_DEFAULTS[outputs] if border is None else border)
    tp = fp = fn = 0
    sum_iou, ious, counts = 0.0, [], []
    for s in samples:
        # PyTorch itself: an ONNX graph of weights that change every epoch would be rebuilt each time
        maps = predict_maps(model, s.image, mode="whole", outputs=outputs, engine="torch")
        labels = drop_small(labels_from_maps(maps, outputs, threshold, "auto", border)[0], min_size)
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


def _init_weights(model, path, encoder: str, border_bias: float, outputs: str = "border", ck=None) -> bool:
    """Start ``model`` (a ``outputs`` U-Net) from one of the same outputs (all weights: a longer
    run), from a distance U-Net (a border U-Net keeps its particle and band heads), or one with
    fewer: a one-output U-Net (see the module docstring) or, for a distance U-Net, a border U-Net;
    a new border head starts at zero weights and a bias of ``border_bias``, a new
    distance head as a copy of the particle head (high inside particles, low at their gaps). Returns
    whether a head is new. ``ck``: the file's checkpoint when already read."""
    import torch

    cfg, state, _ = checkpoint_contents(load_checkpoint(path) if ck is None else ck, path)
    if cfg.get("encoder") != encoder:
        raise InputError(f"{path}: holds a {cfg.get('encoder')} U-Net, not {encoder}.")
    kept = {"probability": 1, "border": 2, "distance": 3}.get(cfg.get("outputs", "probability"))
    n = model.segmentation_head[0].out_channels
    if kept == n:
        model.load_state_dict(state)
        return False
    if kept is None:
        raise InputError(f"{path}: a {cfg.get('outputs')!r} U-Net; a {outputs} U-Net starts from a one-output, "
                         f"border or distance U-Net.")
    w, b = state.pop("segmentation_head.0.weight"), state.pop("segmentation_head.0.bias")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or set(missing) != {"segmentation_head.0.weight", "segmentation_head.0.bias"}:
        raise InputError(f"{path}: weights do not fit a {encoder} U-Net ({(missing + unexpected)[:3]}).")
    head = model.segmentation_head[0]
    if kept > n:  # a border U-Net from a distance U-Net: its particle and band heads
        with torch.no_grad():
            head.weight.copy_(w[:n])
            head.bias.copy_(b[:n])
        return False
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(float(border_bias))
        head.weight[:kept] = w[:kept]
        head.bias[:kept] = b[:kept]
        if outputs == "distance":
            head.weight[2] = w[0]
            head.bias[2] = b[0]
    return True


def _decoding(decoding: dict | None, init_path, outputs: str = "border", ck=None) -> tuple:
    """``(threshold, params)`` that validation decodes with (``params``: of ``outputs``'s rule):
    ``decoding``, else the init's stored ones (a distance U-Net started from a border U-Net keeps
    its threshold), else 0.5 and :data:`~tio2fiji.instances.BORDER_DEFAULTS` /
    :data:`~tio2fiji.instances.DISTANCE_DEFAULTS`."""
    if decoding is None and init_path is not None:
        cfg = (load_checkpoint(init_path) if ck is None else ck).get("model_config", {})
        if cfg.get("outputs") in ("border", "distance"):
            decoding = {"threshold": cfg.get("threshold", 0.5),
                        **({outputs: cfg.get(outputs)} if cfg.get("outputs") == outputs else {})}
    decoding = dict(decoding or {})
    defaults = _DECODING_DEFAULTS[outputs]
    unknown = set(decoding) - {"threshold", outputs}
    params = {**defaults, **(decoding.get(outputs) or {})}
    if unknown or set(params) != set(defaults):
        raise InputError(f"decoding: keys 'threshold' and {outputs!r} ({', '.join(defaults)}), "
                         f"got {sorted(decoding)} / {sorted(params)}.")
    return float(decoding.get("threshold", 0.5)), params


def train_border(data_dir, out_dir, config: str = "resnet18-scratch", init="default", epochs: int = 30,
                 batch_size: int = 4, lr: float = 3e-4, schedule: str = "cosine", gap_weight: float = 10.0,
                 border_weight: float = 1.0, width: int = BORDER_WIDTH, min_fragment: int = SCORE_MIN_SIZE,
                 border_bias: float = -4.0, crops_per_epoch: int | None = None, seed: int = 0,
                 resume: bool = False, images_dir=None, masks_dir=None, threads: int | None = None,
                 overwrite: bool = False, progress=None, device=None, decoding: dict | None = None,
                 scale_augmentation: dict | None = None, distance_weight: float | None = None,
                 head_lr_factor: float | None = None, touch_p: float = 0.0) -> dict:
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
        A one-output U-Net (``"default"``: the bundled one), a border U-Net or (with
        ``distance_weight``) a distance U-Net to start from; None trains from scratch (the
        configuration's encoder weights).
    gap_weight, border_weight : float
        See :func:`make_border_loss`.
    distance_weight : float, optional
        Default: 1 when ``init`` is a distance U-Net, else 0. > 0: a *distance U-Net*
        (``outputs="distance"``): a third output, each particle's
        normalised distance to its edge, with this weight in the loss; its particles are
        :func:`tio2fiji.instances.labels_from_distance`'s.
    head_lr_factor : float, optional
        The output head learns at ``lr`` times this (:func:`~tio2fiji.training.engine.adam_optimizer`);
        default 10 when the init lacks one of the heads (a new head, while the rest is fine-tuned),
        else 1.
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
        ``{"threshold": ..., "border": {...}}`` (:func:`tio2fiji.instances.labels_from_border`);
        a distance U-Net ``{"threshold": ..., "distance": {...}}``.
        Default: the init's own when it is a border U-Net, else threshold 0.5 and
        :data:`tio2fiji.instances.BORDER_DEFAULTS`. Give the decoding a model ships with, so that
        the epoch is chosen as the model will be used.
    scale_augmentation : dict, optional
        Zoom and coarsening of the crops, as :func:`tio2fiji.training.unet.train_unet`
        (:data:`tio2fiji.training.datasets.SCALE_AUGMENTATION`); recorded as ``train_scale``.
    touch_p : float
        Share of the crops centred where two manual particles meet (:class:`BorderCropDataset`).

    Returns
    -------
    dict
        As :func:`tio2fiji.training.engine.fit`.
    """
    import torch

    device = resolve_device(device)
    check_options(epochs=epochs, batch_size=batch_size, lr=lr, gap_weight=gap_weight, border_weight=border_weight,
                  distance_weight=distance_weight, head_lr_factor=head_lr_factor, crops_per_epoch=crops_per_epoch,
                  threads=threads, touch_p=touch_p)
    check_run_folder(out_dir, resume, overwrite)
    init_path = None if init is None else str(resolve_model(init))
    init_ck = None if init_path is None else load_checkpoint(init_path)
    if distance_weight is None:  # the init's kind: fine-tuning a distance U-Net keeps its distance output
        distance_weight = 1.0 if (init_ck or {}).get("model_config", {}).get("outputs") == "distance" else 0.0
    outputs = "distance" if distance_weight > 0 else "border"
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
    train_ds = BorderCropDataset(train, width=width, distance=outputs == "distance", touch_p=touch_p, seed=seed,
                                 length=crops_per_epoch, tile=int(meta.get("tile", TILE)),
                                 **(scale_augmentation or {}))
    encoder, weights = parse_config(config)
    loss_fn = make_border_loss(gap_weight, border_weight, distance_weight)
    threshold, params = _decoding(decoding, init_path, outputs, ck=init_ck)
    train_scale = train_ds.scale_settings()

    def forward(model, batch):
        image, target, valid = on_device(batch, device)
        loss, terms = loss_fn(model(image), target, valid)
        return loss, terms, image.shape[0]

    last = {}

    def validate(model):
        last.clear()
        last.update(validate_border(model, val, border=params, threshold=threshold, outputs=outputs))
        return last["val_loss"], last["val_f1"]

    with run_settings(threads, seed):
        classes = 3 if outputs == "distance" else 2
        model = build_unet(encoder, weights if init is None else None, classes=classes)
        if init_path is not None:
            new_head = _init_weights(model, init_path, encoder, border_bias, outputs, ck=init_ck)
        else:
            new_head = False
        if head_lr_factor is None:
            head_lr_factor = 10.0 if new_head else 1.0
        model.to(device)

        optimizer_for = adam_optimizer(model, lr, epochs, schedule, head_lr_factor)

        model_config = {"arch": "unet", "encoder": encoder, "in_channels": 1, "classes": classes,
                        "outputs": outputs, "border_width": int(width), "config": config,
                        "init": init_path, "threshold": threshold, outputs: dict(params),
                        "pixel_size_m": pixel_size_m, "train_ecd": particle_sizes(train, pixel_size_m),
                        "train_scale": train_scale,
                        "normalisation": "transforms.normalize_for_network"}
        settings = {"recipe": "border", "device": str(device), "epochs": epochs, "batch_size": batch_size,
                    "lr": lr, "schedule": schedule, "gap_weight": gap_weight, "border_weight": border_weight,
                    **({"distance_weight": distance_weight} if distance_weight > 0 else {}),
                    **({"head_lr_factor": head_lr_factor} if head_lr_factor != 1.0 else {}),
                    **({"touch_p": float(touch_p)} if touch_p > 0 else {}),
                    "width": int(width), "min_fragment": int(min_fragment), "border_bias": border_bias,
                    "seed": seed, "threads": torch.get_num_threads(), "train_items": len(train_ds),
                    "val_images": [s.name for s in val],
                    "selection": f"val_f1 (F1 at IoU 0.5 pooled over the validation images, objects "
                                 f"under {SCORE_MIN_SIZE} px dropped on both sides)",
                    **({"train_scale": train_scale} if scale_augmentation else {}),
                    **({} if decoding is None else {"decoding": {"threshold": threshold, outputs: params}}),
                    "model_config": model_config, "data_dir": str(Path(data_dir).resolve())}
        distance = outputs == "distance"
        run = FitConfig(out_dir, epochs, batch_size, seed, settings, model_config,
                        DISTANCE_HISTORY_COLUMNS if distance else BORDER_HISTORY_COLUMNS,
                        loss_terms=("fg_loss", "border_loss") + (("distance_loss",) if distance else ()),
                        resume=resume, overwrite=overwrite,
                        pin_memory=device.type == "cuda", score_label="val_f1",
                        what="border U-Net training", hint=" Lower lr.", progress=progress)
        return fit(run, Recipe(model, train_ds, forward, validate, Schedule(optimizer_for),
                               extra_scores=lambda: dict(last)))
