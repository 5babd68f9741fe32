"""Issue 27: the separation candidates side by side, post-processing chosen on the validation
images, every score of ``tio2fiji evaluate`` on the test images, both protocols, with and without
test-time augmentation.

Usage::

    python benchmarks/makers/border_candidates.py /work/shared/data/bam-tio2 --out runs/border-bench \
        --model unet-watershed=unet-watershed --model border-r18=runs/border-r18/best.pt [--tta] [--threads 1]

``DATA_DIR`` holds ``SEM/`` and ``TiO2_Masks_Manual_4connected/``; the split is the bundled model's
(21 training, 4 validation, 5 test images; ``benchmarks/makers/candidates.py``'s ``prepare``). Per model
(and per TTA setting):

1. the network's maps of the validation and test images (``OUT/<name>/maps_<subset>[_tta].npz``,
   float16, reused when present), timed;
2. the post-processing chosen on the validation images only: a border U-Net's
   (:func:`tio2fiji.instances.labels_from_border`: particle threshold, border threshold, smallest
   seed, smoothing, seed splitting; :data:`BORDER_GRID`) or a distance U-Net's
   (:func:`tio2fiji.instances.labels_from_distance`; :data:`DISTANCE_GRID`) by pooled F1 at IoU 0.5 with objects under
   10 px dropped on both sides (BAM's protocol); settings within :data:`F1_TIE` of the best are tied
   and the lowest mean count error + median-ECD error among them wins; a one-output U-Net keeps
   its stored watershed;
3. every metric of :func:`tio2fiji.metrics.evaluate_images` on the validation and test images,
   all objects and objects of 10 px or more, with the error anatomy
   -> ``OUT/<name>[-tta]/scores.json``.

``OUT/table.md`` then holds one row per model and setting. A model's choice is written to
``OUT/<name>[-tta]/choice.json``; ``--export FILE`` writes the chosen parameters into a compact
int8 model file (what ``tio2fiji/data/unet_border.pt`` was made with).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tio2fiji.instances import drop_small, labels_from_maps
from tio2fiji.io import write_json
from tio2fiji.metrics import (
    BAM_MIN_SIZE,
    count_error,
    ecd_of_labels,
    evaluate_images,
    instance_scores,
    match_counts,
    match_instances,
    size_errors,
)
from tio2fiji.models.checkpoint import export_model, load_model
from tio2fiji.predict import predict_maps

sys.path.insert(0, str(Path(__file__).resolve().parent))
from candidates import prepare  # noqa: E402  (the bundled model's split and images)

#: The border U-Net's post-processing grid (chosen on the validation images). The first grid's
#: choice for unet-border (border threshold 0.15, smallest seed 16) lay on its edge; the grid now
#: reaches beyond both (0.005-0.1; 24, 32 px).
BORDER_GRID = [{"threshold": t, "border_threshold": b, "min_seed": s, "sigma": g, "h": h}
               for t, b, s, g, h in itertools.product(
                   (0.4, 0.5), (0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5), (1, 4, 8, 16, 24, 32),
                   (0.0, 1.0), (0.0, 1.0))]
#: The distance U-Net's grid (:func:`tio2fiji.instances.labels_from_distance`): particle threshold,
#: seed threshold on the normalised distance, smallest seed, the band's veto on seeds (1: none),
#: smoothing, seeds at distance maxima higher than h (0: seed regions). Stage 7's first choice lay on
#: the edge of sigma (2 px): the grid reaches 3.
DISTANCE_GRID = [{"threshold": t, "seed_threshold": d, "min_seed": s, "border_threshold": b, "sigma": g, "h": h}
                 for t, d, s, b, g, h in itertools.product(
                     (0.4, 0.5), (0.2, 0.3, 0.4, 0.5, 0.6), (1, 4), (0.1, 0.3, 1.0), (1.0, 2.0, 3.0),
                     (0.0, 0.1, 0.2, 0.3))]
GRIDS = {"border": BORDER_GRID, "distance": DISTANCE_GRID}
#: Settings whose pooled validation F1 is within this of the best match as many particles (about two
#: of the ~350 validation particles); among them the lowest count error + median-ECD error wins:
#: the numbers users publish.
F1_TIE = 0.005
_KEYS = ("mean_iou", "f1", "precision", "recall", "pq", "instance_iou", "count_error", "count_error_signed",
         "median_ecd_error", "d10_ecd_error", "d90_ecd_error", "ks_distance")


def network_maps(model, images, path: Path, tta: bool):
    """Maps of every image (cached in ``path``) and the network's seconds per image."""
    if path.is_file():
        with np.load(path) as z:
            return [z[name].astype(np.float32) for name, _, _ in images], float(z["__seconds"])
    maps, secs = [], []
    for _name, sem, _ in tqdm(images, desc=f"maps {path.stem}", leave=False):
        t0 = time.perf_counter()
        maps.append(predict_maps(model, sem.analysed, mode="auto", tta=tta))
        secs.append(time.perf_counter() - t0)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, __seconds=np.mean(secs), **{n: m.astype(np.float16) for (n, _, _), m in
                                                          zip(images, maps)})
    tmp.replace(path)
    return maps, float(np.mean(secs))


def _pooled_f1(labels_list, images, min_size):
    tp = fp = fn = 0
    s_iou = 0.0
    counts, medians = [], []
    for lab, (_, _, gt) in zip(labels_list, images):
        lab, gt = drop_small(lab, min_size), drop_small(gt, min_size)
        c = match_counts(match_instances(lab, gt))
        tp, fp, fn, s_iou = tp + c["tp"], fp + c["fp"], fn + c["fn"], s_iou + c["sum_iou"]
        counts.append(count_error(int(lab.max()), int(gt.max())))
        medians.append(size_errors(ecd_of_labels(lab), ecd_of_labels(gt))["median_ecd_error"])
    return {**instance_scores(tp, fp, fn, s_iou), "count_error": float(np.mean(counts)),
            "median_ecd_error": float(np.nanmean(medians))}


def choose(outputs: str, post: dict, maps, val, stored: bool = False) -> dict:
    """The post-processing: a border or distance U-Net's best on the validation images (over
    :data:`GRIDS`), else (or with ``stored``) the one stored in the model file."""
    if outputs not in GRIDS or stored:
        method = {"probability": "watershed"}.get(outputs, outputs)
        return {"threshold": post["threshold"], "separate": method, "params": dict(post[method]), "grid": []}
    rows = []
    for params in tqdm(GRIDS[outputs], desc=f"{outputs} grid", leave=False):
        p = dict(params)
        t = p.pop("threshold")
        labels = [labels_from_maps(m, outputs, t, outputs, p)[0] for m in maps]
        rows.append({**params, **_pooled_f1(labels, val, BAM_MIN_SIZE)})
    top = max(r["f1"] for r in rows)
    best = min((r for r in rows if r["f1"] >= top - F1_TIE),
               key=lambda r: (r["count_error"] + r["median_ecd_error"], -r["f1"]))
    params = {k: best[k] for k in GRIDS[outputs][0] if k != "threshold"}
    return {"threshold": best["threshold"], "separate": outputs, "params": params, "grid": rows,
            "val_f1_over_9px": best["f1"], "val_pq_over_9px": best["pq"], "val_best_f1_over_9px": top}


def score(maps, images, outputs, choice) -> dict:
    t0 = time.perf_counter()
    labels = [labels_from_maps(m, outputs, choice["threshold"], choice["separate"], choice["params"])[0]
              for m in maps]
    decode = (time.perf_counter() - t0) / max(len(maps), 1)
    names, gts = [n for n, _, _ in images], [g for _, _, g in images]
    out = {"decode_seconds_per_image": decode}
    for key, min_size in (("all", 1), ("over_9px", BAM_MIN_SIZE)):
        res = evaluate_images(labels, gts, probs=[m[0] for m in maps], names=names, min_size=min_size, coco=False)
        out[key] = {**{k: res[k] for k in _KEYS}, "anatomy": res["anatomy"],
                    "n_gt": int(sum(res["per_image"]["n_gt"])), "n_pred": int(sum(res["per_image"]["n_pred"])),
                    "per_image": res["per_image"]}
    return out


def run_model(name, spec, tta, val, test, out: Path, stored: bool = False) -> dict:
    folder = out / (name + ("-tta" if tta else ""))
    done = folder / "scores.json"
    if done.is_file():
        return json.loads(done.read_text())
    model = load_model(spec)
    post = model.settings.postprocessing()
    suffix = "_tta" if tta else ""
    vmaps, _ = network_maps(model, val, out / name / f"maps_val{suffix}.npz", tta)
    tmaps, secs = network_maps(model, test, out / name / f"maps_test{suffix}.npz", tta)
    choice = choose(post["outputs"], post, vmaps, val, stored)
    write_json(folder / "choice.json", choice)
    res = {"model": name, "file": str(spec), "tta": tta, "outputs": post["outputs"],
           "choice": {k: v for k, v in choice.items() if k != "grid"},
           "network_seconds_per_image": secs, "val": score(vmaps, val, post["outputs"], choice),
           "test": score(tmaps, test, post["outputs"], choice)}
    write_json(done, res)
    return res


def _pct(v):
    return f"{100 * v:.1f} %"


def write_table(rows, out: Path) -> Path:
    head = ("| model | TTA | val F1 >9 px | protocol | F1@0.5 | PQ | precision | recall | pixel IoU | count error "
            "(signed) | median ECD error | merged | missed | split | boundary | s/image (network) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        for proto in ("over_9px", "all"):
            t = r["test"][proto]
            a = t["anatomy"]
            lines.append(
                f"| {r['model']} | {'yes' if r['tta'] else 'no'} | {r['val']['over_9px']['f1']:.3f} | "
                f"{'over 9 px' if proto == 'over_9px' else 'all objects'} | {t['f1']:.3f} | {t['pq']:.3f} | "
                f"{t['precision']:.3f} | {t['recall']:.3f} | {t['mean_iou']:.3f} | {_pct(t['count_error'])} "
                f"({_pct(t['count_error_signed'])}) | {_pct(t['median_ecd_error'])} | {a['merged']} | "
                f"{a['missed']} | {a['split']} | {a['boundary_only']} | {r['network_seconds_per_image']:.1f} |")
    path = out / "table.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--model", action="append", required=True, help="NAME=FILE (a bundled name or a file)")
    ap.add_argument("--tta", action="store_true", help="also score every model with test-time augmentation")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--stored", action="store_true",
                    help="use each model file's stored post-processing (a shipped file) instead of choosing it")
    ap.add_argument("--export", nargs=2, metavar=("NAME", "FILE"),
                    help="write NAME's checkpoint with its chosen post-processing to FILE (int8)")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    _, val, test = prepare(a.data_dir, a.out)
    rows = []
    for spec in a.model:
        name, _, path = spec.partition("=")
        for tta in ((False, True) if a.tta else (False,)):
            rows.append(run_model(name, path, tta, val, test, a.out, a.stored))
    print(write_table(rows, a.out).read_text())
    if a.export:
        name, dest = a.export
        row = next(r for r in rows if r["model"] == name and not r["tta"])
        export_choice(row, dest, a.out / "data")
        print(f"wrote {dest}")


def export_choice(row, dest, data_dir: Path, n_crops: int = 16) -> Path:
    """The row's checkpoint as a compact int8 model file with its chosen post-processing, the
    pixel size and particle sizes of its training images, and an int8 calibration measured on
    ``n_crops`` random 256x256 training crops (seed 0, no augmentation)."""
    from tio2fiji.models.onnx import int8_calibration
    from tio2fiji.training.border import border_samples, particle_sizes, training_pixel_size
    from tio2fiji.training.datasets import RandomCropDataset, split_pairs

    train_pairs, _, meta = split_pairs(data_dir)
    samples = border_samples(train_pairs, meta.get("data_bar_rows"))  # the training images, read once
    pixel_size = training_pixel_size(samples)
    crops_ds = RandomCropDataset(samples, length=n_crops, seed=0, variants=((None, 0),), photometric_p=0.0)
    crops = np.stack([crops_ds.item_arrays(i)[0][None] for i in range(n_crops)]).astype(np.float32)
    c = row["choice"]
    metrics = {"test_over_9px": {k: row["test"]["over_9px"][k] for k in _KEYS},
               "test_all_objects": {k: row["test"]["all"][k] for k in _KEYS},
               "val_over_9px": {k: row["val"]["over_9px"][k] for k in _KEYS}}
    return export_model(row["file"], dest, weights="int8", threshold=c["threshold"], **{c["separate"]: c["params"]},
                        pixel_size_m=pixel_size, train_ecd=particle_sizes(samples, pixel_size),
                        int8_calibration=int8_calibration(load_model(row["file"]), crops),
                        metadata={"metrics": metrics,
                                  "chosen_on": "validation images 1908260, 1908284, 1908292, 1908306 "
                                               "(benchmarks/makers/border_candidates.py)"})

if __name__ == "__main__":
    main()
