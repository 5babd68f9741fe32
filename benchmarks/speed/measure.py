"""Speed of the native ImageJ-exact particle measurement (tio2fiji.particles.measure).

Times, on one mask:

* the first call in a fresh process (numba JIT compile, or loading the compiled cache),
* the steady-state time of ``measure`` (best and median of ``--repeat`` runs),
* ImageJ 1.x's ParticleAnalyzer on the same mask in the same run (skip with ``--no-imagej``; Java side only, after
  JVM warm-up) and scikit-image's regionprops with comparable properties (``--skimage``).

The default mask is synthetic: 1280x896, thresholded smoothed noise, about 15,500 8-connected
particles. Pass ``--mask file.tif`` for a real one (foreground = nonzero).

Examples
--------
    python benchmarks/speed/measure.py
    python benchmarks/speed/measure.py --skimage --repeat 20
    python benchmarks/speed/measure.py --mask path/to/TiO2_Masks_Manual_4connected/1908248_m.tif
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from scipy import ndimage as ndi

MEASUREMENTS = "area centroid perimeter bounding fit shape feret's"


def synthetic_mask(shape=(896, 1280), sigma=1.0, fraction=0.3, seed=0):
    """Thresholded smoothed noise: many small irregular particles (~15,500 at the defaults)."""
    field = ndi.gaussian_filter(np.random.default_rng(seed).random(shape), sigma)
    return field > np.quantile(field, 1.0 - fraction)


def time_native(mask, repeat, **kw):
    t0 = time.perf_counter()
    from tio2fiji.particles import measure  # import inside: its cost is reported separately
    t_import = time.perf_counter() - t0
    t0 = time.perf_counter()
    df = measure(mask, **kw)
    t_first = time.perf_counter() - t0
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        measure(mask, **kw)
        times.append(time.perf_counter() - t0)
    return df, t_import, t_first, times


def time_imagej(mask, repeat, ij_jar):
    import jpype
    import jpype.imports  # noqa: F401  (enables `from ij import ...`)

    if not jpype.isJVMStarted():
        jpype.startJVM("-Djava.awt.headless=true", classpath=[ij_jar])
    from ij import ImagePlus, Prefs
    from ij.measure import Measurements as M
    from ij.measure import ResultsTable
    from ij.plugin.filter import ParticleAnalyzer as PA
    from ij.process import ByteProcessor
    from java.lang import System

    Prefs.blackBackground = True
    h, w = mask.shape
    pixels = jpype.JArray(jpype.JByte)((mask.astype(np.uint8) * 255).ravel().view(np.int8))
    meas = M.AREA | M.CENTROID | M.PERIMETER | M.RECT | M.ELLIPSE | M.SHAPE_DESCRIPTORS | M.FERET
    times, n = [], 0
    for _ in range(repeat + 5):  # the first runs warm up the JIT of the JVM
        imp = ImagePlus("mask", ByteProcessor(w, h, pixels.clone()))
        rt = ResultsTable()
        pa = PA(PA.SHOW_NONE, meas, rt, 0.0, float("inf"))
        pa.setHideOutputImage(True)
        t0 = System.nanoTime()
        pa.analyze(imp)
        times.append((System.nanoTime() - t0) / 1e9)
        n = rt.size()
    return n, times[5:]


def time_skimage(mask):
    from skimage.measure import label, regionprops

    t0 = time.perf_counter()
    lab = label(mask, connectivity=2)
    props = regionprops(lab)
    for p in props:
        # each property is computed when read: read them all, as a measurement would
        _ = (p.area, p.centroid, p.perimeter, p.bbox, p.axis_major_length, p.axis_minor_length,
             p.orientation, p.solidity, p.feret_diameter_max)
    return len(props), time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mask", help="mask file (TIFF/PNG); default: synthetic 1280x896")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--connectivity", type=int, default=8, choices=(4, 8))
    ap.add_argument("--include-holes", action="store_true")
    ap.add_argument("--no-imagej", dest="imagej", action="store_false",
                    help="skip the ImageJ 1.x reference (JPype + ij.jar)")
    ap.add_argument("--ij-jar", default="/usr/share/java/ij.jar")
    ap.add_argument("--skimage", action="store_true", help="also time skimage regionprops")
    args = ap.parse_args(argv)

    if args.mask:
        import tifffile

        mask = tifffile.imread(args.mask) != 0
        source = args.mask
    else:
        mask = synthetic_mask()
        source = "synthetic"
    kw = dict(connectivity=args.connectivity, include_holes=args.include_holes)
    df, t_import, t_first, times = time_native(mask, args.repeat, **kw)
    print(f"mask: {source}, {mask.shape[1]}x{mask.shape[0]}, {len(df)} particles, options {kw}")
    print(f"native import               {t_import * 1e3:8.1f} ms")
    print(f"native first call (JIT/cache) {t_first * 1e3:6.1f} ms")
    print(f"native measure   best {min(times) * 1e3:7.1f} ms   median "
          f"{statistics.median(times) * 1e3:7.1f} ms   ({len(times)} runs)")
    if args.imagej:
        if args.connectivity != 8 or args.include_holes:
            print("imagej timing uses the default options (8-connected, holes excluded)")
        n, ij_times = time_imagej(mask, args.repeat, args.ij_jar)
        print(f"imagej analyze   best {min(ij_times) * 1e3:7.1f} ms   median "
              f"{statistics.median(ij_times) * 1e3:7.1f} ms   ({n} particles, JVM warmed)")
        print(f"ratio native/ImageJ: median {statistics.median(times) / statistics.median(ij_times):.2f}, "
              f"best {min(times) / min(ij_times):.2f}  (goal <= 1.0)")
    if args.skimage:
        n, t = time_skimage(mask)
        print(f"skimage regionprops       {t * 1e3:8.1f} ms   ({n} particles)")


if __name__ == "__main__":
    main()
