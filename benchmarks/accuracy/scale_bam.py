"""Issue 28: the same field at other magnifications. Each test image's analysed area is resampled
(cubic, :func:`tio2fiji.transforms.resample_image`) by a factor and written as an ImageJ TIFF whose calibration is
set accordingly (pixel size / factor), so the specimen and its particles are the same; then
``tio2fiji.predict.segment`` runs on every copy as a user's file would be read (``read_sem``), with
``scale="none"`` (segmented at the image's own pixel size: tio2fiji before issue 28) and
``scale="model"`` (brought to the model's pixel size). Reported per factor: particle count and
median ECD (nm) relative to the native image's, per image and the range over the images.

Usage::

    python benchmarks/accuracy/scale_bam.py /work/shared/data/bam-tio2 --split runs/data/split.json \
        --out runs/scale [--model default] [--factors 0.5 0.75 1.5 2 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import tifffile
from tqdm import tqdm

from tio2fiji.io import read_sem, write_json
from tio2fiji.metrics import ecd_of_labels
from tio2fiji.models.checkpoint import load_model
from tio2fiji.predict import segment
from tio2fiji.training.splits import read_split
from tio2fiji.transforms import resample_image, scaled_shape


def write_copy(area, pixel_size_m, factor, path: Path) -> Path:
    """The analysed area resampled by ``factor``, as an ImageJ TIFF calibrated in µm."""
    img = resample_image(area, scaled_shape(area.shape, factor))
    per_um = 1.0 / (pixel_size_m / factor * 1e6)
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, img, imagej=True, resolution=(per_um, per_um), metadata={"unit": "micron"})
    return path


def particles(model, path, scale):
    sem = read_sem(path, data_bar_rows=0)
    seg = segment(model, sem, scale=scale)
    ecd_nm = ecd_of_labels(seg.labels) * sem.pixel_size_m * 1e9
    return {"count": int(seg.labels.max()), "median_ecd_nm": float(np.median(ecd_nm)) if ecd_nm.size else float("nan"),
            "pixel_size_nm": sem.pixel_size_m * 1e9, "scale_info": seg.info.get("scale")}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--split", type=Path, required=True)
    ap.add_argument("--subset", default="test")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--model", default="default")
    ap.add_argument("--factors", type=float, nargs="+", default=[0.5, 0.75, 1.5, 2.0, 3.0])
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    model = load_model(a.model)
    split, _ = read_split(a.split)
    rows = []
    for name in tqdm(split[a.subset], desc="images"):
        sem = read_sem(a.data_dir / "SEM" / f"{name}.tif")
        for scale in ("none", "model"):
            native = particles(model, write_copy(sem.analysed, sem.pixel_size_m, 1.0, a.out / f"{name}_x1.tif"), scale)
            for f in a.factors:
                r = particles(model, write_copy(sem.analysed, sem.pixel_size_m, f, a.out / f"{name}_x{f:g}.tif"), scale)
                rows.append({"image": name, "factor": f, "scale": scale, **r,
                             "count_vs_native": r["count"] / native["count"] - 1,
                             "median_ecd_vs_native": r["median_ecd_nm"] / native["median_ecd_nm"] - 1,
                             "native_count": native["count"], "native_median_ecd_nm": native["median_ecd_nm"]})
    write_json(a.out / "scale.json", {"model": a.model, "rows": rows})
    lines = ["| resampling | count vs native, before (scale none) | after (scale model) | median ECD vs native, "
             "before | after |", "|---|---|---|---|---|"]

    def span(vals):
        vals = 100 * np.asarray(vals)
        return f"{vals.min():+.1f} % … {vals.max():+.1f} % (mean |·| {np.abs(vals).mean():.1f} %)"

    for f in a.factors:
        sel = {s: [r for r in rows if r["factor"] == f and r["scale"] == s] for s in ("none", "model")}
        lines.append(f"| {f:g}× | {span([r['count_vs_native'] for r in sel['none']])} | "
                     f"{span([r['count_vs_native'] for r in sel['model']])} | "
                     f"{span([r['median_ecd_vs_native'] for r in sel['none']])} | "
                     f"{span([r['median_ecd_vs_native'] for r in sel['model']])} |")
    (a.out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(json.dumps({"images": split[a.subset], "factors": a.factors}))


if __name__ == "__main__":
    main()
