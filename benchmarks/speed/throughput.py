"""Throughput of ``tio2fiji analyze``: images per minute, serial and on 1 and 2 Dask workers, beside
the floor that the network's FLOPs and the CPU's measured matmul peak set.

Usage::

    python benchmarks/speed/throughput.py [FOLDER] [--limit N] [--out runs/throughput/throughput.json]

FOLDER defaults to the 30 BAM SEM images (``/work/shared/data/bam-tio2/SEM/*.tif``). In one run,
on the same images and with ``analyze``'s default options (bundled U-Net, both spatial tests, 1000
bootstrap resamples, 39-simulation G/L envelopes, report):

* ``serial``: the default, one image after another in this process, torch's own thread count;
* ``workers 1`` and ``workers 2``: a local Dask cluster (:func:`tio2fiji.run.open_client`) of
  that many processes, ``cores // workers`` torch threads each. The wall time includes starting
  the cluster (processes importing torch, each loading the model once).

Each run goes into its own fresh folder; images per minute is images / wall time × 60; the stages
(set-up, images, merge) come from ``analysis.json``'s ``run.seconds``. The floor: the network's
FLOPs per image (``torch.utils.flop_counter.FlopCounterMode``, one pass over the first image's
whole analysed area: the least any run must compute) divided by the float32 matmul peak
measured in the same run with all cores (``peak_matmul`` of ``benchmarks/speed/infer_speed.py``): no run on
this CPU can be faster than that with this network. The machine's load average is recorded: the
CPU may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # infer_speed.py, beside this script
from infer_speed import count_flops, peak_matmul  # noqa: E402

DATA = Path("/work/shared/data/bam-tio2/SEM")


def network_flops(image) -> dict:
    """FLOPs of one forward pass of the default U-Net over the whole analysed area of ``image``
    (padded to a multiple of 32): the least any run must compute per image (tiles with overlap
    compute more; 1 multiply-add = 2 FLOPs). Counted on the PyTorch model, whichever engine
    :func:`tio2fiji.predict.segment` then uses."""
    from tio2fiji.io import read_sem
    from tio2fiji.models.checkpoint import load_model

    model = load_model("default").net  # the PyTorch network whose FLOPs are counted
    h, w = read_sem(image).analysed.shape
    ph, pw = -(-h // 32) * 32, -(-w // 32) * 32
    return {"image": str(image), "analysed_px": [h, w], "padded_px": [ph, pw],
            "flops_per_image": count_flops(model, (1, 1, ph, pw)),
            "flops_per_tile_256": count_flops(model, (1, 1, 256, 256))}


def run_mode(images, label, workers, base) -> dict:
    from tio2fiji.run import analyze_images

    out = base / label.replace(" ", "_")
    shutil.rmtree(out, ignore_errors=True)
    load = os.getloadavg()
    t0 = time.perf_counter()
    res = analyze_images(images, out, workers=workers)
    wall = time.perf_counter() - t0
    meta = json.loads((out / "analysis.json").read_text())
    per_image = [m["seconds"] for m in meta["images"]]
    row = {"mode": label, "workers": workers, "images": len(images), "failed": len(res.failures),
           "wall_s": wall, "images_per_min": 60.0 * len(images) / wall,
           "stages_s": meta["run"]["seconds"], "mean_image_s": sum(per_image) / len(per_image),
           "particles": int(sum(m["particles"] for m in meta["images"])),
           "out_bytes": sum(p.stat().st_size for p in out.rglob("*") if p.is_file()),
           "loadavg_before": load, "loadavg_after": os.getloadavg()}
    print(f"{label}: {wall:.1f} s, {row['images_per_min']:.1f} images/min, stages {row['stages_s']}, "
          f"load {load[0]:.2f} -> {row['loadavg_after'][0]:.2f}", flush=True)
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", nargs="?", type=Path, default=DATA)
    ap.add_argument("--limit", type=int, default=None, help="use only the first N images")
    ap.add_argument("--modes", default="serial,1,2", help="comma-separated: serial and/or worker counts")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "throughput" / "throughput.json")
    args = ap.parse_args(argv)

    import torch

    from tio2fiji.run import cores, gather_images

    images = gather_images([args.folder], glob="*.tif")[:args.limit]
    print(f"{len(images)} images from {args.folder}; {cores()} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads by default); load {os.getloadavg()}", flush=True)
    peak_all = peak_matmul(2048, 5)
    torch.set_num_threads(1)
    peak_one = peak_matmul(2048, 5)
    torch.set_num_threads(cores())
    flops = network_flops(images[0])
    gflop = flops["flops_per_image"] / 1e9
    floor = {"gflop_per_image": gflop, "peak_gflops_all_cores": peak_all["gflops_best"],
             "peak_gflops_one_thread": peak_one["gflops_best"],
             "floor_s_per_image_all_cores": gflop / peak_all["gflops_best"],
             "ceiling_images_per_min": 60.0 * peak_all["gflops_best"] / gflop}
    print(f"network {gflop:.1f} GFLOP per image (one pass, {flops['padded_px']}); matmul peak "
          f"{peak_all['gflops_best']:.1f} GFLOP/s ({cores()} threads), {peak_one['gflops_best']:.1f} (1); "
          f"ceiling {floor['ceiling_images_per_min']:.1f} images/min", flush=True)

    base = Path(tempfile.mkdtemp(prefix="tio2fiji-throughput-"))
    rows = []
    try:
        for mode in args.modes.split(","):
            mode = mode.strip()
            workers = None if mode == "serial" else int(mode)
            label = "serial" if workers is None else f"workers {workers}"
            rows.append(run_mode(images, label, workers, base))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    for r in rows:
        r["fraction_of_ceiling"] = r["images_per_min"] / floor["ceiling_images_per_min"]
    serial = next((r for r in rows if r["mode"] == "serial"), None)
    print(f"\n| {len(images)} images | wall (s) | images/min | × serial | set-up / images / merge (s) | "
          f"% of FLOP ceiling ({floor['ceiling_images_per_min']:.1f}/min) |")
    print("|---|---:|---:|---:|---|---:|")
    for r in rows:
        ratio = r["images_per_min"] / serial["images_per_min"] if serial else float("nan")
        r["speedup_vs_serial"] = ratio
        st = r["stages_s"]
        print(f"| {r['mode']} | {r['wall_s']:.1f} | {r['images_per_min']:.1f} | {ratio:.2f} | "
              f"{st['setup']:.1f} / {st['images']:.1f} / {st['merge']:.1f} | "
              f"{100 * r['fraction_of_ceiling']:.0f} % |")
    doc = {"folder": str(args.folder), "images": len(images), "cores": cores(),
           "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
           "python": sys.version.split()[0], "network": flops, "floor": floor,
           "peak_matmul": {"all_cores": peak_all, "one_thread": peak_one}, "runs": rows,
           "note": "the machine's CPU is shared with other jobs: see loadavg_before/after"}
    from tio2fiji.io import write_json

    print(f"wrote {write_json(args.out, doc)}")  # atomically, its folder made
    return doc


if __name__ == "__main__":
    main()
