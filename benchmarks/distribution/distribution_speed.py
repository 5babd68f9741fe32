"""Speed: KD-tree nearest neighbours + tests on 100,000 points vs BioVoxxel's O(n^2) brute force.

Usage::

    python benchmarks/distribution/distribution_speed.py [--n 100000] [--numpy-subset 20000] [--seed 0]

Times, in one run on the same points (uniform in a square window):

1. tio2fiji: ``nearest_neighbour_distances`` (scipy cKDTree, O(n log n)), then the default test
   ``clark_evans_test`` and ``biovoxxel_test`` (each recomputes the NNDs; their total is reported).
2. Brute force like BioVoxxel's double loop (every pair, O(n^2)), compiled with numba (one
   thread, as BioVoxxel's Java loop): on all n points.
3. Brute force in chunked numpy (what a vectorised Python port would do): on a random subset of
   ``--numpy-subset`` points, and extrapolated to n by (n / subset)^2 -- marked as such.

The brute-force NNDs are checked against the KD-tree's. The ratio brute force / KD-tree is
printed in a markdown table.
"""

import argparse
import os
import platform
import sys
import time

import numpy as np
from numba import njit

from tio2fiji import distribution as D


@njit(cache=True)
def brute_force_nnd(x, y):
    """BioVoxxel's loop: for each point, the distance to every other point; keep the minimum."""
    n = x.shape[0]
    out = np.empty(n)
    for i in range(n):
        best = np.inf
        for j in range(n):
            if i != j:
                d = np.sqrt((x[i] - x[j]) ** 2 + (y[i] - y[j]) ** 2)
                if d < best:
                    best = d
        out[i] = best
    return out


def numpy_brute_nnd(pts, chunk=256):
    """Chunked all-pairs distances in numpy; memory chunk x n."""
    out = np.empty(len(pts))
    for start in range(0, len(pts), chunk):
        block = pts[start:start + chunk]
        d2 = ((block[:, None, :] - pts[None, :, :]) ** 2).sum(axis=2)
        d2[np.arange(len(block)), np.arange(start, start + len(block))] = np.inf
        out[start:start + chunk] = np.sqrt(d2.min(axis=1))
    return out


def timed(fn, *args, **kw):
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--numpy-subset", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    side = np.sqrt(args.n) * 10.0  # density 1 point per 100 square units
    pts = rng.random((args.n, 2)) * side
    window = (side, side)

    # warm up compiled code on a tiny input so compile time is not timed
    brute_force_nnd(pts[:10, 0].copy(), pts[:10, 1].copy())
    D.nearest_neighbour_distances(pts[:10])

    d_tree, t_nnd = timed(D.nearest_neighbour_distances, pts)
    _, t_ce = timed(D.clark_evans_test, pts, window)
    _, t_bv = timed(D.biovoxxel_test, pts, side * side)
    t_tree_total = t_nnd + t_ce + t_bv

    d_brute, t_brute = timed(brute_force_nnd, pts[:, 0].copy(), pts[:, 1].copy())
    max_diff = float(np.abs(d_brute - d_tree).max())

    sub = pts[rng.choice(args.n, min(args.numpy_subset, args.n), replace=False)]
    d_np, t_np_sub = timed(numpy_brute_nnd, sub)
    assert np.allclose(d_np, D.nearest_neighbour_distances(sub))
    factor = (args.n / len(sub)) ** 2
    t_np = t_np_sub * factor

    print(f"# NND + test on {args.n:,} points ({platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()})\n")
    print("| what | seconds | brute force / KD-tree NND |")
    print("|---|---|---|")
    print(f"| KD-tree NND (`nearest_neighbour_distances`) | {t_nnd:.3f} | 1 |")
    print(f"| + `clark_evans_test` (default test, NNDs again) | {t_ce:.3f} | |")
    print(f"| + `biovoxxel_test` (NNDs again) | {t_bv:.3f} | |")
    print(f"| **KD-tree route, all three** | **{t_tree_total:.3f}** | |")
    print(f"| brute force O(n^2), numba loop like BioVoxxel's, all {args.n:,} points | {t_brute:.1f} "
          f"| {t_brute / t_nnd:,.0f} (vs all three: {t_brute / t_tree_total:,.0f}) |")
    print(f"| brute force O(n^2), chunked numpy, measured on {len(sub):,} points "
          f"({t_np_sub:.2f} s), **extrapolated** x{factor:.0f} | {t_np:.0f} | {t_np / t_nnd:,.0f} |")
    print(f"\nBrute-force and KD-tree NNDs agree to {max_diff:.1e} (max abs difference).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
