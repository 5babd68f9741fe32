"""False-positive rate and power of the distribution tests on simulated patterns with known truth.

Usage::

    python benchmarks/distribution/distribution_power.py [--patterns 200] [--n 200 1000] [--n-sim 99]
                                            [--seed 2024] [--no-envelope]

Patterns (all with exactly n points in the thesis frame, 1280 x 896 pixels):

- **Poisson**: n independent uniform points (complete spatial randomness, CSR). Any "not random"
  verdict is a false positive.
- **Thomas** (clustered): parents uniform in the window dilated by 4 sigma, Poisson(mu = 4)
  offspring each, Gaussian displacement with sigma = SIGMA sqrt(A/n); n of the offspring that
  fall in the window are kept at random.
- **Matern cluster**: as Thomas, offspring uniform in a disc of radius R = RADIUS sqrt(A/n).
- **Hard-core** (regular): random sequential placement of discs of diameter HARD sqrt(A/n);
  no two centres closer than that.

The parameters (module constants) make the alternatives mild, so that power is informative
rather than 1 everywhere.

Tests:

- **Clark-Evans, Donnelly** (tio2fiji's default, ``clark_evans_test``): two-sided z test at 0.05.
- **Clark-Evans, no edge correction**: the same without Donnelly's terms, to show the border bias.
- **Monte Carlo mean NND** (``monte_carlo_test``, CSR null, ``--n-sim`` simulations).
- **L-function MAD** (``envelopes``): global maximum-absolute-deviation envelope test on
  Ripley's L (translation correction), r up to a quarter of the shorter window side.
- **BioVoxxel** (``biovoxxel_test``, median, alpha = 0.05), with coordinates in pixels (as on an
  uncalibrated image) and in nm at 7.34375 nm/pixel with the area still in pixels (as BioVoxxel
  does on a calibrated image).

For Poisson the table gives the false-positive rate (fraction not classed "random") with a 95%
Clopper-Pearson interval; for the other models the power: the fraction classed in the true
direction ("clustered"/"clustering" for Thomas and Matern, "regular"/"self-avoiding" for
hard-core). The script exits with status 1 if the default test's false-positive rate is not
within 0.03 of 0.05 at every n.
"""

import argparse
import sys
import time

import numpy as np
from scipy import stats
from tqdm import tqdm

from tio2fiji import distribution as D

WIDTH, HEIGHT = 1280.0, 896.0
PIXEL_NM = 7.34375
SIGMA, RADIUS, HARD = 0.8, 1.4, 0.2  # Thomas sigma, Matern radius, hard-core diameter / sqrt(A/n)


def _keep_n(points, n, rng):
    inside = (points[:, 0] >= 0) & (points[:, 0] <= WIDTH) & (points[:, 1] >= 0) & (points[:, 1] <= HEIGHT)
    points = points[inside]
    if len(points) < n:
        return None
    return points[rng.choice(len(points), n, replace=False)]


def _cluster_process(n, rng, offspring):
    """Parents in the dilated window, Poisson(4) offspring each; retry until n fall inside."""
    spacing = np.sqrt(WIDTH * HEIGHT / n)
    margin = 4 * max(SIGMA, RADIUS) * spacing
    mu = 4.0
    while True:
        area = (WIDTH + 2 * margin) * (HEIGHT + 2 * margin)
        n_par = rng.poisson(1.3 * n / mu * area / (WIDTH * HEIGHT))
        parents = rng.random((n_par, 2)) * (WIDTH + 2 * margin, HEIGHT + 2 * margin) - margin
        counts = rng.poisson(mu, n_par)
        centres = np.repeat(parents, counts, axis=0)
        pts = _keep_n(centres + offspring(len(centres), spacing, rng), n, rng)
        if pts is not None:
            return pts


def thomas(n, rng):
    return _cluster_process(n, rng, lambda k, s, g: g.normal(0, SIGMA * s, (k, 2)))


def matern(n, rng):
    def uniform_disc(k, s, g):
        r = RADIUS * s * np.sqrt(g.random(k))
        t = g.random(k) * 2 * np.pi
        return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)
    return _cluster_process(n, rng, uniform_disc)


def poisson(n, rng):
    return rng.random((n, 2)) * (WIDTH, HEIGHT)


def hardcore(n, rng):
    radius = 0.5 * HARD * np.sqrt(WIDTH * HEIGHT / n)
    return D.random_sequential_discs(np.full(n, radius), (WIDTH, HEIGHT), rng)


MODELS = {"Poisson": (poisson, None), "Thomas": (thomas, "clustered"),
          "Matern cluster": (matern, "clustered"), "Hard-core": (hardcore, "regular")}
BIOVOXXEL_WORDS = {"clustered": "clustering", "regular": "self-avoiding"}


def run_tests(points, n_sim, seed, envelope):
    window = (WIDTH, HEIGHT)
    out = {
        "Clark-Evans, Donnelly (default)": D.clark_evans_test(points, window)["classification"],
        "Clark-Evans, no edge correction":
            D.clark_evans_test(points, window, edge_correction="none")["classification"],
        f"Monte Carlo mean NND ({n_sim} sims)":
            D.monte_carlo_test(points, window, n_sim=n_sim, seed=seed)["classification"],
    }
    if envelope:
        env = D.envelopes(points, window, n_sim=n_sim, seed=seed)
        out[f"L-function MAD envelope ({n_sim} sims)"] = env["L"]["classification"]
    area_px = WIDTH * HEIGHT
    out["BioVoxxel, pixel coordinates"] = D.biovoxxel_test(points, area_px)["classification"]
    out["BioVoxxel, nm coordinates, area in px"] = \
        D.biovoxxel_test(points * PIXEL_NM, area_px)["classification"]
    return out


def clopper_pearson(k, n, level=0.95):
    a = (1 - level) / 2
    lo = stats.beta.ppf(a, k, n - k + 1) if k > 0 else 0.0
    hi = stats.beta.ppf(1 - a, k + 1, n - k) if k < n else 1.0
    return lo, hi


def main(argv=None):
    global SIGMA, RADIUS, HARD
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--patterns", type=int, default=200, help="patterns per model (default 200)")
    ap.add_argument("--n", type=int, nargs="+", default=[200, 1000], help="points per pattern")
    ap.add_argument("--n-sim", type=int, default=99, help="Monte Carlo simulations (default 99)")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--no-envelope", action="store_true", help="skip the L-function test")
    ap.add_argument("--params", type=float, nargs=3, metavar=("SIGMA", "RADIUS", "HARD"),
                    help=f"alternative strengths (default {SIGMA} {RADIUS} {HARD})")
    args = ap.parse_args(argv)
    if args.params:
        SIGMA, RADIUS, HARD = args.params

    ok = True
    t_start = time.perf_counter()
    print(f"# Distribution tests on simulated patterns ({args.patterns} per model, window "
          f"{WIDTH:.0f} x {HEIGHT:.0f} px, alpha = 0.05, seed {args.seed})\n")
    print(f"Thomas sigma = {SIGMA} sqrt(A/n), Matern radius = {RADIUS} sqrt(A/n), hard-core "
          f"distance = {HARD} sqrt(A/n), 4 offspring per parent on average.\n")
    for n in args.n:
        rng = np.random.default_rng([args.seed, n])
        verdicts = {}  # model -> test -> list of classifications
        for model, (make, _) in MODELS.items():
            per_test = {}
            for _i in tqdm(range(args.patterns), desc=f"n={n} {model}", file=sys.stderr, leave=False):
                pts = make(n, rng)
                for test, cls in run_tests(pts, args.n_sim, int(rng.integers(2**31)),
                                           not args.no_envelope).items():
                    per_test.setdefault(test, []).append(cls)
            verdicts[model] = per_test
        tests = list(verdicts["Poisson"])
        print(f"## n = {n} points (E = 0.5 sqrt(A/n) = {0.5 * np.sqrt(WIDTH * HEIGHT / n):.2f} px)\n")
        print("| test | FPR on Poisson (95% CI) | power: Thomas | power: Matern cluster | power: hard-core |")
        print("|---|---|---|---|---|")
        for test in tests:
            cells = []
            pois = verdicts["Poisson"][test]
            k = sum(c != "random" for c in pois)
            lo, hi = clopper_pearson(k, len(pois))
            cells.append(f"{k / len(pois):.3f} ({lo:.3f}-{hi:.3f})")
            for model in ("Thomas", "Matern cluster", "Hard-core"):
                truth = MODELS[model][1]
                want = BIOVOXXEL_WORDS[truth] if test.startswith("BioVoxxel") else truth
                got = verdicts[model][test]
                cells.append(f"{sum(c == want for c in got) / len(got):.3f}")
            print(f"| {test} | " + " | ".join(cells) + " |")
            if test.startswith("Clark-Evans, Donnelly"):
                fpr = k / len(pois)
                if abs(fpr - 0.05) > 0.03:
                    ok = False
        print()
        # how the biased test errs on Poisson patterns
        for test in tests:
            if test.startswith("BioVoxxel"):
                pois = verdicts["Poisson"][test]
                kinds = {c: pois.count(c) for c in sorted(set(pois))}
                print(f"- {test} on Poisson: {kinds}")
        print()
    print(f"Default test's FPR within 0.03 of 0.05 at every n: {'yes' if ok else 'NO'}  "
          f"({time.perf_counter() - t_start:.0f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
