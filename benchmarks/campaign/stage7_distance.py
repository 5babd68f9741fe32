"""Campaign stage 7 (issue 27): a third output, each particle's normalised distance to its edge
(tio2fiji.instances.inner_distance), added to the shipped border U-Net (stage 4's float weights,
runs/border-scale-e20.pt): seeds that small particles in dense agglomerates keep, where the band
covers them whole. Same scale augmentation as stage 4; validation decodes with the shipped threshold
0.4 and seeds where the distance, smoothed with sigma 1 px, exceeds 0.4 (at least 4 px): the
best of a small grid on epoch 7 of a run that decoded with labels_from_distance's defaults (seeds
over 0.5, no smoothing: validation F1 0.46, far too many seeds; runs/distance-seed05). The new distance head starts as
a copy of the particle head and learns at 10x lr (head_lr_factor default for a new head); a first try
with a zero head at 1x lr learned too slowly (runs/distance-slowhead: predicted distances stayed
under 0.54 after 6 epochs).
Resumable: rerun this file (resume=True continues runs/distance)."""
import sys

from tio2fiji.training.border import train_border

DECODING = {"threshold": 0.4, "distance": {"seed_threshold": 0.4, "min_seed": 4, "border_threshold": 1.0, "sigma": 1.0}}
out = sys.argv[1] if len(sys.argv) > 1 else "runs/distance"
epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 40
crops = int(sys.argv[3]) if len(sys.argv) > 3 else 128
train_border("runs/data", out, init="runs/border-scale-e20.pt", width=2, border_weight=1.0, distance_weight=1.0,
             epochs=epochs, crops_per_epoch=crops, batch_size=4, lr=1e-4, schedule="cosine", seed=7, threads=1,
             resume=True, decoding=DECODING,
             scale_augmentation={"zoom": (0.75, 1.33), "zoom_p": 0.5, "coarsen_max": 2.0, "coarsen_p": 0.3})
