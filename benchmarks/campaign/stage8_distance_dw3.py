"""Campaign stage 8 (issue 27): stage 7's best (runs/distance-e27.pt, float) with the distance loss x3,
the epoch chosen with the decoding the grid chose for stage 7 (seeds: distance smoothed sigma 2 px
over 0.3, band <= 0.3, one per maximum higher than 0.1). Same scale augmentation.
Resumable: rerun this file (resume=True continues runs/distance-dw3)."""
import sys

from tio2fiji.training.border import train_border

DECODING = {"threshold": 0.4, "distance": {"seed_threshold": 0.3, "min_seed": 1, "border_threshold": 0.3,
                                           "sigma": 2.0, "h": 0.1}}
out = sys.argv[1] if len(sys.argv) > 1 else "runs/distance-dw3"
epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 30
crops = int(sys.argv[3]) if len(sys.argv) > 3 else 128
train_border("runs/data", out, init="runs/distance-e27.pt", width=2, border_weight=1.0, distance_weight=3.0,
             epochs=epochs, crops_per_epoch=crops, batch_size=4, lr=1e-4, schedule="cosine", seed=8, threads=1,
             resume=True, decoding=DECODING,
             scale_augmentation={"zoom": (0.75, 1.33), "zoom_p": 0.5, "coarsen_max": 2.0, "coarsen_p": 0.3})
