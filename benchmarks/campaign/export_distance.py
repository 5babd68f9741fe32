"""Stage 7's best as a compact int8 file with a given decoding (the one chosen on the validation
int8 maps), the same way border_candidates --export writes it."""
import json
import sys
from pathlib import Path

sys.path.insert(0, "benchmarks/makers")
from border_candidates import export_choice  # noqa: E402

row = json.loads(Path(sys.argv[1]).read_text())  # a scores.json of the float checkpoint
choice = json.loads(Path(sys.argv[2]).read_text())  # a choice.json (e.g. of the int8 maps)
row["choice"] = {k: v for k, v in choice.items() if k != "grid"}
print(export_choice(row, sys.argv[3], Path("runs/border-bench/data")))
