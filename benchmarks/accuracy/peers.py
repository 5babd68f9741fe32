"""Peers side by side: the bundled U-Net, the classical Fiji route (and Cellpose) on the same images.

Usage::

    python benchmarks/accuracy/peers.py DATA_DIR --out runs/peers [--ids 1908250 ...] [--threads 1] \
        [--cellpose-model PATH] [--skip-fiji] [--skip-unet]

With Cellpose (3.1, in the overlay environment of ``scripts/setup_peers.sh``; the main ``.venv`` has
no Cellpose) run it as ``.venv-peers/bin/python benchmarks/accuracy/peers.py ...``.

``DATA_DIR`` holds ``SEM/<id>.tif`` and ``TiO2_Masks_Manual_4connected/<id>_m.tif``
(e.g. ``/work/shared/data/bam-tio2``). The default ``--ids`` are the bundled model's five test
images (1908250, 1908272, 1908288, 1908312, 1908320; ``tio2fiji/data/MODEL_CARD.md``), which were
never used for its training or its model selection (threshold, watershed parameters).

Every method sees the analysed area only: the SEM image without its data bar
(:func:`tio2fiji.read_sem`, ``data_bar_rows``; 1024×704 pixels for the BAM images), and is scored on
it against the manual mask (:func:`tio2fiji.read_mask`, cropped with
:func:`tio2fiji.mask_for_image`).

a. **tio2fiji U-Net**: :func:`tio2fiji.segment` with the bundled model (``"default"``) and its
   defaults (stored threshold and decoding: the distance U-Net's since stop 30); the particles are
   ``Segmentation.labels``.
   The model is loaded once; the seconds per image are those of ``segment`` (tiling, network,
   watershed), not of reading the file.
b. **Fiji route** in a real ImageJ 1.x (``ij.jar``, e.g. Debian's 1.53t), run as its own process
   under Xvfb (``xvfb-run java -jar ij.jar -batch DRIVER.ijm``: the menu commands need a display;
   ImageJ's preferences come from a temporary ``user.home``). One macro processes all images: open
   the SEM TIFF, crop to the analysed area, gray LUT (the palette TIFFs keep their raw values),
   ``Gaussian Blur... sigma=1`` (pixels), ``setAutoThreshold("Default dark")``, Convert to Mask
   (black background, as Fiji's default), Fill Holes, Watershed, Analyze Particles
   ``size=10-Infinity pixel show=[Count Masks]``; the count mask (one label per particle) is saved
   as TIFF. The seconds per image are measured inside the macro with ``getTime()`` from after
   opening the file to the count mask (crop included, saving excluded), so JVM start-up is not in
   them; the whole ImageJ process's wall time is reported too.
c. **Cellpose** (optional): only when the ``cellpose`` package (3.x) is importable and
   ``--cellpose-model`` names a model file or the ``--out`` folder of
   ``benchmarks/accuracy/train_cellpose.py`` (its ``models/`` file; a model trained from scratch on the
   training images of the split). ``CellposeModel(gpu=False, pretrained_model=PATH)`` (``nchan=2``;
   the model's ``diam_mean`` comes from the file), then ``eval`` on the analysed area as a gray image
   (``channels=[0, 0]``, Cellpose's 1–99 % normalisation) with ``diameter=diam_mean``: no resizing,
   the scale the model was trained at; Cellpose's other defaults (``flow_threshold=0.4``,
   ``cellprob_threshold=0``, ``min_size=15``). The model is loaded once; the seconds per image are
   those of ``eval`` (network, flow dynamics, masks). Otherwise skipped with a note.

``--skip-fiji`` / ``--skip-unet`` leave a route out (smoke runs without ImageJ).

Scores: :func:`tio2fiji.metrics.evaluate_images` (``coco=False``, 4-connectivity, which the manual
masks need: they keep touching particles apart by 1-pixel lines) on the label images of each
method: mean IoU (per image, averaged), F1 and panoptic quality (one-to-one matching at IoU > 0.5,
pooled over images), instance IoU (manual-particle centred, pooled), prediction-centred IoU (BAM's
``Calculate_Scores.py``, pooled), count error, median-ECD error and Kolmogorov–Smirnov distance of
the ECD distributions (means over images). Writes ``peers.json``, ``peers.csv`` (one row per
method), ``per_image_<method>.csv`` and ``peers.md`` to ``--out``; the Fiji label images stay in
``OUT/fiji``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

import tio2fiji
from tio2fiji.imagej import find_ij_jar
from tio2fiji.instances import OWN_SEPARATION
from tio2fiji.metrics import BAM_MIN_SIZE, per_image_frame

TEST_IDS = ("1908250", "1908272", "1908288", "1908312", "1908320")
MIN_SIZE_PX = 10
METRICS = (("mean_iou", "mean IoU"), ("f1", "F1"), ("pq", "PQ"), ("instance_iou", "instance IoU"),
           ("prediction_iou", "prediction IoU"), ("count_error", "count err"),
           ("median_ecd_error", "median ECD err"), ("ks_distance", "KS"))
PERCENT = {"count_error", "median_ecd_error"}

# One macro for all images; IMAGES, BARS, OUT_DIR and TIMES are prepended by fiji_route().
FIJI_MACRO = """
setOption("BlackBackground", true);
run("Colors...", "foreground=white background=black selection=yellow");
f = File.open(TIMES);
print(f, "image,ms,width,height,bit_depth,n_particles");
for (i = 0; i < IMAGES.length; i++) {
    open(IMAGES[i]);
    t0 = getTime();
    title = getTitle();
    makeRectangle(0, 0, getWidth(), getHeight() - parseInt(BARS[i]));
    run("Crop");
    run("Select None");
    run("Grays");
    w = getWidth(); h = getHeight(); depth = bitDepth();
    run("Gaussian Blur...", "sigma=1");
    setAutoThreshold("Default dark");
    run("Convert to Mask");
    run("Fill Holes");
    run("Watershed");
    run("Analyze Particles...", "size=%MIN%-Infinity pixel show=[Count Masks] clear");
    t1 = getTime();
    selectImage("Count Masks of " + title);
    getStatistics(area, mean, min, max);
    saveAs("Tiff", OUT_DIR + File.separator + NAMES[i] + "_fiji.tif");
    print(f, NAMES[i] + "," + (t1 - t0) + "," + w + "," + h + "," + depth + "," + max);
    close("*");
}
File.close(f);
""".replace("%MIN%", str(MIN_SIZE_PX))


def _ijm(value) -> str:
    """A Python string as an ImageJ macro string literal."""
    return json.dumps(str(value))


def _ijm_array(values) -> str:
    """A macro array of strings (``split``: ``newArray(64)`` would be 64 empty slots, not [64])."""
    return f"split({_ijm(chr(10).join(str(v) for v in values))}, {_ijm(chr(10))})"


def fiji_route(images, names, bars, out_dir: Path, timeout: float = 600):
    """Run FIJI_MACRO in a fresh ImageJ under Xvfb.

    Returns (label images, seconds per image, wall seconds of the process, the macro's table, its stdout).
    """
    java, xvfb = shutil.which("java"), shutil.which("xvfb-run")
    if java is None or xvfb is None:
        raise SystemExit("the Fiji route needs java and xvfb-run (Debian: default-jre xvfb)")
    jar = find_ij_jar()
    # ImageJ runs in a temporary cwd: a relative path would be a missing folder there, and the error
    # dialog it opens under Xvfb waits forever (the hang of a relative --out)
    out_dir = Path(out_dir).resolve()
    images = [Path(p).resolve() for p in images]
    out_dir.mkdir(parents=True, exist_ok=True)
    times = out_dir / "fiji_times.csv"
    times.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="peers-ij-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        driver = Path(tmp) / "driver.ijm"
        driver.write_text(f"IMAGES = {_ijm_array([str(p) for p in images])};\n"
                          f"NAMES = {_ijm_array(list(names))};\nBARS = {_ijm_array(list(bars))};\n"
                          f"OUT_DIR = {_ijm(out_dir)};\nTIMES = {_ijm(times)};\n" + FIJI_MACRO,
                          encoding="utf-8")
        cmd = [xvfb, "-a", "-s", "-screen 0 1280x1024x24", java, "-Xmx2g", f"-Duser.home={home}",
               "-jar", str(jar), "-batch", str(driver)]
        t0 = time.perf_counter()
        # its own process group, so that a timeout kills xvfb-run's Xvfb and java too (no orphans)
        child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp,
                                 start_new_session=True)
        try:
            stdout, stderr = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            stdout, stderr = child.communicate()
            raise SystemExit(f"ImageJ did not finish in {timeout} s:\n{stdout}\n{stderr}") from None
        proc = subprocess.CompletedProcess(cmd, child.returncode, stdout, stderr)
        wall = time.perf_counter() - t0
    if proc.returncode != 0 or not times.is_file():
        raise SystemExit(f"ImageJ failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    table = pd.read_csv(times, dtype={"image": str}).set_index("image")
    missing = [n for n in names if n not in table.index]
    if missing:
        raise SystemExit(f"ImageJ did not process {missing}:\n{proc.stdout}\n{proc.stderr}")
    labels = [tio2fiji.read_labels(out_dir / f"{n}_fiji.tif") for n in names]
    return labels, [table.loc[n, "ms"] / 1000 for n in names], wall, table, proc.stdout.strip()


def resolve_cellpose_model(path):
    """A Cellpose model file: ``path`` itself, or the model named by ``path/cellpose_train.json``."""
    path = Path(path)
    if path.is_dir():
        doc = path / "cellpose_train.json"
        if doc.is_file():
            path = Path(json.loads(doc.read_text(encoding="utf-8"))["model_path"])
        else:
            found = sorted(p for p in (path / "models").glob("*") if p.is_file() and p.suffix == "")
            if len(found) != 1:
                raise SystemExit(f"{path}: no cellpose_train.json and not exactly one file in models/")
            path = found[0]
    if not path.is_file():
        # CellposeModel would silently fall back to (and download) its built-in cyto3 model
        raise SystemExit(f"Cellpose model file not found: {path}")
    return path


def cellpose_route(sems, model_path, threads: int = 1):
    """Cellpose label images, seconds per image and a note, or None (with the reason) when it cannot run."""
    try:
        from cellpose import models as cp_models
    except ImportError:
        return None, "cellpose is not importable (not installed here; nothing is installed by this benchmark)"
    if model_path is None:
        return None, "cellpose is importable but no --cellpose-model was given"
    import cv2
    import torch

    cv2.setNumThreads(threads)
    path = resolve_cellpose_model(model_path)
    t0 = time.perf_counter()
    model = cp_models.CellposeModel(gpu=False, device=torch.device("cpu"), pretrained_model=str(path), nchan=2)
    load_s = time.perf_counter() - t0
    diam = float(model.diam_mean)
    labels, seconds = [], []
    for sem in tqdm(sems, desc="cellpose", file=sys.stderr):
        img = np.ascontiguousarray(sem.analysed, dtype=np.float32)
        t0 = time.perf_counter()
        masks = model.eval(img, channels=[0, 0], diameter=diam, normalize=True)[0]
        seconds.append(time.perf_counter() - t0)
        masks = np.asarray(masks)
        if masks.shape != img.shape:
            raise SystemExit(f"Cellpose returned {masks.shape} for an analysed area of {img.shape}")
        labels.append(masks.astype(np.int32))
    note = (f"cellpose {version('cellpose')}, model {path}: diam_mean {diam:.2f} px (eval diameter = diam_mean, "
            f"no resizing), diam_labels {float(model.diam_labels):.2f} px; channels [0, 0], normalize=True, "
            f"flow_threshold 0.4, cellprob_threshold 0, min_size 15; loaded once in {load_s:.1f} s "
            f"(not in the seconds per image)")
    return (labels, seconds, note), None


def _fmt(key, value):
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    return f"{100 * value:.1f} %" if key in PERCENT else f"{value:.3f}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--ids", nargs="+", default=list(TEST_IDS),
                    help="image ids (default: the bundled model's test images)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--cellpose-model", type=Path, default=None,
                    help="a Cellpose model file, or the --out folder of train_cellpose.py (optional)")
    ap.add_argument("--skip-fiji", action="store_true", help="leave the Fiji route out (no ImageJ)")
    ap.add_argument("--skip-unet", action="store_true", help="leave the tio2fiji U-Net out")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    sem_dir = args.data_dir / "SEM"
    mask_dir = args.data_dir / "TiO2_Masks_Manual_4connected"
    images = [sem_dir / f"{i}.tif" for i in args.ids]
    masks = [mask_dir / f"{i}_m.tif" for i in args.ids]
    missing = [str(p) for p in images + masks if not p.is_file()]
    if missing:
        raise SystemExit(f"missing: {missing}")
    args.out.mkdir(parents=True, exist_ok=True)
    names = list(args.ids)
    t_start = time.perf_counter()
    print(f"{len(names)} images: {' '.join(names)}; {args.threads} torch thread(s), "
          f"load average {os.getloadavg()}", flush=True)

    sems = [tio2fiji.read_sem(p) for p in images]
    gts = [tio2fiji.mask_for_image(tio2fiji.read_mask(m), s, mask_name=str(m)) for m, s in zip(masks, sems)]

    preds, seconds, notes = {}, {}, {}
    if args.skip_unet:
        notes["unet"] = "skipped: --skip-unet"
    else:
        t0 = time.perf_counter()
        model = tio2fiji.load_model("default")
        notes["unet"] = f"model loaded once in {time.perf_counter() - t0:.1f} s (not in the seconds per image)"
        preds["unet"], seconds["unet"] = [], []
        for sem in tqdm(sems, desc="tio2fiji U-Net", file=sys.stderr):
            t0 = time.perf_counter()
            seg = tio2fiji.segment(model, sem)
            seconds["unet"].append(time.perf_counter() - t0)
            preds["unet"].append(seg.labels)

    if args.skip_fiji:
        notes["fiji"] = "skipped: --skip-fiji"
    else:
        print("Fiji route: one ImageJ process under Xvfb for all images ...", flush=True)
        labels, secs, wall, fiji_table, ij_out = fiji_route(images, names, [s.data_bar_rows for s in sems],
                                                            args.out / "fiji")
        preds["fiji"], seconds["fiji"] = labels, secs
        notes["fiji"] = (f"ImageJ process {wall:.1f} s in all (JVM and Xvfb start-up included); "
                         f"per image from getTime() inside the macro")
        if ij_out:
            notes["fiji"] += f"; ImageJ printed: {ij_out[-500:]}"
        for n, lab, s in zip(names, labels, sems):
            row = fiji_table.loc[n]
            if lab.shape != s.analysed.shape or (row.width, row.height) != (s.analysed.shape[1],
                                                                             s.analysed.shape[0]):
                raise SystemExit(f"{n}: ImageJ's label image is {lab.shape}, the analysed area {s.analysed.shape}")

    res_cp, why = cellpose_route(sems, args.cellpose_model, threads=args.threads)
    if res_cp is None:
        print(f"Cellpose skipped: {why}", flush=True)
        notes["cellpose"] = f"skipped: {why}"
    else:
        preds["cellpose"], seconds["cellpose"], notes["cellpose"] = res_cp

    unet_label = "tio2fiji U-Net" if args.skip_unet else \
        f"tio2fiji U-Net (default: {OWN_SEPARATION[model.settings.outputs]} decoding)"
    labels_of = {"unet": unet_label, "fiji": "Fiji route (ImageJ 1.x)",
                 "cellpose": f"Cellpose ({args.cellpose_model})"}
    results, rows = {}, []
    # both protocols of DESIGN.md: all objects, and objects under 10 px dropped on both sides (BAM's scorer)
    for (method, pred), (suffix, min_size) in itertools.product(
            tqdm(preds.items(), desc="scoring", file=sys.stderr), (("", 1), ("_over_9px", BAM_MIN_SIZE))):
        res = tio2fiji.evaluate_images(pred, gts, names=names, coco=False, connectivity=4, min_size=min_size)
        frame = per_image_frame(res)
        frame.insert(1, "seconds", seconds[method])
        frame.to_csv(args.out / f"per_image_{method}{suffix}.csv", index=False)
        summary = {k: v for k, v in res.items() if k != "per_image"}
        summary["seconds_per_image"] = float(np.mean(seconds[method]))
        summary["seconds_per_image_median"] = float(np.median(seconds[method]))
        summary["n_gt"], summary["n_pred"] = int(sum(res["per_image"]["n_gt"])), int(sum(res["per_image"]["n_pred"]))
        label = labels_of[method] + (", objects of 10 px and more" if min_size > 1 else ", all objects")
        results[method + suffix] = {"label": label, **summary, "note": notes.get(method, "")}
        rows.append({"method": method + suffix, "label": label,
                     **{k: summary[k] for k, _ in METRICS}, "precision": summary["precision"],
                     "recall": summary["recall"], "n_gt": summary["n_gt"], "n_pred": summary["n_pred"],
                     "seconds_per_image": summary["seconds_per_image"]})
    pd.DataFrame(rows).to_csv(args.out / "peers.csv", index=False)

    lines = ["| method | " + " | ".join(h for _, h in METRICS) + " | particles pred / manual | s / image |",
             "|---|" + "---:|" * (len(METRICS) + 2)]
    for r in rows:
        lines.append(f"| {r['label']} | " + " | ".join(_fmt(k, r[k]) for k, _ in METRICS)
                     + f" | {r['n_pred']} / {r['n_gt']} | {r['seconds_per_image']:.2f} |")
    total = time.perf_counter() - t_start
    lines += ["", f"{len(names)} images ({' '.join(names)}), analysed area only, 4-connectivity; "
              f"{args.threads} torch thread(s); whole run {total:.0f} s."]
    lines += [f"- {m}: {n}" for m, n in notes.items()]
    text = "\n".join(lines)
    print(text)
    (args.out / "peers.md").write_text(text + "\n", encoding="utf-8")
    doc = {"data_dir": str(args.data_dir), "ids": names, "threads": args.threads,
           "tio2fiji_version": tio2fiji.__version__,
           "ij_jar": None if args.skip_fiji else str(find_ij_jar()),
           "cellpose_model": None if args.cellpose_model is None else str(args.cellpose_model),
           "fiji_macro": FIJI_MACRO, "min_size_px": MIN_SIZE_PX, "connectivity": 4,
           "seconds_total": total, "loadavg_end": os.getloadavg(), "methods": results,
           "notes": notes}
    (args.out / "peers.json").write_text(json.dumps(doc, indent=2, default=str), encoding="utf-8")
    print(f"wrote {args.out / 'peers.json'}, peers.csv, peers.md, per_image_*.csv")


if __name__ == "__main__":
    main()
