"""Inference speed of the default U-Net on a 1280×960 image, and the fraction of the CPU's peak
FLOP rate it reaches.

Usage::

    python benchmarks/speed/infer_speed.py [--threads 1] [--repeats 3] [--out runs/infer-speed/t1.json]
                                     [--pipeline [--baseline DIR]]

The test image is the thesis's image size, 1280×960 (uint8): the analysed area (1024×704, data bar
removed by :func:`tio2fiji.io.read_sem`) of the bundled example ``examples/data/SEM/1908248.tif``,
mirrored at its right and bottom borders up to 1280×960.

Timed, each as the median of ``--repeats`` runs after one warm-up, with ``--threads`` torch threads:

* ``whole``: one forward pass over the whole image (1280×960 is a multiple of 32), input scaled by
  :func:`tio2fiji.transforms.normalize_for_network`, sigmoid applied, as :func:`predict_probability` does;
* ``blend``: :func:`tio2fiji.predict.predict_probability` with ``mode="blend", overlap=64``
  (``engine="torch"``, as before ONNX Runtime was the CPU default);
* ``thesis``: ``predict_probability(mode="thesis")`` (non-overlapping tiles, mirrored borders);
* ``onnx``: the default model exported with tio2fiji's own ONNX export
  (:func:`tio2fiji.export.export_onnx`) and run with onnxruntime (``intra_op_num_threads`` =
  ``--threads``, ``inter_op_num_threads`` = 1) on the same whole image;
* ``onnx_tiles``: that ONNX file on the same 256×256 tiles as ``blend`` (batches of 4; the network
  only, no stitching);
* ``predict_whole``, ``predict_blend_onnx``, ``predict_auto``: ``predict_probability`` with
  ``mode="whole", engine="torch"``; ``mode="blend"`` with the ONNX engine; and the new defaults
  (``mode="auto"``, ``engine="auto"``: one pass through ONNX Runtime on this image);
* ``bf16``: one 256×256 tile of the image under ``torch.autocast("cpu", torch.bfloat16)`` against
  float32 (the whole image would take minutes on a CPU without bfloat16 instructions), with its
  mask disagreement and mean |Δp| against float32.

``--pipeline`` also times the default pipeline, ``tio2fiji segment`` of the default model on the
three bundled 1024×768 examples (``--threads``, in fresh processes, best of two): the command on
one image and on all three, so the steady per-image time is their difference / 2 and the first
image's includes start-up, model loading (and the ONNX export). Timed for ``--mode blend`` and the new
default, and for the code of ``--baseline DIR`` (e.g. ``git archive HEAD tio2fiji | tar -x -C DIR``:
today's code, default blend, PyTorch). The FLOP floor of an image is its network GFLOP (the
whole 1024×704 analysed area in one pass) / the measured matmul peak.

The network's FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and
matrix products; 1 multiply-add = 2 FLOPs): for the whole image, and per 256×256 tile times the
number of tiles (from the ``progress`` callback of ``predict_probability``). The CPU's peak is
measured in the same process with the same thread count: a float32 ``torch.mm`` of two
4096×4096 matrices, best of several. The thesis reports 1.4 s per image on an A100 GPU.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "data" / "SEM" / "1908248.tif"
THESIS_A100_S = 1.4
SIZE = (960, 1280)  # rows, columns


def make_test_image(path=EXAMPLE, size=SIZE) -> np.ndarray:
    """The analysed area of ``path`` mirrored (symmetric, as predict's thesis mode pads) to ``size``."""
    from tio2fiji.io import read_sem

    area = np.asarray(read_sem(path).analysed)
    if area.dtype != np.uint8:
        raise SystemExit(f"{path}: expected an 8-bit image, got {area.dtype}")
    h, w = size
    reps = (-(-h // area.shape[0]), -(-w // area.shape[1]))
    # mirror-tile: alternate flipped copies so every seam is a mirror, then crop
    rows = [area if i % 2 == 0 else area[::-1] for i in range(reps[0])]
    col = np.concatenate(rows, axis=0)
    cols = [col if j % 2 == 0 else col[:, ::-1] for j in range(reps[1])]
    img = np.ascontiguousarray(np.concatenate(cols, axis=1)[:h, :w])
    assert img.shape == size and img.dtype == np.uint8
    return img


def timed(fn, repeats: int):
    """Warm-up once, then ``repeats`` timed calls; returns (median, all times, last result)."""
    out = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, out


def count_flops(model, shape) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(shape, dtype=torch.float32)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    return int(counter.get_total_flops())


def peak_matmul(n: int = 4096, tries: int = 5) -> dict:
    """Best float32 GFLOP/s of ``torch.mm`` on n×n matrices (2n³ FLOPs per product)."""
    import torch

    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g)
    b = torch.randn(n, n, generator=g)
    torch.mm(a, b)  # warm-up
    times = []
    for _ in range(tries):
        t0 = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t0)
    flops = 2.0 * n ** 3
    return {"n": n, "tries": tries, "best_s": min(times), "median_s": statistics.median(times),
            "gflops_best": flops / min(times) / 1e9, "gflops_median": flops / statistics.median(times) / 1e9}


def onnx_rows(img, tiles_corners, repeats, threads):
    """Whole image and tiles through the ONNX file of tio2fiji's own export, with onnxruntime."""
    import tempfile

    import onnxruntime

    from tio2fiji.export import export_onnx
    from tio2fiji.transforms import normalize_for_network

    x = normalize_for_network(img).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "default.onnx"
        export_onnx(path, "default", check=False)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name

    def whole():
        return session.run(None, {name: x[None, None]})[0][0, 0]

    def tiles():
        for b in range(0, len(tiles_corners), 4):
            chunk = tiles_corners[b:b + 4]
            session.run(None, {name: np.stack([x[y:y + 256, c:c + 256] for y, c in chunk])[:, None]})

    return timed(whole, repeats), timed(tiles, repeats)


def bf16_row(model, img):
    """One 256×256 tile in float32 and under bfloat16 autocast: seconds and agreement."""
    import torch

    from tio2fiji.transforms import normalize_for_network

    x = torch.from_numpy(normalize_for_network(img[:256, :256]).astype(np.float32))[None, None]
    with torch.no_grad():
        t32, _, p32 = timed(lambda: torch.sigmoid(model(x))[0, 0].numpy(), 1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            t16, _, p16 = timed(lambda: torch.sigmoid(model(x).float())[0, 0].numpy(), 1)
    return {"tile": 256, "seconds_fp32": t32, "seconds_bf16": t16, "slowdown": t16 / t32,
            "mean_abs_diff": float(np.abs(p16 - p32).mean()), "max_abs_diff": float(np.abs(p16 - p32).max()),
            "mask_disagreement": float(np.mean((p16 > 0.5) != (p32 > 0.5)))}


def pipeline(threads: int, baseline=None) -> dict:
    """``tio2fiji segment`` of the default model on the bundled examples, in fresh processes."""
    import subprocess
    import tempfile

    images = sorted((ROOT / "examples" / "data" / "SEM").glob("*.tif"))
    variants = {"new default (auto: whole, ONNX Runtime)": ([], None),
                "new code, --mode blend": (["--mode", "blend"], None)}
    if baseline is not None:
        variants["today's code (blend, PyTorch)"] = ([], Path(baseline).resolve())
    out = {}
    for label, (extra, code) in variants.items():
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        if code is not None:
            env["PYTHONPATH"] = str(code)
        walls = {}
        for n in (1, len(images)):
            for _ in range(2):  # best of two: the machine is shared
                with tempfile.TemporaryDirectory() as tmp:
                    cmd = [sys.executable, "-m", "tio2fiji.cli", "segment", *map(str, images[:n]), "--out",
                           str(Path(tmp) / "out"), "--threads", str(threads), *extra]
                    t0 = time.perf_counter()
                    # from another folder, so that PYTHONPATH (not this checkout) provides tio2fiji
                    subprocess.run(cmd, check=True, capture_output=True, cwd=tmp, env=env)
                    walls[n] = min(walls.get(n, np.inf), time.perf_counter() - t0)
        per = (walls[len(images)] - walls[1]) / (len(images) - 1)
        out[label] = {"one_image_s": walls[1], f"{len(images)}_images_s": walls[len(images)],
                      "per_image_s": per}
        print(f"pipeline {label}: 1 image {walls[1]:.2f} s, {len(images)} images "
              f"{walls[len(images)]:.2f} s -> {per:.2f} s per image", flush=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up (median)")
    ap.add_argument("--matmul-n", type=int, default=4096)
    ap.add_argument("--matmul-tries", type=int, default=5)
    ap.add_argument("--image", type=Path, default=EXAMPLE)
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    ap.add_argument("--pipeline", action="store_true", help="also time `tio2fiji segment` per image")
    ap.add_argument("--baseline", type=Path, help="--pipeline: a folder holding today's tio2fiji package")
    args = ap.parse_args(argv)

    import torch

    from tio2fiji.models.checkpoint import load_model
    from tio2fiji.predict import predict_probability
    from tio2fiji.transforms import normalize_for_network

    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    img = make_test_image(args.image)
    model = load_model("default")
    h, w = img.shape

    def whole():
        x = torch.from_numpy(normalize_for_network(img))[None, None]
        with torch.no_grad():
            return torch.sigmoid(model.net(x))[0, 0].numpy()

    tiles = {}

    def tiled(mode, engine="torch", key=None):
        def run():
            return predict_probability(model, img, mode=mode, overlap=64, engine=engine,
                                       progress=lambda done, total, name: tiles.__setitem__(key or mode, total))
        return run

    print(f"torch {torch.__version__}, {args.threads} thread(s), image {w}x{h} uint8 from "
          f"{args.image.name}; load average at start {load_start}", flush=True)
    peak_before = peak_matmul(args.matmul_n, args.matmul_tries)
    print(f"peak matmul {peak_before['gflops_best']:.1f} GFLOP/s (best of {args.matmul_tries})", flush=True)
    flops_whole = count_flops(model.net, (1, 1, h, w))
    flops_tile = count_flops(model.net, (1, 1, 256, 256))

    results = {}
    med, times, p_whole = timed(whole, args.repeats)
    results["whole"] = {"seconds": med, "times": times, "forward_passes": 1, "flops": flops_whole}
    print(f"whole: {med:.2f} s", flush=True)
    probs = {}
    for mode in ("blend", "thesis"):
        med, times, probs[mode] = timed(tiled(mode), args.repeats)
        results[mode] = {"seconds": med, "times": times, "tiles": tiles[mode],
                         "flops": tiles[mode] * flops_tile,
                         "overlap": 64 if mode == "blend" else 0}
        print(f"{mode}: {med:.2f} s ({tiles[mode]} tiles)", flush=True)
    from tio2fiji.transforms import axis_positions

    corners = [(y, x) for y in axis_positions(h, 256, 192) for x in axis_positions(w, 256, 192)]
    (med, times, p_onnx), (med_t, times_t, _) = onnx_rows(img, corners, args.repeats, args.threads)
    results["onnx"] = {"seconds": med, "times": times, "forward_passes": 1, "flops": flops_whole}
    results["onnx_tiles"] = {"seconds": med_t, "times": times_t, "tiles": len(corners),
                             "flops": len(corners) * flops_tile}
    print(f"onnx: {med:.2f} s whole, {med_t:.2f} s for the {len(corners)} tiles", flush=True)
    for key, mode, engine in (("predict_whole", "whole", "torch"), ("predict_blend_onnx", "blend", "onnx"),
                              ("predict_auto", "auto", "auto")):
        med, times, probs[key] = timed(tiled(mode, engine, key), args.repeats)
        n = tiles.get(key, 1)
        results[key] = {"seconds": med, "times": times, "tiles": n,
                        "flops": flops_whole if n == 1 else n * flops_tile}
        print(f"{key}: {med:.2f} s", flush=True)
    probs["onnx"] = p_onnx
    bf16 = bf16_row(model.net, img)
    print(f"bf16: 256 tile {bf16['seconds_bf16']:.2f} s vs float32 {bf16['seconds_fp32']:.3f} s; "
          f"mean |dp| {bf16['mean_abs_diff']:.2e}, mask pixels differing {100 * bf16['mask_disagreement']:.3f} %",
          flush=True)
    peak_after = peak_matmul(args.matmul_n, args.matmul_tries)
    peak = max(peak_before["gflops_best"], peak_after["gflops_best"])
    load_end = os.getloadavg()

    for r in results.values():
        r["gflops_achieved"] = r["flops"] / r["seconds"] / 1e9
        r["fraction_of_peak"] = r["gflops_achieved"] / peak
        r["vs_thesis_a100"] = r["seconds"] / THESIS_A100_S
    # how much the outputs differ (same network, different context at tile borders)
    agree = {}
    for mode, p in probs.items():
        agree[mode] = {"mean_abs_diff_vs_whole": float(np.mean(np.abs(p - p_whole))),
                       "mask_disagreement_vs_whole": float(np.mean((p > 0.5) != (p_whole > 0.5)))}

    doc = {"threads": args.threads, "repeats": args.repeats, "image": str(args.image),
           "size": [w, h], "dtype": "uint8", "torch": torch.__version__, "python": sys.version.split()[0],
           "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
           "loadavg_start": load_start, "loadavg_end": load_end,
           "flops_per_tile_256": flops_tile,
           "peak_matmul": {"before": peak_before, "after": peak_after, "gflops_used": peak},
           "thesis_a100_seconds": THESIS_A100_S, "results": results, "agreement": agree, "bf16": bf16}
    if args.pipeline:
        doc["pipeline"] = pipeline(args.threads, args.baseline)
        # the floor: the network's FLOPs on one analysed area (1024x704) at the matmul peak
        flops_area = count_flops(model.net, (1, 1, 704, 1024))
        doc["flop_floor"] = {"gflop_per_image": flops_area / 1e9, "seconds": flops_area / (peak * 1e9)}
        for r in doc["pipeline"].values():
            r["fraction_of_flop_floor"] = doc["flop_floor"]["seconds"] / r["per_image_s"]

    print()
    print(f"| {args.threads} thread(s) | s / image | forward passes | GFLOP | GFLOP/s | % of peak "
          f"({peak:.0f} GFLOP/s) | × thesis A100 (1.4 s) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        label = {"whole": "whole image, 1 pass", "blend": "tiled blend, overlap 64",
                 "thesis": "tiled thesis, no overlap", "onnx": "ONNX Runtime, whole image",
                 "onnx_tiles": "ONNX Runtime, blend's tiles (network only)",
                 "predict_whole": "predict mode=whole (PyTorch)",
                 "predict_blend_onnx": "predict mode=blend (ONNX Runtime)",
                 "predict_auto": "predict defaults (auto: whole, ONNX Runtime)"}[name]
        passes = r.get("tiles", 1)
        print(f"| {label} | {r['seconds']:.2f} | {passes} | {r['flops'] / 1e9:.1f} | "
              f"{r['gflops_achieved']:.1f} | {100 * r['fraction_of_peak']:.0f} % | "
              f"{r['vs_thesis_a100']:.1f} |")
    print(f"\nFLOPs per 256×256 tile {flops_tile / 1e9:.2f} G; peak matmul {args.matmul_n}² best "
          f"{peak_before['gflops_best']:.1f} (before) / {peak_after['gflops_best']:.1f} (after) GFLOP/s")
    for mode, a in agree.items():
        print(f"{mode} vs whole: mean |Δp| {a['mean_abs_diff_vs_whole']:.4f}, "
              f"mask pixels differing {100 * a['mask_disagreement_vs_whole']:.2f} %")
    if "pipeline" in doc:
        f = doc["flop_floor"]
        print(f"\n`tio2fiji segment`, per 1024x768 image ({f['gflop_per_image']:.1f} GFLOP; floor "
              f"{f['seconds']:.2f} s at {peak:.0f} GFLOP/s):")
        for label, r in doc["pipeline"].items():
            print(f"| {label} | {r['per_image_s']:.2f} s | first image {r['one_image_s']:.2f} s | "
                  f"{100 * r['fraction_of_flop_floor']:.0f} % of the floor |")
    print(f"load average start {tuple(round(v, 2) for v in load_start)}, "
          f"end {tuple(round(v, 2) for v in load_end)} (2 CPU cores)")
    if args.out:
        from tio2fiji.io import write_json

        print(f"wrote {write_json(args.out, doc)}")  # atomically, its folder made
    return doc


if __name__ == "__main__":
    main()
