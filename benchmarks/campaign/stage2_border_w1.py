"""Campaign stage 2 (issue 27): border band half-width 1 (small particles keep their seeds),
fine-tuned from stage 1's best. Resumable: rerun this file (resume=True continues runs/border-w1)."""
from tio2fiji.training.border import train_border

train_border("runs/data", "runs/border-w1", init="runs/border-r18/best.pt", width=1, epochs=40,
             crops_per_epoch=128, batch_size=4, lr=1e-4, schedule="cosine", seed=1, threads=1, resume=True)
