"""Campaign stage 9 (issue 27): stage 7's best (runs/distance-e27.pt = the shipped unet-border, float)
trained on at half the rate (lr 5e-5 cosine, 40 epochs), the epoch chosen with the decoding it ships
with (threshold 0.4; seeds: distance smoothed sigma 2 over 0.3, band <= 0.1, h 0.1). Started at the
end of stop 29; resumable: rerun this file (resume=True continues runs/distance-long)."""
import sys

from tio2fiji.training.border import train_border

DECODING = {"threshold": 0.4, "distance": {"seed_threshold": 0.3, "min_seed": 1, "border_threshold": 0.1,
                                           "sigma": 2.0, "h": 0.1}}
out = sys.argv[1] if len(sys.argv) > 1 else "runs/distance-long"
epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 40
crops = int(sys.argv[3]) if len(sys.argv) > 3 else 128
train_border("runs/data", out, init="runs/distance-e27.pt", width=2, border_weight=1.0, distance_weight=1.0,
             epochs=epochs, crops_per_epoch=crops, batch_size=4, lr=5e-5, schedule="cosine", seed=9, threads=1,
             resume=True, decoding=DECODING,
             scale_augmentation={"zoom": (0.75, 1.33), "zoom_p": 0.5, "coarsen_max": 2.0, "coarsen_p": 0.3})
