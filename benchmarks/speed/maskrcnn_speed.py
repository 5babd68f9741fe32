"""Mask R-CNN speed on this machine: seconds per training step and per 256×256 tile at inference.

Measures, for a thesis configuration (Table 3; default 1):

* **training**: forward + the five losses + backward (+ gradient clipping) + SGD on ``--batch-size``
  256×256 tiles, after ``--warmup`` steps. Unlike the U-Net, the content matters: the box head
  runs on up to ``box_batch_size_per_image`` sampled proposals and the mask head on every positive
  one. With ``--data DIR`` (a folder written by ``tio2fiji dataset build``) the training tiles of
  its ``coco.json`` are used; otherwise generated tiles with ``--particles`` discs each.
  ``--phase heads`` freezes the ResNet body (the first training phase).
* **inference**: one tile through backbone, RPN and box head with no detection kept (the fixed
  cost), plus the mask head's cost per detection (it runs on every detection above the score
  threshold, so a tile costs ``fixed + detections × per_detection``); with ``--checkpoint`` also
  the whole :func:`tio2fiji.predict.predict_instances` on a 1024×704 image.

Run it on an otherwise idle machine: other processes on the same cores change the numbers.

Examples
--------
    python benchmarks/speed/maskrcnn_speed.py
    python benchmarks/speed/maskrcnn_speed.py --threads 2 --steps 5 --data runs/data-practical
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


def _generated_items(n, particles, seed=0):
    from tio2fiji.instances import connected_components
    from tio2fiji.training import targets_from_instances

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:256, :256]
    items = []
    for _ in range(n):
        mask = np.zeros((256, 256), bool)
        for _ in range(particles):
            r = int(rng.integers(2, 12))
            cy, cx = rng.integers(r, 256 - r, 2)
            mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        img = np.clip(0.2 + 0.6 * mask + rng.normal(0, 0.03, mask.shape), 0, 1).astype(np.float32)
        lab = connected_components(mask, 4)
        inst = np.stack([lab == i for i in range(1, lab.max() + 1)]) if lab.max() else \
            np.zeros((0, 256, 256), bool)
        items.append((torch.from_numpy(img)[None], targets_from_instances(inst)))
    return items


def _data_items(data_dir, n, seed=0):
    from tio2fiji.training import CocoInstanceDataset

    ds = CocoInstanceDataset(data_dir, "train", seed=seed, length=n)
    return [ds[i][:2] for i in range(n)]


def bench_train(config, items, batch_size, steps, warmup, phase="all"):
    from tio2fiji.models.maskrcnn import build_maskrcnn, set_backbone_trainable

    torch.manual_seed(0)
    model = build_maskrcnn(config).train()
    if phase == "heads":
        set_backbone_trainable(model, 0)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=1e-4)
    times, instances = [], []
    for k in range(warmup + steps):
        batch = [items[(k * batch_size + j) % len(items)] for j in range(batch_size)]
        t0 = time.perf_counter()
        losses = model([b[0] for b in batch], [b[1] for b in batch])
        loss = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        if k >= warmup:
            times.append(time.perf_counter() - t0)
            instances.append(sum(len(b[1]["boxes"]) for b in batch))
    return model, {"config": config, "phase": phase, "batch_size": batch_size, "steps": steps,
                   "step_s_median": statistics.median(times), "step_s_all": times,
                   "instances_per_batch": instances}


def bench_infer(model, items, repeats=3, k=100):
    from tio2fiji.predict import detect

    model.eval()
    tile = items[0][0][0].numpy()
    fixed = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        detect(model, [tile], score_threshold=1.0)  # nothing passes: no mask head
        fixed.append(time.perf_counter() - t0)
    # the mask head on k boxes of typical particle size
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 230, (k, 2)).astype(np.float32)
    wh = rng.uniform(4, 25, (k, 2)).astype(np.float32)
    boxes = torch.from_numpy(np.concatenate([xy, xy + wh], 1))
    heads = model.roi_heads
    per = []
    with torch.no_grad():
        images, _ = model.transform([torch.from_numpy(tile)[None]])
        feats = model.backbone(images.tensors)
        for _ in range(repeats):
            t0 = time.perf_counter()
            x = heads.mask_roi_pool(feats, [boxes], images.image_sizes)
            heads.mask_predictor(heads.mask_head(x)).sigmoid()
            per.append((time.perf_counter() - t0) / k)
    return {"tile_fixed_s_median": statistics.median(fixed),
            "mask_head_s_per_detection": statistics.median(per)}


def bench_whole_image(checkpoint, repeats=1):
    from tio2fiji.models.checkpoint import load_model
    from tio2fiji.predict import predict_instances

    model = load_model(checkpoint)
    img = (np.random.default_rng(0).random((704, 1024)) * 255).astype(np.uint8)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        labels, scores, _ = predict_instances(model, img)
        times.append(time.perf_counter() - t0)
    return {"whole_1024x704_s": statistics.median(times), "instances": int(labels.max())}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=int, default=1, choices=[1, 2, 3, 4])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--phase", choices=["all", "heads"], default="all")
    ap.add_argument("--particles", type=int, default=20,
                    help="Discs per generated tile (the BAM practical tiles hold 12 on median).")
    ap.add_argument("--data", default=None, help="Data folder with coco.json: use its training tiles.")
    ap.add_argument("--checkpoint", default=None, help="Also time predict_instances on 1024x704.")
    ap.add_argument("--out", default=None, help="Write the results as JSON here.")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    n = args.batch_size * (args.steps + args.warmup)
    items = _data_items(args.data, n) if args.data else _generated_items(n, args.particles)
    model, train = bench_train(args.config, items, args.batch_size, args.steps, args.warmup, args.phase)
    res = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
           "threads": torch.get_num_threads(), "data": args.data or f"generated, {args.particles} discs",
           "train": train, "infer": bench_infer(model, items)}
    if args.checkpoint:
        res["whole_image"] = bench_whole_image(args.checkpoint)
    text = json.dumps(res, indent=2)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
