"""Issue 29: seconds per image of what ``segment`` does by default, as ratios against the default
of before (``unet-watershed``: float32 ONNX, distance watershed) measured in the same run.

Usage::

    python benchmarks/speed/default_speed.py [--images DIR_OR_FILES ...] [--threads 1] [--repeats 3]
        [--new default] [--old unet-watershed] [--out runs/default-speed.json]

Per image (default: the three bundled examples, 1024×704 analysed area), each row the median over
``--repeats`` runs after one warm-up, the rows taking turns, one process, ``--threads`` threads for PyTorch and ONNX
Runtime, every model loaded (and its ONNX graph built) before the clock starts:

* ``old``: ``segment(old)`` as it ran before issue 29 (the previous default file: float32 ONNX
  Runtime, the watershed seeded by scikit-image's ``h_maxima``);
* ``old_file_new_code``: the same file with today's code (the linear-time ``h_maxima``);
* ``new``: ``segment(new)`` (its defaults: int8 ONNX Runtime when the file stores a calibration,
  its own particle rule);
* ``new_float32``: ``segment(new, engine="onnx")``;
* ``new_tta``: ``segment(new, tta=True)`` (8 passes).

Ratios are ``row / old``. Also timed: ``tio2fiji --help`` in a fresh process (best of 3), and
the start of a second ``segment`` run (the ONNX graph read from the disk cache instead of
exported: ``cached_graph`` with and without a cache file).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def _interleaved_medians(rows, sems, repeats) -> dict:
    """Median seconds of every row on every image, the rows taking turns (one warm-up each), so
    that the machine's load falls on all rows alike."""
    times = {k: [[] for _ in sems] for k in rows}
    for i, s in enumerate(sems):
        for f in rows.values():
            f(s)
        for _ in range(repeats):
            for k, f in rows.items():
                t0 = time.perf_counter()
                f(s)
                times[k][i].append(time.perf_counter() - t0)
    return {k: [float(np.median(t)) for t in v] for k, v in times.items()}


@contextmanager
def skimage_h_maxima():
    """The watershed's seeds by scikit-image's h_maxima (two float sorts), as segment found them
    before issue 29's linear-time version (the same seeds: tests/instances/test_extrema.py)."""
    import skimage.morphology

    import tio2fiji.instances._labels as labels

    fast = labels.h_maxima
    labels.h_maxima = skimage.morphology.h_maxima
    try:
        yield
    finally:
        labels.h_maxima = fast


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", nargs="+", type=Path, default=sorted((ROOT / "examples/data/SEM").glob("*.tif")))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--new", default="default")
    ap.add_argument("--old", default="unet-watershed")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    from tio2fiji.io import read_sem, write_json
    from tio2fiji.models.checkpoint import load_model
    from tio2fiji.models.onnx import cached_graph, onnx_graph
    from tio2fiji.predict import segment

    old, new = load_model(a.old), load_model(a.new)
    sems = [read_sem(p) for p in a.images]
    def old_code(s):
        with skimage_h_maxima():
            return segment(old, s)

    rows = {"old": old_code, "old_file_new_code": lambda s: segment(old, s), "new": lambda s: segment(new, s),
            "new_float32": lambda s: segment(new, s, engine="onnx"), "new_tta": lambda s: segment(new, s, tta=True)}
    per = _interleaved_medians(rows, sems, a.repeats)
    info = {k: segment(m, sems[0], **kw).info.get("engine") for k, (m, kw) in
            {"old": (old, {}), "new": (new, {}), "new_float32": (new, {"engine": "onnx"})}.items()}
    result = {"threads": a.threads, "images": [str(p) for p in a.images], "engines": info,
              "load_average": os.getloadavg(),
              "seconds_per_image": {k: float(np.mean(v)) for k, v in per.items()},
              "ratio_to_old": {k: float(np.mean(v) / np.mean(per["old"])) for k, v in per.items()}}
    helps = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "tio2fiji.cli", "--help"], check=True, capture_output=True)
        helps.append(time.perf_counter() - t0)
    result["help_seconds"] = min(helps)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TIO2FIJI_CACHE"] = tmp
        t0 = time.perf_counter()
        onnx_graph(old)
        export = time.perf_counter() - t0
        fresh = load_model(a.old)
        cached_graph(fresh)  # writes the cache
        again = load_model(a.old)  # a second run's model
        t0 = time.perf_counter()
        cached_graph(again)
        result["graph_start_seconds"] = {"export": export, "from_disk_cache": time.perf_counter() - t0}
    print(json.dumps(result, indent=1))
    if a.out:
        write_json(a.out, result)


if __name__ == "__main__":
    main()
