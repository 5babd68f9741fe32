"""Campaign stage 4 (issues 27 and 28): the shipped border U-Net's float weights (stage 1's best,
runs/border-r18/best.pt) fine-tuned with scale augmentation (zoom 0.75-1.33x on half the crops,
coarsened 1-2x on 30 %: images from other magnifications brought to the model's scale), the epoch
chosen with the decoding unet-border ships (threshold 0.4, band 0.05, seed 16 px, sigma 1).
Resumable: rerun this file (resume=True continues runs/border-scale)."""
import sys

from tio2fiji.training.border import train_border

SHIPPED = {"threshold": 0.4, "border": {"border_threshold": 0.05, "min_seed": 16, "sigma": 1.0, "h": 0.0}}
out = sys.argv[1] if len(sys.argv) > 1 else "runs/border-scale"
epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 40
crops = int(sys.argv[3]) if len(sys.argv) > 3 else 128
train_border("runs/data", out, init="runs/border-r18/best.pt", width=2, border_weight=1.0,
             epochs=epochs, crops_per_epoch=crops, batch_size=4, lr=1e-4, schedule="cosine", seed=4, threads=1,
             resume=True, decoding=SHIPPED,
             scale_augmentation={"zoom": (0.75, 1.33), "zoom_p": 0.5, "coarsen_max": 2.0, "coarsen_p": 0.3})
