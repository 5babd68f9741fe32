"""Campaign stage 5 (issue 28): the default U-Net (unet-watershed) fine-tuned with the scale
augmentation (train unet --scale-augment: half the crops zoomed 0.75-1.33x, 30 % coarsened 1-2x),
Dice + BCE with the gaps weighted as unet-border's particle channel, lr 1e-4 cosine.
Resumable: rerun this file (resume=True continues runs/default-scale)."""
import sys

from tio2fiji.training import train_unet
from tio2fiji.training.datasets import SCALE_AUGMENTATION

out = sys.argv[1] if len(sys.argv) > 1 else "runs/default-scale"
epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 40
crops = int(sys.argv[3]) if len(sys.argv) > 3 else 128
train_unet("runs/data", out, config="resnet18-scratch", init="default", epochs=epochs, batch_size=4, lr=1e-4,
           loss="dice+bce", gap_weight=10.0, schedule="cosine", seed=5, resume=True, crops_per_epoch=crops,
           threads=1, scale_augmentation=SCALE_AUGMENTATION)
