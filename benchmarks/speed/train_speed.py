"""U-Net speed on this machine: training images per second and inference ms per 256×256 tile.

Measures, for each encoder asked for:

* **training**: steps of forward + Dice/BCE loss + backward + Adam on ``--batch-size`` random
  256×256 tiles (content does not change the speed), after ``--warmup`` steps; images per second;
* **data**: optionally (``--data DIR``, a folder written by ``tio2fiji dataset build --mode
  practical``) the time to draw one augmented random crop (rotation with context, photometric),
  which the training loop pays on top when ``num_workers=0``;
* **inference**: ``torch.no_grad`` forward passes of ``--infer-batch`` tiles; milliseconds per tile,
  and the time :func:`tio2fiji.predict.predict_probability` takes for a whole 1024×704 analysed
  area (blend mode, overlap 64: 15 tiles).

Run it on an otherwise idle machine: other processes on the same cores change the numbers.

Examples
--------
    python benchmarks/speed/train_speed.py
    python benchmarks/speed/train_speed.py --encoders resnet18 resnet34 --threads 2 --steps 10
    python benchmarks/speed/train_speed.py --data runs/data-practical
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402


def bench_train(encoder, batch_size, steps, warmup, loss_kind="dice+bce"):
    from tio2fiji.models.unet import build_unet
    from tio2fiji.training import make_loss

    torch.manual_seed(0)
    model = build_unet(encoder, None).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = make_loss(loss_kind)
    x = torch.rand(batch_size, 1, 256, 256)
    y = (torch.rand(batch_size, 1, 256, 256) > 0.6).float()
    v = torch.ones_like(y)
    times = []
    for k in range(warmup + steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y, v)
        loss.backward()
        opt.step()
        if k >= warmup:
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {"encoder": encoder, "batch_size": batch_size, "step_s_median": med,
            "images_per_s": batch_size / med, "steps": steps}


def bench_infer(encoder, batch, repeat, warmup=2):
    from tio2fiji.models.unet import build_unet
    from tio2fiji.predict import predict_probability

    model = build_unet(encoder, None).eval()
    x = torch.rand(batch, 1, 256, 256)
    times = []
    with torch.no_grad():
        for k in range(warmup + repeat):
            t0 = time.perf_counter()
            model(x)
            if k >= warmup:
                times.append(time.perf_counter() - t0)
    per_tile = statistics.median(times) / batch
    img = (np.random.default_rng(0).random((704, 1024)) * 255).astype(np.uint8)
    t0 = time.perf_counter()
    predict_probability(model, img, tile=256, overlap=64, batch_size=batch)
    whole = time.perf_counter() - t0
    return {"encoder": encoder, "batch": batch, "ms_per_tile": 1000 * per_tile,
            "whole_1024x704_s": whole}


def bench_data(data_dir, n):
    from tio2fiji.training import training_datasets

    train_ds, _ = training_datasets(data_dir, seed=0)
    train_ds[0]
    t0 = time.perf_counter()
    for i in range(n):
        train_ds[i % len(train_ds)]
    return {"crop_ms": 1000 * (time.perf_counter() - t0) / n, "crops": n}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoders", nargs="+", default=["resnet18"], choices=["resnet18", "resnet34"])
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--infer-batch", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--data", default=None, help="practical-mode data folder: also time crop drawing")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    info = {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "load_average": os.getloadavg()}
    print(f"torch {info['torch']}, {info['threads']} threads, {info['cores']} cores, "
          f"load average {info['load_average'][0]:.2f}")
    results = {"machine": info, "train": [], "infer": []}
    for enc in args.encoders:
        r = bench_train(enc, args.batch_size, args.steps, args.warmup)
        results["train"].append(r)
        print(f"train  {enc}: batch {r['batch_size']}, {r['step_s_median']:.2f} s/step, "
              f"{r['images_per_s']:.2f} images/s")
        r = bench_infer(enc, args.infer_batch, args.repeat)
        results["infer"].append(r)
        print(f"infer  {enc}: {r['ms_per_tile']:.0f} ms per 256x256 tile (batch {r['batch']}), "
              f"whole 1024x704 image {r['whole_1024x704_s']:.2f} s")
    if args.data:
        r = bench_data(args.data, 20)
        results["data"] = r
        print(f"data   one augmented random crop: {r['crop_ms']:.0f} ms")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
