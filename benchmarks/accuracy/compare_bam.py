"""Native vs real ImageJ on every mask of a directory: counts, max deviation per column, times.

Usage::

    python benchmarks/accuracy/compare_bam.py DATA_DIR [--pixel-size METRES] [--csv OUT.csv]

e.g. ``DATA_DIR = ../shared/data/bam-tio2/TiO2_Masks_Manual_4connected``. For every option
combination (connectivity 8/4 × include holes × exclude edges) it prints the particle counts, the
number of masks whose counts differ, the largest deviation of each column over all masks
(relative; angles in degrees modulo 180), and the median time per mask of each backend.
Exit status 1 if any count differs or any value is outside 1e-6 relative / 1e-4 degrees.
"""

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tio2fiji import imagej
from tio2fiji.io import read_mask


def _load_native():
    try:
        from tio2fiji import particles
    except ImportError as err:
        sys.exit(f"tio2fiji.particles (the native backend) is not available: {err}")
    return particles


def compare_directory(data_dir: Path, pixel_size_m=None):
    """Yield one result dict per option combination."""
    particles = _load_native()
    paths = sorted(p for p in data_dir.iterdir() if p.suffix.lower() in (".tif", ".tiff", ".png"))
    if not paths:
        sys.exit(f"no masks (*.tif, *.png) in {data_dir}")
    masks = [(p.name, read_mask(p)) for p in paths]
    imagej.start_imagej()
    for conn, holes, edges in itertools.product((8, 4), (False, True), (False, True)):
        kw = dict(pixel_size_m=pixel_size_m, connectivity=conn, include_holes=holes, exclude_edges=edges)
        n_ij = n_native = count_mismatch = 0
        t_ij, t_native, reports = [], [], []
        for name, mask in masks:
            t0 = time.perf_counter()
            ij = imagej.measure_imagej(mask, image_name=name, **kw)
            t_ij.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            native = particles.measure(mask, image_name=name, **kw)
            t_native.append(time.perf_counter() - t0)
            n_ij, n_native = n_ij + len(ij), n_native + len(native)
            if len(ij) != len(native):
                count_mismatch += 1
                continue
            reports.append(imagej.compare_tables(ij, native))
        merged = (pd.concat(reports).groupby(level=0, sort=False)
                  .agg({"max_abs": "max", "max_rel": "max", "n_outside": "sum"})
                  if reports else pd.DataFrame())
        yield {"connectivity": conn, "include_holes": holes, "exclude_edges": edges,
               "masks": len(masks), "n_imagej": n_ij, "n_native": n_native,
               "count_mismatch": count_mismatch, "deviations": merged,
               "t_imagej": float(np.median(t_ij)), "t_native": float(np.median(t_native))}


def _key(res):
    return (f"c{res['connectivity']}{'+holes' if res['include_holes'] else ''}"
            f"{'+excl' if res['exclude_edges'] else ''}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--pixel-size", type=float, default=None, help="metres per pixel")
    ap.add_argument("--csv", type=Path, help="write the per-column deviations here")
    args = ap.parse_args(argv)
    summary, worst, rows = [], {}, []
    print(f"ImageJ {imagej.imagej_version()}; masks in {args.data_dir}")
    for res in compare_directory(args.data_dir, args.pixel_size_m):
        dev = res["deviations"]
        key = _key(res)
        summary.append({"options": key, "masks": res["masks"], "n_imagej": res["n_imagej"],
                        "n_native": res["n_native"], "count_mismatch": res["count_mismatch"],
                        "out_of_tol": int(dev["n_outside"].sum()) if not dev.empty else 0,
                        "s/mask imagej": res["t_imagej"], "s/mask native": res["t_native"]})
        if not dev.empty:
            # angles: degrees (modulo 180); everything else: relative deviation
            worst[key] = dev["max_rel"].where(~dev.index.isin(imagej.ANGLE_COLUMNS), dev["max_abs"])
            rows.append(dev.assign(options=key))
    table = pd.DataFrame(summary).set_index("options")
    print(table.to_string(float_format=lambda v: f"{v:.4f}"))
    if worst:
        print("\nmax deviation per column (relative; FeretAngle/Angle in degrees):")
        print(pd.DataFrame(worst).to_string(float_format=lambda v: f"{v:.2g}"))
    if args.csv and rows:
        pd.concat(rows).rename_axis("column").to_csv(args.csv)
    ok = bool((table["count_mismatch"] == 0).all() and (table["out_of_tol"] == 0).all())
    print("\nALL AGREE (counts equal, values within 1e-6 relative, angles within 1e-4 degrees)"
          if ok else "\nDIFFERENCES FOUND")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
