"""Time and memory of ``segment`` (bundled U-Net, watershed) on large frames.

A frame of ``n × n`` pixels is tiled from a bundled example image (mirrored, so particles look
real everywhere); ``segment`` runs on it as a plain array (no data bar). Reported: seconds, the peak
of numpy's traced memory (``tracemalloc``; torch's per-batch buffers are not in it) and the
process's peak resident memory, per pixel.

Usage::

    .venv/bin/python benchmarks/speed/large_images.py 2000 4000 8000
"""

from __future__ import annotations

import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def frame(n: int) -> np.ndarray:
    """An ``n × n`` uint8 frame mirrored from the first bundled example's analysed area."""
    from tio2fiji.io import read_sem

    sem = read_sem(sorted((ROOT / "examples" / "data" / "SEM").glob("*.tif"))[0])
    area = np.asarray(sem.analysed)
    reps = (-(-n // area.shape[0]), -(-n // area.shape[1]))
    return np.pad(area, ((0, reps[0] * area.shape[0] - area.shape[0]),
                         (0, reps[1] * area.shape[1] - area.shape[1])), mode="symmetric")[:n, :n].copy()


def measure(n: int, repeats: int = 1) -> dict:
    """One row: ``n``, ``seconds``, ``labels``, ``peak_bytes_per_pixel`` (numpy),
    ``maxrss_bytes_per_pixel`` (whole process, including torch and the libraries)."""
    from tio2fiji.models.checkpoint import load_model
    from tio2fiji.predict import segment

    model = load_model("default")
    image = frame(n)
    best = None
    for _ in range(repeats):
        tracemalloc.start()
        t0 = time.perf_counter()
        seg = segment(model, image)
        seconds = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        best = seconds if best is None else min(best, seconds)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
    return {"n": n, "seconds": round(best, 1), "labels": int(seg.labels.max()),
            "peak_bytes_per_pixel": round(peak / (n * n), 1),
            "maxrss_bytes_per_pixel": round(rss / (n * n), 1)}


if __name__ == "__main__":
    for arg in sys.argv[1:] or ["2000"]:
        print(measure(int(arg)))
