"""Stage 5's int8 file: the default U-Net fine-tuned over a range of scales (runs/default-scale/best.pt),
with the default's own particle rule (threshold 0.5, watershed h 0.75, sigma 1), the training images'
pixel size and particle sizes, and an int8 calibration on 16 training crops (seed 0, no augmentation),
as the bundled default's."""
import sys
from pathlib import Path

import numpy as np

from tio2fiji.models.checkpoint import export_model, load_checkpoint, load_model
from tio2fiji.models.onnx import int8_calibration
from tio2fiji.training.border import border_samples, particle_sizes, training_pixel_size
from tio2fiji.training.datasets import RandomCropDataset, split_pairs

src = sys.argv[1] if len(sys.argv) > 1 else "runs/default-scale/best.pt"
dest = sys.argv[2] if len(sys.argv) > 2 else "runs/unet_watershed_scale.pt"
train_pairs, _, meta = split_pairs(Path("runs/data"))
samples = border_samples(train_pairs, meta.get("data_bar_rows"))
pixel_size = training_pixel_size(samples)
crops_ds = RandomCropDataset(samples, length=16, seed=0, variants=((None, 0),), photometric_p=0.0)
crops = np.stack([crops_ds.item_arrays(i)[0][None] for i in range(16)]).astype(np.float32)
shipped = load_model("default").settings
ck = load_checkpoint(src)
print(export_model(ck, dest, weights="int8", threshold=shipped.threshold, watershed=shipped.watershed,
                   pixel_size_m=pixel_size, train_ecd=particle_sizes(samples, pixel_size),
                   int8_calibration=int8_calibration(load_model(src), crops),
                   metadata={"chosen_on": "validation images 1908260, 1908284, 1908292, 1908306 (pixel IoU per "
                                          "epoch; particle rule of the bundled default)"}))
