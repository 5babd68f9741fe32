"""All metrics of ``metrics.json`` for a set of images, and the per-image table."""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..instances import CONNECTIVITY, drop_small, particle_scores
from ._anatomy import GT_CAUSES, PRED_CAUSES, error_anatomy, pool_anatomy
from ._ap import _coco_ap_from_matches, match_detections, voc11_ap
from ._matching import best_iou_per_gt, best_iou_per_pred, count_error, instance_scores, match_counts, match_instances
from ._pixels import dice, iou
from ._sizes import ecd_of_labels, size_errors

#: BAM's scorer counts only objects over 9 px: the second protocol of ``evaluate`` drops objects
#: under this many pixels on both sides (the manual masks hold one-pixel drawing fragments).
BAM_MIN_SIZE = 10
_SIZE_KEYS = ("count_error_signed", "median_ecd_error", "d10_ecd_error", "d90_ecd_error", "ks_distance")
_ANATOMY_KEYS = (*GT_CAUSES, *(f"false_{c}" for c in PRED_CAUSES))
#: The per-image table's columns, in order.
_PER_IMAGE_KEYS = ("name", "iou", "dice", "instance_iou", "prediction_iou", "ap50_voc11", "n_gt", "n_pred",
                   "count_error", "tp", "fp", "fn", "precision", "recall", "f1", "pq", *_SIZE_KEYS,
                   *_ANATOMY_KEYS)


def evaluate_images(preds, gts, probs=None, names=None, valids=None, connectivity: int = CONNECTIVITY,
                    iou_threshold: float = 0.5, coco: bool = True, min_size: int = 1) -> dict:
    """All metrics of ``metrics.json`` for a set of predicted and ground-truth masks.

    Parameters
    ----------
    preds, gts : sequence of array_like
        Per image, a mask (bool, or 0/255-style integers; labelled into particles with
        ``connectivity``) or an integer label image (several non-zero values).
    probs : sequence of array_like, optional
        Per image, the probability map; a predicted particle's score is its mean probability.
        Without it every particle scores 1.0.
    names : sequence of str, optional
        Image names for the per-image lists.
    valids : sequence of array_like of bool, optional
        Per image, the pixels that count (others are cleared in both masks before anything is
        measured).
    connectivity : {4, 8}
    iou_threshold : float
        IoU a prediction must exceed to be a true positive in the VOC AP and in the one-to-one
        matching (precision, recall, F1, panoptic quality).
    coco : bool
        Compute ``coco_ap``/``coco_ap50`` (pycocotools); False leaves them None.
    min_size : int
        Objects under this many pixels are dropped on both sides before anything is matched (BAM's
        scorer counts only objects over 9 px: ``min_size=10``; the manual masks hold one-pixel
        drawing fragments). 1 keeps every object.

    Returns
    -------
    dict
        ``mean_iou``, ``mean_dice``, ``ap50_voc11``, ``coco_ap``, ``coco_ap50``, ``instance_iou``,
        ``count_error``; pooled over all particles of all images: ``precision``, ``recall``,
        ``f1``, ``sq``, ``rq``, ``pq`` (one-to-one matching at ``iou_threshold``, see
        :func:`~tio2fiji.metrics.instance_scores`) and ``prediction_iou`` (BAM's prediction-centred
        instance IoU, :func:`~tio2fiji.metrics.prediction_iou`); means over images of the size
        agreement ``count_error_signed``, ``median_ecd_error``, ``d10_ecd_error``,
        ``d90_ecd_error``, ``ks_distance`` (:func:`~tio2fiji.metrics.size_errors`; images without
        particles on one side are left out of the quantile and KS means); ``n_images``,
        ``connectivity``, ``scores``, and ``per_image``: a dict of equal-length lists with every
        per-image value (``name``, ``iou``, ``dice``, ``instance_iou``, ``prediction_iou``,
        ``ap50_voc11``, ``n_gt``, ``n_pred``, ``count_error``, ``tp``, ``fp``, ``fn``,
        ``precision``, ``recall``, ``f1``, ``pq``, the size keys and the error anatomy's counts:
        ``missed``, ``merged``, ``split``, ``boundary_only``, ``false_merger``, ``false_piece``,
        ``false_spurious``, see :mod:`tio2fiji.metrics._anatomy`); ``anatomy``: those counts
        pooled over the images, with ``unmatched_by_size`` and ``false_by_size``; ``min_size``.
        All values are JSON-ready Python numbers (NaN where undefined).
    """
    preds, gts, probs, names = _check_inputs(preds, gts, probs, names)
    per = {k: [] for k in _PER_IMAGE_KEYS}
    pieces = []  # what each image adds to the pooled metrics
    for k, (p, g) in enumerate(zip(preds, gts)):
        valid = valids[k] if valids is not None else None
        m = _image_match(p, g, valid, names[k], connectivity, min_size)
        row, piece = _image_scores(m, None if probs is None else probs[k], iou_threshold)
        for key, value in {"name": names[k], **row}.items():
            per[key].append(value)
        pieces.append(piece)
    return {**_pooled_metrics(per, pieces, coco), "anatomy": pool_anatomy([q["anatomy"] for q in pieces]),
            "min_size": int(min_size), "n_images": len(preds), "connectivity": connectivity,
            "scores": "mean probability" if probs is not None else "none given: every particle 1.0",
            "per_image": per}


def _check_inputs(preds, gts, probs, names):
    """The sequences as lists of equal length, and a name for each image."""
    preds, gts = list(preds), list(gts)
    if len(preds) != len(gts):
        raise InputError(f"{len(preds)} predictions but {len(gts)} ground-truth masks.")
    if probs is not None:
        probs = list(probs)
        if len(probs) != len(preds):
            raise InputError(f"{len(probs)} probability maps for {len(preds)} predictions.")
    names = [f"image_{k}" for k in range(len(preds))] if names is None else [str(n) for n in names]
    return preds, gts, probs, names


def _image_match(pred, gt, valid, name, connectivity, min_size):
    """One image's particles matched, outside ``valid`` cleared and objects under ``min_size`` dropped."""
    p, g = np.asarray(pred), np.asarray(gt)
    if p.shape != g.shape:
        raise InputError(f"{name}: prediction is {p.shape} but ground truth is {g.shape}.")
    if valid is not None:
        v = np.asarray(valid, dtype=bool)
        p, g = np.where(v, p, 0).astype(p.dtype), np.where(v, g, 0).astype(g.dtype)
    m = match_instances(p, g, connectivity)
    if min_size > 1:  # dropped from the particles as labelled with `connectivity`
        m = match_instances(drop_small(m.pred_labels, min_size), drop_small(m.gt_labels, min_size))
    return m


def _mean_best_iou(best, n, n_other) -> float:
    # mean best IoU over n particles; with none on this side, 1 when the other side has none too
    return float(best.mean()) if n else (1.0 if n_other == 0 else 0.0)


def _image_scores(m, prob, iou_threshold):
    """One image's row of the per-image table (without its name), and what it adds to the pooled
    metrics: scores, true-positive flags, best IoUs, one-to-one counts, error anatomy."""
    s = np.ones(m.n_pred) if prob is None else particle_scores(m.pred_labels, prob)
    tp = match_detections(m, s, iou_threshold)
    best = best_iou_per_gt(m)
    best_pred = best_iou_per_pred(m)
    counts = match_counts(m, iou_threshold)
    scores = instance_scores(**counts)
    sizes = size_errors(ecd_of_labels(m.pred_labels), ecd_of_labels(m.gt_labels))
    anatomy = error_anatomy(m, iou_threshold)
    row = {"iou": iou(m.pred_labels, m.gt_labels), "dice": dice(m.pred_labels, m.gt_labels),
           "instance_iou": _mean_best_iou(best, m.n_gt, m.n_pred),
           "prediction_iou": _mean_best_iou(best_pred, m.n_pred, m.n_gt),
           "ap50_voc11": voc11_ap(s, tp, m.n_gt), "n_gt": m.n_gt, "n_pred": m.n_pred,
           "count_error": count_error(m.n_pred, m.n_gt),
           **{key: counts[key] for key in ("tp", "fp", "fn")},
           **{key: scores[key] for key in ("precision", "recall", "f1", "pq")},
           **{key: sizes[key] for key in _SIZE_KEYS},
           **{key: anatomy[key] for key in _ANATOMY_KEYS}}
    piece = {"match": m, "scores": s, "tp": tp, "best": best, "best_pred": best_pred,
             "counts": counts, "anatomy": anatomy}
    return row, piece


def _mean(xs) -> float:
    return float(np.mean(xs)) if xs else float("nan")


def _nanmean(xs) -> float:
    xs = [x for x in xs if not np.isnan(x)]
    return float(np.mean(xs)) if xs else float("nan")


def _pooled_metrics(per, pieces, coco) -> dict:
    """The run's metrics: means of the per-image values, or pooled over every particle."""
    n_gt_total = int(sum(per["n_gt"]))
    n_pred_total = int(sum(per["n_pred"]))
    inst = _mean_best_iou(np.concatenate([q["best"] for q in pieces]) if n_gt_total else None,
                          n_gt_total, n_pred_total)
    scores_list = [q["scores"] for q in pieces]
    tps = [q["tp"] for q in pieces]
    ap_voc = voc11_ap(np.concatenate(scores_list) if scores_list else [],
                      np.concatenate(tps) if tps else [], n_gt_total)
    coco_res = (_coco_ap_from_matches([q["match"] for q in pieces], scores_list) if coco
                else {"ap": None, "ap50": None})
    pooled = {"tp": 0, "fp": 0, "fn": 0, "sum_iou": 0.0}
    for q in pieces:  # in image order: sum_iou is a float sum, so the order is part of the result
        for key in pooled:
            pooled[key] += q["counts"][key]
    pred_inst = _mean_best_iou(np.concatenate([q["best_pred"] for q in pieces]) if n_pred_total else None,
                               n_pred_total, n_gt_total)
    return {
        "mean_iou": _mean(per["iou"]),
        "mean_dice": _mean(per["dice"]),
        "ap50_voc11": ap_voc,
        "coco_ap": coco_res["ap"],
        "coco_ap50": coco_res["ap50"],
        "instance_iou": inst,
        "count_error": _mean(per["count_error"]),
        **instance_scores(**pooled),
        "prediction_iou": pred_inst,
        **{key: _nanmean(per[key]) for key in _SIZE_KEYS},
    }


def per_image_frame(result: dict):
    """The per-image lists of :func:`evaluate_images` as a pandas DataFrame (for the per-image CSV)."""
    import pandas as pd

    return pd.DataFrame(result["per_image"])
