"""Stage 4's int8 file: the float checkpoint (epoch 20) exported with the post-processing chosen on
the validation images from the int8 maps (runs/border-bench/unet-border-scale/scores.json)."""
import json
import sys
from pathlib import Path

sys.path.insert(0, "benchmarks/makers")
from border_candidates import export_choice  # noqa: E402

row = json.loads(Path("runs/border-bench/unet-border-scale/scores.json").read_text())
row["file"] = "runs/border-scale-e20.pt"
print(row["choice"])
print(export_choice(row, sys.argv[1] if len(sys.argv) > 1 else "runs/unet_border_scale_final.pt",
                    Path("runs/border-bench/data")))
