"""Native vs ImageJ on the BAM TiO2 masks: UEPs, BioVoxxel statistics, and the sound tests.

Usage::

    python benchmarks/distribution/distribution_bam.py DATA_DIR [--pixel-size METRES] [--n-sim 199]
                                          [--csv distribution.csv]

``DATA_DIR`` is the BAM data set (holding ``TiO2_Masks_Manual_4connected/`` and ``SEM/``) or the
mask folder itself, e.g. ``../shared/data/bam-tio2``. For every mask:

1. **UEPs**: :func:`tio2fiji.distribution.ultimate_points` (native) against ImageJ's own
   *Ultimate Points* (``EDM`` plugin, run in a JVM): count, same pixels, same 8-bit values.
2. **BioVoxxel**: the native :func:`biovoxxel_test` on the UEPs' centroids against the ImageJ
   macro ``tio2fiji/macros/BioVoxxel_Particle_Distribution.ijm`` run by ImageJ on ImageJ's UEP image, both
   uncalibrated (pixels) and calibrated (nm centroids, area in pixels, as BioVoxxel): T, df,
   critical t, test and classification.
3. **Verdicts** on the analysed area (the mask without the 64-row data bar, 1024 x 704 px):
   BioVoxxel (uncalibrated and calibrated), Clark-Evans with Donnelly's correction and the Monte
   Carlo CSR test, in nm.

The masks are whole frames (1024 x 768) as published; steps 1-2 use them as they are. The pixel
size comes from each SEM image's metadata when ``SEM/`` is there, else ``--pixel-size``
(default 7.34375e-9 m). Exit status 1 on any native/ImageJ disagreement.
"""

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tio2fiji import distribution as D
from tio2fiji import imagej
from tio2fiji.io import read_mask, read_sem

DATA_BAR_ROWS = 64
STAT_KEYS = ("n", "expected_nnd", "observed_nnd", "variance", "F", "statistic", "df",
             "critical_value", "test", "classification")


def find_masks(data_dir: Path):
    for cand in (data_dir / "TiO2_Masks_Manual_4connected", data_dir):
        paths = sorted(cand.glob("*_m.tif"))
        if paths:
            return paths
    sys.exit(f"no *_m.tif masks in {data_dir} or {data_dir / 'TiO2_Masks_Manual_4connected'}")


def pixel_size_for(mask_path: Path, default: float) -> float:
    sem = mask_path.parent.parent / "SEM" / (mask_path.name.replace("_m.tif", ".tif"))
    if sem.is_file():
        ps = read_sem(sem).pixel_size_m
        if ps:
            return float(ps)
    return default


def same_stats(a: dict, b: dict) -> list:
    """Keys where the macro and native results differ (floats to 1e-12 relative)."""
    bad = []
    for key in STAT_KEYS:
        x, y = a[key], b[key]
        if isinstance(x, str) or isinstance(y, str):
            ok = x == y
        elif math.isnan(x) and math.isnan(y):
            ok = True
        else:
            ok = x == y or math.isclose(x, y, rel_tol=1e-12)
        if not ok:
            bad.append(f"{key}: {x} vs {y}")
    return bad


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--pixel-size", type=float, default=7.34375e-9)
    ap.add_argument("--n-sim", type=int, default=199)
    ap.add_argument("--csv", type=Path, help="write the distribution rows (all methods) here")
    args = ap.parse_args(argv)

    paths = find_masks(args.data_dir)
    version = imagej.start_imagej()
    D.ultimate_points(np.ones((3, 3), bool))  # load the compiled code before timing
    lines, rows, problems = [], [], []
    t_native = t_ij = t_macro = 0.0
    total_ueps = 0
    for path in paths:
        name = path.name.replace("_m.tif", "")
        mask = read_mask(path)
        ps = pixel_size_for(path, args.pixel_size_m)

        t0 = time.perf_counter()
        native, values = D.ultimate_points(mask)
        t1 = time.perf_counter()
        ref, ref_values = D.ultimate_points_imagej(mask)
        t2 = time.perf_counter()
        t_native += t1 - t0
        t_ij += t2 - t1
        same_pixels = native.shape == ref.shape and np.array_equal(native, ref)
        same_values = same_pixels and np.array_equal(
            np.minimum(255, np.floor(values.astype(float) + 0.5)), ref_values)
        if not (same_pixels and same_values):
            problems.append(f"{name}: UEPs differ ({len(native)} native, {len(ref)} ImageJ)")
        total_ueps += len(native)

        # BioVoxxel on the whole frame: native on native UEPs, macro on ImageJ's UEP image
        ij_uep = np.zeros(mask.shape, bool)
        ij_uep[ref[:, 0], ref[:, 1]] = True
        bv = {}
        for label, size in (("px", None), ("nm", ps)):
            nat = D.biovoxxel_test(D.biovoxxel_points(native, size), mask.size)
            t3 = time.perf_counter()
            mac = D.biovoxxel_test_imagej(ij_uep, pixel_size_m=size)
            t_macro += time.perf_counter() - t3
            diff = same_stats(nat, mac)
            if diff:
                problems.append(f"{name} ({label}): BioVoxxel native vs macro: {'; '.join(diff)}")
            bv[label] = (nat, mac, not diff)

        # verdicts on the analysed area (no data bar), nm
        area = mask[: mask.shape[0] - DATA_BAR_ROWS]
        r_bv_px = D.test_distribution(area, "biovoxxel", image=name)
        r_bv_nm = D.test_distribution(area, "biovoxxel", pixel_size_m=ps, image=name)
        r_ce = D.test_distribution(area, "clark-evans", pixel_size_m=ps, image=name)
        r_mc = D.test_distribution(area, "monte-carlo", pixel_size_m=ps, image=name,
                                   n_sim=args.n_sim, seed=0)
        rows += [r_bv_px | {"variant": "biovoxxel (px)"}, r_bv_nm | {"variant": "biovoxxel (nm)"},
                 r_ce | {"variant": "clark-evans (nm)"}, r_mc | {"variant": "monte-carlo (nm)"}]

        nat_px, mac_px, ok_px = bv["px"]
        nat_nm, mac_nm, ok_nm = bv["nm"]
        lines.append(
            f"| {name} | {len(native)} | {len(ref)} | {'yes' if same_pixels and same_values else 'NO'} "
            f"| {nat_px['n']} | {nat_px['statistic']:.3f} / {mac_px['statistic']:.3f} | "
            f"{nat_px['df']:.0f} | {nat_px['critical_value']:.4f} | {nat_px['classification']} "
            f"| {'yes' if ok_px else 'NO'} | {nat_nm['statistic']:.3f} | {nat_nm['classification']} "
            f"| {'yes' if ok_nm else 'NO'} "
            f"| {r_ce['ratio']:.3f}, p={r_ce['p_value']:.3g}: {r_ce['classification']} "
            f"| p={r_mc['p_value']:.3f}: {r_mc['classification']} |")

    n = len(paths)
    print(f"# Spatial distribution on {n} BAM masks (ImageJ {version})\n")
    print("Columns: UEP counts native / ImageJ and whether the pixels and 8-bit values are "
          "identical; BioVoxxel (whole frame) uncalibrated: particles n (8-connected UEP groups), "
          "T native / macro, df, critical t, class, and whether all of T, df, critical t, test, "
          "class agree with the macro; the same calibrated (nm centroids, px area); then the sound "
          "tests on the analysed area (1024 x 704 px) in nm.\n")
    print("| mask | UEPs native | UEPs ImageJ | identical | n | T (px) native / macro | df | crit t "
          "| class (px) | macro = native | T (nm) | class (nm) | macro = native "
          "| Clark-Evans R, p | Monte Carlo |")
    print("|---|" + "---|" * 14)
    print("\n".join(lines))
    print()
    n_uep_ok = n - sum("UEPs differ" in p for p in problems)
    n_bv_ok = n - len({p.split(" ")[0] for p in problems if "BioVoxxel" in p})
    print(f"- UEPs identical (count, pixels, values): {n_uep_ok}/{n} masks, {total_ueps} UEPs in all")
    print(f"- BioVoxxel native = ImageJ macro (px and nm): {n_bv_ok}/{n} masks")
    df = pd.DataFrame(rows)
    for variant, sub in df.groupby("variant", sort=False):
        counts = sub["classification"].value_counts().to_dict()
        print(f"- {variant} on the analysed area: {counts}")
    print(f"- time per mask: native UEPs {1000 * t_native / n:.0f} ms, ImageJ UEPs "
          f"{1000 * t_ij / n:.0f} ms, BioVoxxel macro {t_macro / (2 * n):.1f} s")
    if problems:
        print("\nDisagreements:\n" + "\n".join(f"- {p}" for p in problems))
    if args.csv:
        cols = list(D.COLUMNS) + [c for c in df.columns if c not in D.COLUMNS]
        df[cols].to_csv(args.csv, index=False)
        print(f"\nRows written to {args.csv}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
