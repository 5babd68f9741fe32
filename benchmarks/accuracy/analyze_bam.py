"""``analyze_images`` on the BAM TiO2 images vs their manual masks: particle count and median ECD.

Usage::

    python benchmarks/accuracy/analyze_bam.py DATA_DIR --split runs/data-practical/split.json \
        --out runs/analyze-bam [--threads 1]

``DATA_DIR`` holds ``SEM/<id>.tif`` and ``TiO2_Masks_Manual_4connected/<id>_m.tif``
(e.g. ``/work/shared/data/bam-tio2``).

1. :func:`tio2fiji.run.analyze_images` runs on every SEM image with the bundled model and its
   default options (watershed separation, native measurement, connectivity 4, distribution tests,
   envelopes, report) into ``OUT/analysis``; the wall time per image is taken from the progress
   callback's timestamps (and ``AnalysisResult.images[i]["seconds"]``).
2. Connected components (``separate="none"``) of the *same* network output: analyze writes
   ``<stem>_mask.tif`` = probability > threshold (``Segmentation.mask``), and
   ``labels_from_probability(prob, thr, separate="none", connectivity=4)`` is by definition
   ``connected_components(prob > thr, 4)``; so the mask is read back, labelled with
   :func:`tio2fiji.instances.connected_components` and measured as analyze measures (a label image,
   :func:`tio2fiji.particles.measure`, connectivity 4). No second network pass.
3. The manual masks are measured with :func:`tio2fiji.run.measure_files` (connectivity 4,
   ``images_dir`` = ``SEM`` so calibration and the data bar are applied: analysed area only).

Per image: particle count and median ECD (nm) of each prediction vs the manual mask, relative errors
|pred − manual| / manual; mean relative errors over all images and per subset of the split (the model
was trained on ``train``; ``val`` + ``test`` are held out). Goal: count error ≤ 5 %, median ECD
error ≤ 3 %. Writes ``per_image.csv``, ``summary.json`` and ``tables.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

GOAL_COUNT, GOAL_ECD = 0.05, 0.03
SUBSETS = ("train", "val", "test")


def _rel(pred, ref):
    return abs(pred - ref) / ref if ref else float("nan")


def _stats(table: pd.DataFrame, pixel_size_m: float) -> dict:
    """Count, median ECD (table unit, nm) and the number of particles of at most 10 pixels."""
    px_area = (pixel_size_m * 1e9) ** 2
    return {"n": int(len(table)), "median_ecd": float(table["ECD"].median()) if len(table) else float("nan"),
            "n_le10px": int((table["Area"] <= 10 * px_area + 1e-9).sum()),
            "area_px": float(table["Area"].sum() / px_area)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--split", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--model", default="default")
    ap.add_argument("--limit", type=int, default=None, help="only the first N images (for a trial)")
    args = ap.parse_args(argv)

    import torch

    from tio2fiji.instances import connected_components
    from tio2fiji.io import read_mask
    from tio2fiji.particles import measure
    from tio2fiji.run import analyze_images, measure_files
    from tio2fiji.training import read_split

    torch.set_num_threads(args.threads)
    sem_dir = args.data_dir / "SEM"
    mask_dir = args.data_dir / "TiO2_Masks_Manual_4connected"
    images = sorted(sem_dir.glob("*.tif"))[:args.limit]
    masks = [mask_dir / f"{p.stem}_m.tif" for p in images]
    missing = [str(m) for m in masks if not m.is_file()]
    if missing:
        raise SystemExit(f"manual masks missing: {missing}")
    split, _ = read_split(args.split)
    subset_of = {i: s for s, ids in split.items() for i in ids}
    args.out.mkdir(parents=True, exist_ok=True)

    loads = [("start", os.getloadavg())]
    stamps = []

    def progress(done, total, name):
        stamps.append((time.perf_counter(), name))
        loads.append((name, os.getloadavg()))
        print(f"  [{done}/{total}] {name}  {stamps[-1][0] - t_start:.0f} s  load {os.getloadavg()[0]:.2f}",
              flush=True)

    print(f"analyze_images on {len(images)} images, model {args.model}, {args.threads} torch thread(s), "
          f"load average {os.getloadavg()}", flush=True)
    t_start = time.perf_counter()
    res = analyze_images(images, args.out / "analysis", model=args.model, progress=progress)
    t_total = time.perf_counter() - t_start
    loads.append(("end of analyze", os.getloadavg()))
    if res.failures:
        print("FAILURES:", res.failures)
    meta = {m["image"]: m for m in res.images}
    starts = [t_start] + [t for t, _ in stamps[:-1]]
    wall = {name: t - t0 for (t, name), t0 in zip(stamps, starts)}  # the first includes model loading

    manual = measure_files(masks, images_dir=sem_dir, connectivity=4)
    if manual.failures:
        raise SystemExit(f"manual masks failed: {manual.failures}")
    manual_by_stem = {Path(item.name).stem.removesuffix("_m"): (t, item)
                      for t, item in zip(manual.tables, manual.inputs)}

    rows = []
    for img in images:
        stem, name = img.stem, img.name
        if name not in meta:
            continue
        m = meta[name]
        ps = m["pixel_size_m"]
        ws_table = res.particles[res.particles["image"] == name]
        pred_mask = read_mask(m["files"]["mask"])
        none_labels = connected_components(pred_mask, 4)
        none_table = measure(none_labels, pixel_size_m=ps, connectivity=4, image_name=name)
        man_table, item = manual_by_stem[stem]
        if item.mask.shape != pred_mask.shape:
            raise SystemExit(f"{stem}: manual {item.mask.shape} vs predicted {pred_mask.shape}")
        man = _stats(man_table, item.pixel_size_m)
        ws, no = _stats(ws_table, ps), _stats(none_table, ps)
        row = {"image": stem, "subset": subset_of.get(stem, "?"),
               "seconds_progress": round(wall[name], 2), "seconds_analyze": m["seconds"],
               "pixel_size_nm": ps * 1e9, "manual_pixel_size_nm": item.pixel_size_m * 1e9,
               "data_bar_rows": m["data_bar_rows"], "manual_data_bar_rows": item.data_bar_rows,
               "n_manual": man["n"], "n_manual_cc4": int(connected_components(item.mask, 4).max()),
               "n_watershed": ws["n"], "n_none": no["n"],
               "ecd_manual": man["median_ecd"], "ecd_watershed": ws["median_ecd"], "ecd_none": no["median_ecd"],
               "fg_px_manual": int(np.count_nonzero(item.mask)), "fg_px_pred": int(np.count_nonzero(pred_mask)),
               "n_le10px_manual": man["n_le10px"], "n_le10px_watershed": ws["n_le10px"],
               "n_le10px_none": no["n_le10px"]}
        for sep in ("watershed", "none"):
            row[f"count_err_{sep}"] = _rel(row[f"n_{sep}"], row["n_manual"])
            row[f"count_bias_{sep}"] = (row[f"n_{sep}"] - row["n_manual"]) / row["n_manual"]
            row[f"ecd_err_{sep}"] = _rel(row[f"ecd_{sep}"], row["ecd_manual"])
            row[f"ecd_bias_{sep}"] = (row[f"ecd_{sep}"] - row["ecd_manual"]) / row["ecd_manual"]
        row["fg_ratio"] = row["fg_px_pred"] / row["fg_px_manual"]
        rows.append(row)
    df = pd.DataFrame(rows)
    df.to_csv(args.out / "per_image.csv", index=False)
    loads.append(("end", os.getloadavg()))

    groups = {"all": df, **{s: df[df["subset"] == s] for s in SUBSETS},
              "val+test": df[df["subset"].isin(("val", "test"))]}
    summary = {}
    for g, d in groups.items():
        summary[g] = {"images": int(len(d))}
        for sep in ("watershed", "none"):
            summary[g][sep] = {k: float(d[f"{k}_{sep}"].mean()) if len(d) else float("nan")
                               for k in ("count_err", "ecd_err", "count_bias", "ecd_bias")}
            summary[g][sep]["count_err_max"] = float(d[f"count_err_{sep}"].max()) if len(d) else float("nan")
            summary[g][sep]["ecd_err_max"] = float(d[f"ecd_err_{sep}"].max()) if len(d) else float("nan")
            summary[g][sep]["images_meeting_both_goals"] = int(
                ((d[f"count_err_{sep}"] <= GOAL_COUNT) & (d[f"ecd_err_{sep}"] <= GOAL_ECD)).sum())

    lines = ["| image | subset | s | n manual | n ws | n cc | count err ws | count err cc | "
             "med ECD manual nm | ws | cc | ECD err ws | ECD err cc | fg pred/manual |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['image']} | {r['subset']} | {r['seconds_progress']:.1f} | {r['n_manual']} | "
                     f"{r['n_watershed']} | {r['n_none']} | {100 * r['count_err_watershed']:.1f} % | "
                     f"{100 * r['count_err_none']:.1f} % | {r['ecd_manual']:.1f} | {r['ecd_watershed']:.1f} | "
                     f"{r['ecd_none']:.1f} | {100 * r['ecd_err_watershed']:.1f} % | "
                     f"{100 * r['ecd_err_none']:.1f} % | {r['fg_ratio']:.3f} |")
    lines += ["", "Mean relative errors |pred − manual| / manual (signed mean bias in brackets); "
              f"goal count ≤ {100 * GOAL_COUNT:.0f} %, median ECD ≤ {100 * GOAL_ECD:.0f} %", "",
              "| subset | images | count err watershed | median-ECD err watershed | count err none (cc) | "
              "median-ECD err none (cc) | images meeting both goals ws / cc |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for g, s in summary.items():
        w, c = s["watershed"], s["none"]
        lines.append(f"| {g} | {s['images']} | {100 * w['count_err']:.1f} % ({100 * w['count_bias']:+.1f} %) | "
                     f"{100 * w['ecd_err']:.1f} % ({100 * w['ecd_bias']:+.1f} %) | "
                     f"{100 * c['count_err']:.1f} % ({100 * c['count_bias']:+.1f} %) | "
                     f"{100 * c['ecd_err']:.1f} % ({100 * c['ecd_bias']:+.1f} %) | "
                     f"{w['images_meeting_both_goals']} / {c['images_meeting_both_goals']} |")
    secs = df["seconds_progress"]
    lines += ["", f"analyze_images: {t_total:.0f} s for {len(df)} images (AnalysisResult.seconds "
              f"{res.seconds:.0f} s, incl. plots and report); per image median {secs.median():.1f} s, "
              f"min {secs.min():.1f}, max {secs.max():.1f} (the first includes model loading); "
              f"{args.threads} torch thread(s)",
              "load average (1, 5, 15 min): " + "; ".join(
                  f"{k} {tuple(round(v, 2) for v in l)}" for k, l in
                  [loads[0], loads[len(loads) // 2], loads[-2], loads[-1]])]
    diff_cc = df[df["n_manual"] != df["n_manual_cc4"]]
    if len(diff_cc):
        lines.append("manual masks where the measured count differs from the 4-connected components "
                     "(particles inside holes erased, as ImageJ): "
                     + ", ".join(f"{r.image} {r.n_manual} vs {r.n_manual_cc4}" for r in diff_cc.itertuples()))
    text = "\n".join(lines)
    print(text)
    (args.out / "tables.md").write_text(text + "\n")
    doc = {"data_dir": str(args.data_dir), "split": str(args.split), "model": args.model,
           "threads": args.threads, "options": "analyze_images defaults (separate='auto' = watershed)",
           "none_from": "connected_components(analysis/<stem>_mask.tif, 4): the same probability map",
           "goal": {"count_err": GOAL_COUNT, "median_ecd_err": GOAL_ECD},
           "seconds_total": t_total, "analysis_seconds": res.seconds,
           "seconds_per_image_median": float(secs.median()), "loadavg": loads,
           "failures": res.failures, "summary": summary}
    (args.out / "summary.json").write_text(json.dumps(doc, indent=2, default=str))
    print(f"wrote {args.out / 'per_image.csv'}, summary.json, tables.md")


if __name__ == "__main__":
    main()
