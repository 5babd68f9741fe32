"""``tio2fiji train unet``, ``train border``, ``train star`` and ``train maskrcnn``: the training recipes."""

from __future__ import annotations

from pathlib import Path

import click

from ..models.maskrcnn import (
    ANCHOR_SIZES,
    BACKBONES,
    BOX_HEAD_DIM,
    CONFIGS,
    DEFAULT_BACKBONE,
    MASK_RESOLUTIONS,
    NORMS,
)
from ._common import _OVERWRITE, _Checked, _device_option, _StepProgress
from ._groups import train_group

_SCALE_AUGMENT = click.option(
    "--scale-augment", is_flag=True,
    help="Practical mode: train for a range of magnifications: half the crops zoomed 0.75-1.33x, 30 percent "
         "coarsened 1-2x (as an image of coarser pixels looks once brought to the model's scale).")


class _AnchorSizes(click.ParamType):
    """``--anchor-sizes``: ``thesis`` (None: the library's :data:`ANCHOR_SIZES`), ``auto`` (from the
    training particles) or five comma-separated positive integers."""

    name = "text"

    def convert(self, value, param, ctx):
        if value is None or isinstance(value, tuple):
            return value
        text = str(value).strip()
        if text.lower() == "thesis":
            return None
        if text.lower() == "auto":
            return "auto"
        parts = [s.strip() for s in text.split(",")]
        if len(parts) == 5 and all(s.isdigit() and int(s) > 0 for s in parts):
            return tuple(int(s) for s in parts)
        self.fail(f"must be 'thesis', 'auto' or five comma-separated positive integers (one per FPN "
                  f"level P2-P6, e.g. {','.join(map(str, ANCHOR_SIZES))}), got {text!r}.", param, ctx)


#: --backbone's choices, the thesis's first
_BACKBONES = [DEFAULT_BACKBONE, *(b for b in BACKBONES if b != DEFAULT_BACKBONE)]
#: Table 3's RoIs sampled per tile, configurations 1-4
_TABLE3_ROIS = ", ".join(str(CONFIGS[k]["box_batch_size_per_image"]) for k in sorted(CONFIGS))


@train_group.command("unet")
@click.argument("data_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Run folder: last.pt, best.pt, history.csv, training_curves.png.")
@click.option("--config", default="resnet18-scratch", show_default=True,
              type=click.Choice(["resnet18-imagenet", "resnet18-scratch", "resnet34-imagenet",
                                 "resnet34-scratch"]), help="One of the thesis's four U-Nets.")
@click.option("--encoder-weights", default=None,
              help="Override the configuration's encoder weights: imagenet, none, or a local file.")
@click.option("--epochs", type=_Checked("epochs"), default=50, show_default=True)
@click.option("--batch-size", type=_Checked("batch_size"), default=4, show_default=True, help="The thesis used 1.")
@click.option("--lr", type=_Checked("lr"), default=1e-4, show_default=True, help="Adam learning rate.")
@click.option("--loss", type=click.Choice(["dice", "dice+bce"]), default="dice", show_default=True)
@click.option("--gap-weight", type=_Checked("gap_weight"), default=0.0, show_default=True,
              help="With dice+bce: extra BCE weight of the 1-pixel gaps between touching particles.")
@click.option("--init", "init", default=None,
              help="Fine-tune: start from this model: 'default', a bundled name, a model file or a checkpoint "
                   "(a fresh optimizer).")
@click.option("--schedule", type=click.Choice(["constant", "cosine"]), default="constant",
              show_default=True)
@click.option("--seed", type=_Checked("seed"), default=0, show_default=True)
@click.option("--crops-per-epoch", type=_Checked("crops_per_epoch"), default=None,
              help="Practical mode: random crops per epoch (default: tiles that fit the images).")
@_SCALE_AUGMENT
@click.option("--resume", is_flag=True, help="Continue from OUT/last.pt.")
@_OVERWRITE
@click.option("--threads", type=_Checked("threads"), default=None, help="torch CPU threads (default: torch's choice).")
@click.option("--workers", type=_Checked("workers"), default=0, show_default=True, help="DataLoader worker processes.")
@_device_option
def train_unet_cmd(data_dir, out_dir, config, encoder_weights, epochs, batch_size, lr, loss, gap_weight,
                   init, schedule, seed, crops_per_epoch, scale_augment, resume, overwrite, threads, workers,
                   device):
    """Train a U-Net on DATA_DIR (written by 'tio2fiji dataset build')."""
    from ..models import resolve_device
    from ..training import train_unet
    from ..training.datasets import SCALE_AUGMENTATION

    device = resolve_device(device)  # a missing GPU is one line, before any data is read
    progress = bar = _StepProgress(f"train {config}")
    try:
        res = train_unet(data_dir, out_dir, config=config, encoder_weights=encoder_weights,
                         epochs=epochs, batch_size=batch_size, lr=lr, loss=loss, gap_weight=gap_weight,
                         init=init, schedule=schedule, seed=seed, resume=resume,
                         crops_per_epoch=crops_per_epoch, num_workers=workers, threads=threads,
                         overwrite=overwrite, progress=progress, device=device,
                         scale_augmentation=SCALE_AUGMENTATION if scale_augment else None)
    finally:
        bar.close()
    click.echo(f"best validation IoU {res['best_val_iou']:.4f} at epoch {res['best_epoch']}; "
               f"{len(res['history'])} epochs in {res['seconds'] / 60:.1f} min on {device}; "
               f"checkpoints in {out_dir}")


@train_group.command("border")
@click.argument("data_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Run folder: last.pt, best.pt (best validation F1), history.csv, training_curves.png.")
@click.option("--config", default="resnet18-scratch", show_default=True,
              type=click.Choice(["resnet18-imagenet", "resnet18-scratch", "resnet34-imagenet",
                                 "resnet34-scratch"]), help="The encoder (weights from --init or scratch).")
@click.option("--init", "init", default="default", show_default=True,
              help="Start from a one-output, border or distance U-Net: 'default', a bundled name or a checkpoint/model "
                   "file; 'none' trains from scratch.")
@click.option("--epochs", type=_Checked("epochs"), default=30, show_default=True)
@click.option("--batch-size", type=_Checked("batch_size"), default=4, show_default=True)
@click.option("--lr", type=_Checked("lr"), default=3e-4, show_default=True, help="Adam learning rate.")
@click.option("--schedule", type=click.Choice(["constant", "cosine"]), default="cosine", show_default=True)
@click.option("--gap-weight", type=_Checked("gap_weight"), default=10.0, show_default=True,
              help="Extra BCE weight of the 1-pixel gaps between touching particles.")
@click.option("--crops-per-epoch", type=_Checked("crops_per_epoch"), default=128, show_default=True)
@click.option("--width", type=click.IntRange(min=1), default=2, show_default=True,
              help="Half-width of the border band in pixels (2: a 5x5 window holding two particles).")
@click.option("--border-weight", type=_Checked("border_weight"), default=1.0, show_default=True,
              help="Weight of the border band's loss beside the particle mask's.")
@click.option("--distance-weight", type=_Checked("distance_weight"), default=None,
              help="> 0: a third output, each particle's normalised distance to its edge (seeds that small "
                   "particles keep), with this weight in the loss; 0: particle and band only. Default: 1 when "
                   "--init is a distance U-Net (the bundled default), else 0.")
@click.option("--touch-p", type=_Checked("touch_p"), default=0.0, show_default=True,
              help="Share of the training crops centred where two manual particles meet (dense agglomerates "
                   "seen more often).")
@_SCALE_AUGMENT
@click.option("--seed", type=_Checked("seed"), default=0, show_default=True)
@click.option("--resume", is_flag=True, help="Continue from OUT/last.pt (give more --epochs to go on).")
@_OVERWRITE
@click.option("--threads", type=_Checked("threads"), default=None, help="torch CPU threads (default: torch's choice).")
@_device_option
def train_border_cmd(data_dir, out_dir, config, init, epochs, batch_size, lr, schedule, gap_weight,
                     crops_per_epoch, width, border_weight, distance_weight, touch_p, scale_augment, seed, resume,
                     overwrite, threads, device):
    """Train a border U-Net (particle mask + where touching particles meet) on DATA_DIR (practical mode)."""
    from ..models import resolve_device
    from ..training.border import train_border
    from ..training.datasets import SCALE_AUGMENTATION

    device = resolve_device(device)
    progress = bar = _StepProgress("train border")
    try:
        res = train_border(data_dir, out_dir, config=config, init=None if init == "none" else init,
                           epochs=epochs, batch_size=batch_size, lr=lr, schedule=schedule,
                           gap_weight=gap_weight, crops_per_epoch=crops_per_epoch, width=width, seed=seed,
                           resume=resume, border_weight=border_weight, distance_weight=distance_weight,
                           touch_p=touch_p, threads=threads, overwrite=overwrite, progress=progress, device=device,
                           scale_augmentation=SCALE_AUGMENTATION if scale_augment else None)
    finally:
        bar.close()
    click.echo(f"best validation F1 {res['best_val_iou']:.4f} at epoch {res['best_epoch']}; "
               f"{len(res['history'])} epochs in {res['seconds'] / 60:.1f} min; checkpoints in {out_dir}")


@train_group.command("star")
@click.argument("data_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Run folder: last.pt, best.pt (best validation F1), history.csv, training_curves.png.")
@click.option("--config", default="resnet18-scratch", show_default=True,
              type=click.Choice(["resnet18-imagenet", "resnet18-scratch", "resnet34-imagenet",
                                 "resnet34-scratch"]), help="The encoder (weights from --init or scratch).")
@click.option("--init", "init", default=None,
              help="Start from a U-Net's encoder, decoder and particle head: 'default', a bundled name or a "
                   "checkpoint/model file.")
@click.option("--n-rays", type=_Checked("n_rays"), default=32, show_default=True, help="Rays per pixel (StarDist).")
@click.option("--epochs", type=_Checked("epochs"), default=15, show_default=True)
@click.option("--batch-size", type=_Checked("batch_size"), default=4, show_default=True)
@click.option("--lr", type=_Checked("lr"), default=3e-4, show_default=True, help="Adam learning rate.")
@click.option("--schedule", type=click.Choice(["constant", "cosine"]), default="cosine", show_default=True)
@click.option("--gap-weight", type=_Checked("gap_weight"), default=10.0, show_default=True,
              help="Extra BCE weight of the 1-pixel gaps between touching particles.")
@click.option("--crops-per-epoch", type=_Checked("crops_per_epoch"), default=128, show_default=True)
@click.option("--seed", type=_Checked("seed"), default=0, show_default=True)
@click.option("--resume", is_flag=True, help="Continue from OUT/last.pt.")
@_OVERWRITE
@click.option("--threads", type=_Checked("threads"), default=None, help="torch CPU threads (default: torch's choice).")
@_device_option
def train_star_cmd(data_dir, out_dir, config, init, n_rays, epochs, batch_size, lr, schedule, gap_weight,
                   crops_per_epoch, seed, resume, overwrite, threads, device):
    """Train a star-convex U-Net (particle mask, object probability, rays) on DATA_DIR (practical mode)."""
    from ..models import resolve_device
    from ..training.star import train_star

    device = resolve_device(device)
    progress = bar = _StepProgress("train star")
    try:
        res = train_star(data_dir, out_dir, config=config, n_rays=n_rays, init=init, epochs=epochs,
                         batch_size=batch_size, lr=lr, schedule=schedule, gap_weight=gap_weight,
                         crops_per_epoch=crops_per_epoch, seed=seed, resume=resume, threads=threads,
                         overwrite=overwrite, progress=progress, device=device)
    finally:
        bar.close()
    click.echo(f"best validation F1 {res['best_val_iou']:.4f} at epoch {res['best_epoch']}; "
               f"{len(res['history'])} epochs in {res['seconds'] / 60:.1f} min; checkpoints in {out_dir}")


@train_group.command("maskrcnn")
@click.argument("data_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Run folder: last.pt, best.pt, history.csv, training_curves.png.")
@click.option("--config", type=click.Choice(["1", "2", "3", "4"]), default="1", show_default=True,
              help="Row of the thesis's Table 3 (3 scored best there).")
@click.option("--rois-per-tile", type=click.IntRange(min=1), default=None,
              help="RoIs sampled per training tile for the box and mask heads (default: the "
                   f"configuration's; thesis Table 3: {_TABLE3_ROIS} in 1-4; torchvision: 512, a faster CPU step).")
@click.option("--backbone", type=click.Choice(_BACKBONES), default=DEFAULT_BACKBONE, show_default=True,
              help="The ResNet under the FPN (the thesis's: resnet50; resnet18/34 are lighter on a CPU).")
@click.option("--weights-backbone", default="none", show_default=True,
              help="Backbone weights: none, imagenet (from the local torch cache only), unet (the bundled "
                   "U-Net's SEM-trained encoder; needs --backbone resnet18), or a file.")
@click.option("--norm", type=click.Choice(["auto", *NORMS]), default="auto", show_default=True,
              help="Backbone normalisation: auto (frozen BatchNorm with pretrained weights, the thesis's; "
                   "trainable batch without), frozen, batch, or group (GroupNorm, independent of the batch size).")
@click.option("--mask-resolution", type=click.Choice([str(r) for r in MASK_RESOLUTIONS]),
              default=str(MASK_RESOLUTIONS[0]), show_default=True,
              help="Side of the predicted masks in pixels (the thesis's: 28).")
@click.option("--anchor-sizes", type=_AnchorSizes(), default="thesis", show_default=True,
              help=f"Anchor sizes of FPN levels P2-P6 in pixels: thesis ({','.join(map(str, ANCHOR_SIZES))}), "
                   "auto (from the training particles' equivalent diameters), or five comma-separated "
                   "positive integers.")
@click.option("--box-head-dim", type=click.IntRange(16, 4096), default=BOX_HEAD_DIM, show_default=True,
              help=f"Width of the box head's two fully connected layers (the thesis's: {BOX_HEAD_DIM}).")
@click.option("--epochs-heads", type=_Checked("epochs_heads"), default=30, show_default=True,
              help="Phase 1: heads only, backbone frozen.")
@click.option("--epochs-all", type=_Checked("epochs_all"), default=50, show_default=True,
              help="Phase 2: the whole network.")
@click.option("--batch-size", type=_Checked("batch_size"), default=2, show_default=True)
@click.option("--lr", type=_Checked("lr"), default=0.01, show_default=True,
              help="SGD learning rate for the first half of each phase.")
@click.option("--lr-final", type=_Checked("lr_final"), default=1e-5, show_default=True,
              help="Learning rate for the second half of each phase.")
@click.option("--warmup-iters", type=click.IntRange(min=0), default=0, show_default=True,
              help="Steps of linear learning-rate warm-up from 0.001x at the start of each phase "
                   "(the thesis's: 0, none).")
@click.option("--trainable-backbone-layers", type=click.IntRange(0, 5), default=None,
              help="Backbone stages trained in phase 2 (default 3 with pretrained weights, 5 without).")
@click.option("--seed", type=_Checked("seed"), default=0, show_default=True)
@click.option("--crops-per-epoch", type=_Checked("crops_per_epoch"), default=None,
              help="Training tiles per epoch (default: every training tile once).")
@click.option("--resume", is_flag=True, help="Continue from OUT/last.pt.")
@_OVERWRITE
@click.option("--threads", type=_Checked("threads"), default=None, help="torch CPU threads (default: torch's choice).")
@_device_option
@click.option("--score-threshold", type=_Checked("score_threshold"), default=0.5, show_default=True,
              help="Detections kept for the validation IoU (stored with the model for prediction).")
@click.option("--no-val-loss", is_flag=True, help="Skip the validation loss (saves a forward pass).")
@click.option("--workers", type=_Checked("workers"), default=0, show_default=True, help="DataLoader worker processes.")
def train_maskrcnn_cmd(data_dir, out_dir, config, rois_per_tile, backbone, weights_backbone, norm,
                       mask_resolution, anchor_sizes, box_head_dim, epochs_heads, epochs_all, batch_size,
                       lr, lr_final, warmup_iters, trainable_backbone_layers, seed, crops_per_epoch, resume,
                       overwrite, threads, device, score_threshold, no_val_loss, workers):
    """Train a Mask R-CNN (thesis Table 3) on DATA_DIR (written by 'tio2fiji dataset build')."""
    from ..models import resolve_device
    from ..training import train_maskrcnn

    device = resolve_device(device)
    progress = bar = _StepProgress(f"train maskrcnn {config}")
    try:
        res = train_maskrcnn(data_dir, out_dir, config=int(config), weights_backbone=weights_backbone,
                             epochs_heads=epochs_heads, epochs_all=epochs_all, batch_size=batch_size,
                             lr=lr, lr_final=lr_final, trainable_backbone_layers=trainable_backbone_layers,
                             seed=seed, resume=resume, threads=threads, crops_per_epoch=crops_per_epoch,
                             score_threshold=score_threshold, val_loss=not no_val_loss,
                             num_workers=workers, backbone=backbone,
                             norm=None if norm == "auto" else norm, mask_resolution=int(mask_resolution),
                             anchor_sizes=anchor_sizes, box_head_dim=box_head_dim, warmup_iters=warmup_iters,
                             overrides=None if rois_per_tile is None else {"box_batch_size_per_image": rois_per_tile},
                             device=device, overwrite=overwrite, progress=progress)
    finally:
        bar.close()
    best = "n/a" if res["best_epoch"] is None else f"{res['best_val_iou']:.4f} at epoch {res['best_epoch']}"
    click.echo(f"best validation IoU {best}; {len(res['history'])} epochs in "
               f"{res['seconds'] / 60:.1f} min; checkpoints in {out_dir}")
