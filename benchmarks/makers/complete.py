"""Issue 13 §3: fit the complete-particle classifier and score it against the BAM 2-class masks.

Usage::

    python benchmarks/makers/complete.py DATA_DIR --split runs/candidates/data/split.json \
        [--model default] [--write tio2fiji/data/complete_classifier.json] [--out runs/complete]

``DATA_DIR`` holds ``SEM/``, ``TiO2_Masks_Manual_4connected/`` and
``TiO2_Masks_Manual_4connected_2Classes/`` (the complete particles only). A manual particle is
complete when at least half of it is in the 2-class mask
(:func:`tio2fiji.training.complete.complete_labels`).

1. Fit :func:`tio2fiji.training.complete.fit_classifier` on the manual particles of the *training*
   images; choose its threshold on the manual particles of the *validation* images (best F1).
2. On the *test* images only:
   a. the classifier on the manual particles (precision/recall of "complete");
   b. on the particles the segmentation ``--model`` finds (:func:`tio2fiji.segment`): a predicted
      particle is truly complete when it matches (IoU >= 0.5, one-to-one) a complete manual
      particle. Precision = predicted-complete particles that are truly complete / predicted
      complete; recall = complete manual particles matched by a predicted-complete particle / all
      complete manual particles;
   c. per image, the median ECD of the predicted complete particles against that of the complete
      manual particles (|error| / manual), and the same for all particles, averaged over images.

``--write`` stores the classifier (plain numbers and how it was made) where
:func:`tio2fiji.particles.load_classifier` finds it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import tifffile

from tio2fiji.instances import connected_components
from tio2fiji.io import mask_for_image, read_mask, read_sem, write_json
from tio2fiji.metrics import ecd_of_labels, match_instances, matched_pairs
from tio2fiji.models.checkpoint import load_model
from tio2fiji.particles import complete_scores
from tio2fiji.predict import segment
from tio2fiji.training.complete import choose_threshold, complete_labels, fit_classifier
from tio2fiji.training.splits import read_split


def load(data_dir: Path, ident: str):
    sem = read_sem(data_dir / "SEM" / f"{ident}.tif")
    mask = mask_for_image(read_mask(data_dir / "TiO2_Masks_Manual_4connected" / f"{ident}_m.tif"), sem)
    lab = connected_components(mask, 4)
    cm = tifffile.imread(data_dir / "TiO2_Masks_Manual_4connected_2Classes" / f"{ident}_cm.tif") > 0
    cm = cm[: lab.shape[0], : lab.shape[1]]
    return sem, lab, complete_labels(lab, cm)


def _pr(pred, truth):
    tp = float((pred & truth).sum())
    return {"precision": tp / max(pred.sum(), 1), "recall": tp / max(truth.sum(), 1)}


def _median_error(p, g):
    return abs(float(np.median(p)) - float(np.median(g))) / float(np.median(g)) if len(p) and len(g) else float("nan")


def run(data_dir: Path, split_path: Path, model: str, write: Path | None, out: Path | None,
        subset: str = "test") -> dict:
    split, _ = read_split(split_path)
    train = [load(data_dir, i) for i in split["train"]]
    clf = fit_classifier([lab for _, lab, _ in train], [c for _, _, c in train])
    val = [load(data_dir, i) for i in split["val"]]
    s = np.concatenate([complete_scores(lab, clf) for _, lab, _ in val])
    t = np.concatenate([c for _, _, c in val])
    clf["threshold"], val_f1 = choose_threshold(s, t)
    clf["made_by"] = ("benchmarks/makers/complete.py: logistic regression (scikit-learn, class-balanced) on the "
                      f"manual particles of the {len(train)} training images of the bundled model's split; "
                      f"threshold by F1 on the {len(val)} validation images")
    clf["training_images"], clf["validation_images"] = list(split["train"]), list(split["val"])
    clf["validation_f1"] = val_f1
    net = load_model(model)
    manual_pred, manual_truth, per_image = [], [], []
    p_all, t_all = [], []
    for ident in split[subset]:
        sem, lab, comp = load(data_dir, ident)
        th = clf["threshold"]
        manual_pred.append(complete_scores(lab, clf) >= th)
        manual_truth.append(comp)
        seg = segment(net, sem)
        pred_complete = complete_scores(seg.labels, clf) >= th
        gi, pi, _ = matched_pairs(match_instances(seg.labels, lab))
        truly = np.zeros(int(seg.labels.max()), bool)
        truly[pi] = comp[gi]
        found = np.zeros(int(lab.max()), bool)
        found[gi[pred_complete[pi]]] = True
        p_all.append(pred_complete)
        t_all.append((truly, found, comp))
        ecd_p, ecd_g = ecd_of_labels(seg.labels), ecd_of_labels(lab)
        per_image.append({"image": ident, "manual": int(lab.max()), "manual_complete": int(comp.sum()),
                          "predicted": int(seg.labels.max()), "predicted_complete": int(pred_complete.sum()),
                          "count_error_complete":
                              abs(int(pred_complete.sum()) - int(comp.sum())) / max(int(comp.sum()), 1),
                          "median_ecd_error_all": _median_error(ecd_p, ecd_g),
                          "median_ecd_error_complete": _median_error(ecd_p[pred_complete], ecd_g[comp]),
                          "median_ecd_bias_complete_vs_all_manual":
                              float(np.median(ecd_g[comp]) / np.median(ecd_g) - 1)})
    pc = np.concatenate(p_all)
    truly = np.concatenate([a for a, _, _ in t_all])
    found = np.concatenate([b for _, b, _ in t_all])
    comp = np.concatenate([c for _, _, c in t_all])
    result = {
        "classifier_on_manual_particles_test": _pr(np.concatenate(manual_pred), np.concatenate(manual_truth)),
        "predicted_particles_test": {"precision": float((pc & truly).sum() / max(pc.sum(), 1)),
                                     "recall": float(found.sum() / max(comp.sum(), 1))},
        "median_ecd_error_all": float(np.nanmean([r["median_ecd_error_all"] for r in per_image])),
        "median_ecd_error_complete": float(np.nanmean([r["median_ecd_error_complete"] for r in per_image])),
        "count_error_complete": float(np.mean([r["count_error_complete"] for r in per_image])),
        "per_image": per_image, "model": str(model), "threshold": clf["threshold"], "validation_f1": val_f1,
    }
    if write is not None:
        write_json(write, clf)
    if out is not None:
        write_json(out / "complete.json", result)
    return result


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--split", type=Path, required=True)
    ap.add_argument("--model", default="default")
    ap.add_argument("--write", type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--subset", default="test", help="the images scored in step 2 (test, or val to choose a model)")
    a = ap.parse_args(argv)
    res = run(a.data_dir, a.split, a.model, a.write, a.out, a.subset)
    print(json.dumps({k: v for k, v in res.items() if k != "per_image"}, indent=1))  # noqa: T201
    for r in res["per_image"]:
        print(r)  # noqa: T201


if __name__ == "__main__":
    main()
