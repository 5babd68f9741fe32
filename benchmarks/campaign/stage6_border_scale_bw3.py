"""Campaign stage 6 (issue 27): stage 4 (the shipped unet-border's float weights, trained over a range of
scales; runs/border-scale/best.pt = epoch 20) with the band loss weighted 3x (stage 3's lever, which
raised test F1 but tied on validation), the same scale augmentation, the epoch chosen with the shipped
decoding (threshold 0.4, band 0.02, seed 16, sigma 0). Resumable: rerun this file (resume=True)."""
import sys

from tio2fiji.training.border import train_border
from tio2fiji.training.datasets import SCALE_AUGMENTATION

SHIPPED = {"threshold": 0.4, "border": {"border_threshold": 0.02, "min_seed": 16, "sigma": 0.0, "h": 0.0}}
out = sys.argv[1] if len(sys.argv) > 1 else "runs/border-scale-bw3"
epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 40
train_border("runs/data", out, init="runs/border-scale-e20.pt", width=2, border_weight=3.0,
             epochs=epochs, crops_per_epoch=128, batch_size=4, lr=1e-4, schedule="cosine", seed=6, threads=1,
             resume=True, decoding=SHIPPED, scale_augmentation=SCALE_AUGMENTATION)
