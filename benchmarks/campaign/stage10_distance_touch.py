"""Campaign stage 10 (issue 27): stage 7's best (runs/distance-e27.pt = the shipped unet-border, float)
trained on with half the crops centred where two manual particles meet and images drawn half by their
border-band pixels (touch_p 0.5: the band's share of the crops' pixels 2.1 % -> 4.1 %), lr 1e-4 cosine,
30 epochs, the epoch chosen with the shipped decoding. Stage 9 (same start, lr 5e-5, uniform crops)
plateaued below its first epoch. Resumable: rerun this file (resume=True continues runs/distance-touch)."""
import sys

from tio2fiji.training.border import train_border

DECODING = {"threshold": 0.4, "distance": {"seed_threshold": 0.3, "min_seed": 1, "border_threshold": 0.1,
                                           "sigma": 2.0, "h": 0.1}}
out = sys.argv[1] if len(sys.argv) > 1 else "runs/distance-touch"
epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 30
crops = int(sys.argv[3]) if len(sys.argv) > 3 else 128
train_border("runs/data", out, init="runs/distance-e27.pt", width=2, border_weight=1.0, distance_weight=1.0,
             epochs=epochs, crops_per_epoch=crops, batch_size=4, lr=1e-4, schedule="cosine", seed=10, threads=1,
             resume=True, decoding=DECODING, touch_p=0.5,
             scale_augmentation={"zoom": (0.75, 1.33), "zoom_p": 0.5, "coarsen_max": 2.0, "coarsen_p": 0.3})
