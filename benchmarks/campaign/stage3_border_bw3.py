"""Campaign stage 3 (issue 27): the border band weighted 3x in the loss (the decoding chose a band
threshold of 0.05: the network draws the band too faintly where particles merge), fine-tuned from
stage 1's best (width 2). Resumable: rerun this file (resume=True continues runs/border-bw3)."""
from tio2fiji.training.border import train_border

train_border("runs/data", "runs/border-bw3", init="runs/border-r18/best.pt", width=2, border_weight=3.0,
             epochs=40, crops_per_epoch=128, batch_size=4, lr=1e-4, schedule="cosine", seed=2, threads=2,
             resume=True)
