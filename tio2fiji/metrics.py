"""Segmentation and particle-detection metrics on numpy arrays.

Pixel metrics (:func:`iou`, :func:`dice`) compare two boolean masks. Particle metrics compare label
images (0 = background, one positive integer per particle); boolean masks are turned into label
images with :func:`tio2fiji.instances.connected_components` (4-connectivity by default, because the BAM reference masks
separate touching particles by 1-pixel gaps that only 4-connectivity respects).

Conventions, stated once and used everywhere:

* **Empty versus empty.** Two empty masks agree perfectly: IoU and Dice are 1.0. An empty
  prediction of a non-empty truth (or the reverse) scores 0.0. The same holds for the particle
  metrics: no ground-truth particles and no predicted particles give instance IoU 1.0 and AP 1.0;
  predicted particles where there are none give AP 0.0.
* **Averaging.** ``mean_iou`` and ``mean_dice`` are per-image scores averaged over images, as the
  thesis reports its "mean IoU" on the test images. ``instance_iou`` pools all ground-truth
  particles of all images (each particle counts once, so crowded images weigh more), which is how the
  BAM paper's "mean per-instance IoU" is defined. ``count_error`` is the mean over images of
  ``|n_pred - n_gt| / max(n_gt, 1)`` (so a prediction of 3 particles where there are none counts 3.0).
* **Matching.** A predicted particle is a true positive for the PASCAL VOC AP when its IoU with a
  not-yet-matched ground-truth particle *exceeds* 0.5 (VOC devkit: ``ovmax > 0.5``); predictions are
  taken in decreasing score. COCO AP follows pycocotools (IoU >= threshold, thresholds 0.50:0.95).
* **Scores.** A predicted particle's score is its mean probability (``probs``). Without
  probabilities every particle scores 1.0 and AP describes the hard prediction: ties are evaluated as
  one operating point in :func:`voc11_ap`.
"""

from __future__ import annotations

import contextlib
import io as _stdio
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from .errors import InputError
from .instances import CONNECTIVITY, connected_components, particle_scores
from .io import mask_or_labels

__all__ = [
    "iou", "dice", "InstanceMatch", "match_instances", "best_iou_per_gt",
    "instance_iou", "match_detections", "voc11_ap", "ap50_voc11", "coco_ap", "count_error",
    "rle_from_labels", "evaluate_images", "per_image_frame",
]

# Beyond this many cells the dense pair-id bincount would allocate too much; np.unique sorts the
# (far fewer) overlapping pixels instead.
_MAX_BINCOUNT_CELLS = 1 << 22


# --------------------------------------------------------------------------------------------------
# pixel metrics


def _check_pair(pred, gt, valid=None):
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise InputError(f"prediction is {pred.shape} but ground truth is {gt.shape}: sizes must match.")
    pred, gt = pred != 0, gt != 0
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != gt.shape:
            raise InputError(f"valid mask is {valid.shape} but ground truth is {gt.shape}.")
        pred, gt = pred & valid, gt & valid
    return pred, gt


def iou(pred, gt, valid=None) -> float:
    """Intersection over union of two masks, ``|P ∩ G| / |P ∪ G|``.

    Parameters
    ----------
    pred, gt : array_like
        Masks of the same shape (non-zero = particle).
    valid : array_like of bool, optional
        Only these pixels count (e.g. the ``valid`` mask of a rotated tile).

    Returns
    -------
    float
        In ``[0, 1]``; 1.0 when both masks are empty (nothing to find, nothing found).
    """
    p, g = _check_pair(pred, gt, valid)
    union = np.count_nonzero(p | g)
    if union == 0:
        return 1.0
    return float(np.count_nonzero(p & g) / union)


def dice(pred, gt, valid=None) -> float:
    """Dice coefficient ``2|P ∩ G| / (|P| + |G|)``; 1.0 when both masks are empty.

    See :func:`iou` for the parameters.
    """
    p, g = _check_pair(pred, gt, valid)
    total = np.count_nonzero(p) + np.count_nonzero(g)
    if total == 0:
        return 1.0
    return float(2 * np.count_nonzero(p & g) / total)


# --------------------------------------------------------------------------------------------------
# instances


def _as_labels(a, connectivity: int) -> np.ndarray:
    """Masks are labelled into particles; label images are made sequential.

    Which is which follows :func:`tio2fiji.io.mask_or_labels`.
    """
    kind, data = mask_or_labels(a, name="mask or label image")
    if kind == "mask":
        return connected_components(data, connectivity, dtype=np.int32)
    return _sequential(data)


def _sequential(labels: np.ndarray, ids=None) -> np.ndarray:
    """Relabel to 1..n in increasing order of the original values (a no-op when already so)."""
    ids = np.unique(labels) if ids is None else ids
    ids = ids[ids != 0]
    if ids.size == 0:
        return np.zeros(labels.shape, np.int32)
    if ids[0] == 1 and ids[-1] == ids.size:
        return labels.astype(np.int32, copy=False)
    lut = np.zeros(int(ids[-1]) + 1, np.int32)
    lut[ids] = np.arange(1, ids.size + 1, dtype=np.int32)
    return lut[labels]


@dataclass
class InstanceMatch:
    """Overlap of ground-truth and predicted particles in one image.

    Attributes
    ----------
    iou : scipy.sparse.csr_matrix, shape (n_gt, n_pred)
        IoU of ground-truth particle ``i`` (label ``i + 1``) with predicted particle ``j`` (label
        ``j + 1``); only overlapping pairs are stored.
    gt_area, pred_area : ndarray of int64
        Pixel counts of each particle.
    gt_labels, pred_labels : ndarray of int32
        The sequential label images the indices refer to.
    """

    iou: sparse.csr_matrix
    gt_area: np.ndarray
    pred_area: np.ndarray
    gt_labels: np.ndarray
    pred_labels: np.ndarray

    @property
    def n_gt(self) -> int:
        return int(self.gt_area.size)

    @property
    def n_pred(self) -> int:
        return int(self.pred_area.size)


def match_instances(pred_labels, gt_labels, connectivity: int = CONNECTIVITY) -> InstanceMatch:
    """IoU of every overlapping (ground truth, prediction) particle pair.

    The intersections come from a sparse contingency table: each pixel where both images have a
    particle gets the pair id ``g * (n_pred + 1) + p``, and a bincount (or, for many particles, a
    sort) of those ids gives every pair's intersection in one pass over the image. This stays fast
    and small with thousands of particles, where a dense ``n_gt x n_pred`` table would not.

    Parameters
    ----------
    pred_labels, gt_labels : array_like
        Label images (integers, 0 = background) or masks: bool, or integer with a single non-zero
        value such as 0/255 (labelled with ``connectivity``).
    connectivity : {4, 8}
        Used only for masks.

    Returns
    -------
    InstanceMatch
    """
    p = _as_labels(pred_labels, connectivity)
    g = _as_labels(gt_labels, connectivity)
    if p.shape != g.shape:
        raise InputError(f"prediction is {p.shape} but ground truth is {g.shape}: sizes must match.")
    n_p, n_g = int(p.max(initial=0)), int(g.max(initial=0))
    pred_area = np.bincount(p.ravel(), minlength=n_p + 1)[1:].astype(np.int64)
    gt_area = np.bincount(g.ravel(), minlength=n_g + 1)[1:].astype(np.int64)
    both = (p > 0) & (g > 0)
    pair = (g[both].astype(np.int64) - 1) * n_p + (p[both].astype(np.int64) - 1)
    if n_g * n_p <= _MAX_BINCOUNT_CELLS:
        counts = np.bincount(pair, minlength=n_g * n_p)
        ids = np.flatnonzero(counts)
        inter = counts[ids]
    else:
        ids, inter = np.unique(pair, return_counts=True)
    gi, pj = ids // max(n_p, 1), ids % max(n_p, 1)
    union = gt_area[gi] + pred_area[pj] - inter
    vals = inter / union
    mat = sparse.csr_matrix((vals, (gi, pj)), shape=(n_g, n_p))
    return InstanceMatch(iou=mat, gt_area=gt_area, pred_area=pred_area, gt_labels=g, pred_labels=p)


def best_iou_per_gt(match: InstanceMatch) -> np.ndarray:
    """For each ground-truth particle, its best IoU with any predicted particle (0 if none)."""
    if match.n_gt == 0:
        return np.zeros(0)
    if match.n_pred == 0:
        return np.zeros(match.n_gt)
    return np.asarray(match.iou.max(axis=1).todense()).ravel()


def instance_iou(pred_labels, gt_labels, connectivity: int = CONNECTIVITY) -> float:
    """Mean over ground-truth particles of the best IoU with any predicted particle.

    1.0 when there are neither ground-truth nor predicted particles, 0.0 when there are predicted
    particles only (by the module's empty convention).
    """
    m = match_instances(pred_labels, gt_labels, connectivity)
    if m.n_gt == 0:
        return 1.0 if m.n_pred == 0 else 0.0
    return float(best_iou_per_gt(m).mean())


def count_error(n_pred, n_gt) -> float:
    """Relative error of a particle count, ``|n_pred - n_gt| / max(n_gt, 1)``.

    Accepts numbers or sequences (then the mean over images is returned).
    """
    n_pred = np.atleast_1d(np.asarray(n_pred, dtype=float))
    n_gt = np.atleast_1d(np.asarray(n_gt, dtype=float))
    if n_pred.shape != n_gt.shape:
        raise InputError("count_error: n_pred and n_gt must have the same length.")
    if n_pred.size == 0:
        return 0.0
    return float(np.mean(np.abs(n_pred - n_gt) / np.maximum(n_gt, 1.0)))


# --------------------------------------------------------------------------------------------------
# PASCAL VOC 11-point AP


def match_detections(match: InstanceMatch, scores=None, iou_threshold: float = 0.5) -> np.ndarray:
    """True-positive flag of each predicted particle, VOC style.

    Predictions are visited in decreasing score (ties in label order); each takes the ground-truth
    particle it overlaps most; it is a true positive when that IoU exceeds ``iou_threshold`` and the
    ground-truth particle is not already taken, otherwise a false positive.

    Returns
    -------
    ndarray of bool, shape (n_pred,)
        In the order of the prediction labels (not of the ranking).
    """
    n_p = match.n_pred
    tp = np.zeros(n_p, bool)
    if n_p == 0 or match.n_gt == 0:
        return tp
    scores = np.ones(n_p) if scores is None else np.asarray(scores, dtype=float)
    by_pred = match.iou.tocsc()
    best_gt = np.asarray(by_pred.argmax(axis=0)).ravel()
    best_iou = np.asarray(by_pred.max(axis=0).todense()).ravel()
    taken = np.zeros(match.n_gt, bool)
    for j in np.argsort(-scores, kind="stable"):
        if best_iou[j] > iou_threshold and not taken[best_gt[j]]:
            taken[best_gt[j]] = True
            tp[j] = True
    return tp


def voc11_ap(scores, tp, n_gt: int) -> float:
    """PASCAL VOC 2007 11-point interpolated average precision (thesis eq. 22-23).

    ``AP = mean over r in {0, 0.1, ..., 1} of max(precision at recall >= r)`` (0 where no point
    reaches ``r``).

    Parameters
    ----------
    scores : array_like
        Score of each detection.
    tp : array_like of bool
        Whether each detection is a true positive.
    n_gt : int
        Number of ground-truth objects.

    Returns
    -------
    float
        1.0 when there are neither objects nor detections; 0.0 when there are detections but no
        objects.

    Notes
    -----
    Detections with equal scores cannot be ranked, so the precision-recall curve is evaluated only
    after the last detection of each tied group; without ties this is the VOC devkit's computation.
    The recall levels are ``k / 10``, which compare exactly with recalls such as ``3 / 10``.
    """
    scores = np.asarray(scores, dtype=float).ravel()
    tp = np.asarray(tp, dtype=bool).ravel()
    if scores.shape != tp.shape:
        raise InputError("voc11_ap: scores and tp must have the same length.")
    if n_gt == 0:
        return 1.0 if scores.size == 0 else 0.0
    if scores.size == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order], tp[order]
    ctp = np.cumsum(t)
    cfp = np.cumsum(~t)
    last = np.r_[s[1:] != s[:-1], True]  # last detection of each tied group
    recall = ctp[last] / n_gt
    precision = ctp[last] / (ctp[last] + cfp[last])
    ap = 0.0
    for k in range(11):
        r = k / 10
        reach = recall >= r
        ap += precision[reach].max() if reach.any() else 0.0
    return float(ap / 11)


def ap50_voc11(pred_labels_list, gt_labels_list, scores_list=None, connectivity: int = CONNECTIVITY,
               iou_threshold: float = 0.5) -> float:
    """VOC 11-point AP at IoU 0.5 over the particles of several images, ranked together."""
    all_s, all_tp, n_gt = [], [], 0
    for k, (p, g) in enumerate(zip(pred_labels_list, gt_labels_list)):
        m = match_instances(p, g, connectivity)
        s = np.ones(m.n_pred) if scores_list is None else np.asarray(scores_list[k], dtype=float)
        all_s.append(s)
        all_tp.append(match_detections(m, s, iou_threshold))
        n_gt += m.n_gt
    return voc11_ap(np.concatenate(all_s) if all_s else [], np.concatenate(all_tp) if all_tp else [],
                    n_gt)


# --------------------------------------------------------------------------------------------------
# COCO AP (pycocotools)


def rle_from_labels(labels, n: int | None = None) -> list:
    """COCO run-length encodings of every particle of a label image, in one pass over the image.

    Encoding each particle with ``pycocotools.mask.encode`` scans the whole image once per particle;
    here the image's column-major runs are found once and split by label, and pycocotools compresses
    the runs. The result is identical to ``pycocotools.mask.encode`` of each particle's mask.

    Parameters
    ----------
    labels : ndarray of int
        Label image, 0 = background.
    n : int, optional
        Number of labels (default: the maximum); label ``k`` gives entry ``k - 1``, missing labels
        an empty RLE.

    Returns
    -------
    list of dict
        ``{"size": [h, w], "counts": str}``, JSON-ready.
    """
    from pycocotools import mask as mask_utils

    labels = np.asarray(labels)
    h, w = labels.shape
    n = int(labels.max(initial=0)) if n is None else int(n)
    total = h * w
    flat = labels.ravel(order="F")  # COCO RLE runs down columns
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate(([0], edges))
    ends = np.concatenate((edges, [total]))
    vals = flat[starts]
    fg = vals > 0
    starts, ends, vals = starts[fg], ends[fg], vals[fg]
    order = np.argsort(vals, kind="stable")  # runs of one label stay in image order
    starts, ends, vals = starts[order], ends[order], vals[order]
    bounds = np.searchsorted(vals, np.arange(1, n + 2))
    raw = []
    for k in range(n):
        s, e = starts[bounds[k]:bounds[k + 1]], ends[bounds[k]:bounds[k + 1]]
        if s.size == 0:
            raw.append({"size": [h, w], "counts": [total]})
            continue
        counts = np.empty(2 * s.size + 1, np.int64)
        counts[0] = s[0]
        counts[1::2] = e - s
        counts[2:-1:2] = s[1:] - e[:-1]
        counts[-1] = total - e[-1]
        raw.append({"size": [h, w], "counts": counts.tolist()})
    if not raw:
        return []
    out = mask_utils.frPyObjects(raw, h, w)
    for r in out:
        r["counts"] = r["counts"].decode("ascii")
        r["size"] = [int(v) for v in r["size"]]
    return out


def _quiet(fn, *args, **kwargs):
    """Run a pycocotools call without letting it print (the library never prints)."""
    with contextlib.redirect_stdout(_stdio.StringIO()):
        return fn(*args, **kwargs)


def _coco_components(match: InstanceMatch, threshold: float = 0.5):
    """Split one image's particles into groups that pycocotools can evaluate independently.

    Returns a list of (gt_indices, pred_indices). Pairs with IoU >= ``threshold`` (the lowest COCO
    threshold) are the only pairs that can ever match; the connected components of that bipartite
    graph are exact sub-problems. Particles without such a partner form one group of unmatched
    ground truth and one of unmatched predictions.
    """
    from scipy.sparse.csgraph import connected_components

    n_g, n_p = match.n_gt, match.n_pred
    iou = match.iou.tocoo()
    keep = iou.data >= threshold - 1e-9  # a superset of the matchable pairs is still exact
    gi, pj = iou.row[keep], iou.col[keep] + n_g
    graph = sparse.coo_matrix((np.ones(gi.size), (gi, pj)), shape=(n_g + n_p, n_g + n_p))
    n_comp, comp = connected_components(graph, directed=False)
    sizes = np.bincount(comp, minlength=n_comp)
    groups = []
    order = np.argsort(comp, kind="stable")
    bounds = np.searchsorted(comp[order], np.arange(n_comp + 1))
    lone_g, lone_p = [], []
    for c in range(n_comp):
        nodes = order[bounds[c]:bounds[c + 1]]
        if sizes[c] == 1:
            (lone_g if nodes[0] < n_g else lone_p).append(int(nodes[0]))
            continue
        groups.append((nodes[nodes < n_g], nodes[nodes >= n_g] - n_g))
    if lone_g:
        groups.append((np.array(lone_g), np.array([], int)))
    if lone_p:
        groups.append((np.array([], int), np.array(lone_p) - n_g))
    return groups


def _coco_ap_from_matches(matches, scores_list, decompose: bool = True) -> dict:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, gts, dts = [], [], []
    n_gt_total = n_dt_total = 0
    max_dets = 100
    for m, scores in zip(matches, scores_list):
        h, w = m.gt_labels.shape
        g_rle = rle_from_labels(m.gt_labels, m.n_gt)
        p_rle = rle_from_labels(m.pred_labels, m.n_pred)
        groups = _coco_components(m) if decompose else [(np.arange(m.n_gt), np.arange(m.n_pred))]
        for g_idx, p_idx in groups:
            img_id = len(images) + 1
            images.append({"id": img_id, "width": int(w), "height": int(h)})
            for i in g_idx:
                gts.append({"id": len(gts) + 1, "image_id": img_id, "category_id": 1,
                            "segmentation": g_rle[i], "area": float(m.gt_area[i]),
                            "bbox": [0.0, 0.0, 0.0, 0.0], "iscrowd": 0})
            for j in p_idx:
                dts.append({"image_id": img_id, "category_id": 1, "segmentation": p_rle[j],
                            "score": float(scores[j])})
            max_dets = max(max_dets, len(p_idx))
        n_gt_total += m.n_gt
        n_dt_total += m.n_pred
    # empty conventions (pycocotools returns -1 without ground truth and fails without detections)
    if n_gt_total == 0:
        v = 1.0 if n_dt_total == 0 else 0.0
        return {"ap": v, "ap50": v, "ap75": v}
    if n_dt_total == 0:
        return {"ap": 0.0, "ap50": 0.0, "ap75": 0.0}
    gt = COCO()
    gt.dataset = {"images": images, "annotations": gts,
                  "categories": [{"id": 1, "name": "particle"}]}
    _quiet(gt.createIndex)
    dt = _quiet(gt.loadRes, dts)
    ev = COCOeval(gt, dt, iouType="segm")
    # Particles number in the thousands: no per-image cap on detections (COCO's default is 100).
    ev.params.maxDets = [1, 10, int(max_dets)]
    # Only the "all" area range is reported; the small/medium/large ranges would cost 3x more.
    ev.params.areaRng = [[0.0, 1e10]]
    ev.params.areaRngLbl = ["all"]
    _quiet(ev.evaluate)
    _quiet(ev.accumulate)
    # COCOeval.summarize() reads AP@[.5:.95] at a hard-coded maxDets=100, so with another cap it
    # reports -1; read the accumulated precision (T x R x K x A x M) the same way it would.
    prec = ev.eval["precision"][:, :, 0, 0, -1]  # all IoU thresholds, category 1, area "all"
    thr = np.asarray(ev.params.iouThrs)

    def _mean(s):
        s = s[s > -1]
        return float(s.mean()) if s.size else 0.0

    return {"ap": _mean(prec), "ap50": _mean(prec[np.isclose(thr, 0.5)]),
            "ap75": _mean(prec[np.isclose(thr, 0.75)])}


def coco_ap(pred_labels_list, gt_labels_list, scores_list=None, connectivity: int = CONNECTIVITY,
            decompose: bool = True) -> dict:
    """COCO mask AP (IoU 0.50:0.95), AP50 and AP75 with pycocotools' ``COCOeval`` (``segm``).

    Parameters
    ----------
    pred_labels_list, gt_labels_list : sequence of array_like
        Per image, label images or boolean masks (labelled with ``connectivity``).
    scores_list : sequence of array_like, optional
        Per image, one score per predicted particle (label ``j + 1`` at index ``j``), e.g. from
        :func:`particle_scores`. Default: all 1.0.
    connectivity : {4, 8}
    decompose : bool
        Evaluate each image as independent groups of particles (see Notes). False hands whole images
        to pycocotools, whose matching loop is quadratic in pure Python: use only for small cases.

    Returns
    -------
    dict
        ``ap``, ``ap50``, ``ap75``.

    Notes
    -----
    * There is no cap on detections per image (``maxDets`` is raised to the largest count; COCO's
      default of 100 would discard most particles).
    * ``COCOeval`` compares every prediction with every ground-truth particle of an image in Python,
      which takes minutes for images with thousands of particles. A prediction can only match a
      ground-truth particle with IoU >= 0.5, so the connected components of the graph of such
      pairs never interact; each is handed to pycocotools as its own image, and so are the
      particles with no such partner (unmatched ground truth in one image, unmatched predictions in
      another). The matching, the ranking across images and therefore AP are unchanged (equal scores
      can be ranked in a different order; give probabilities to avoid ties).
    """
    matches = [match_instances(p, g, connectivity) for p, g in zip(pred_labels_list, gt_labels_list)]
    if scores_list is None:
        scores_list = [np.ones(m.n_pred) for m in matches]
    return _coco_ap_from_matches(matches, scores_list, decompose=decompose)


# --------------------------------------------------------------------------------------------------
# everything at once


def evaluate_images(preds, gts, probs=None, names=None, valids=None, connectivity: int = CONNECTIVITY,
                    iou_threshold: float = 0.5, coco: bool = True) -> dict:
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
        IoU a prediction must exceed to be a true positive in the VOC AP.
    coco : bool
        Compute ``coco_ap``/``coco_ap50`` (pycocotools); False leaves them None.

    Returns
    -------
    dict
        ``mean_iou``, ``mean_dice``, ``ap50_voc11``, ``coco_ap``, ``coco_ap50``, ``instance_iou``,
        ``count_error``, ``n_images``, ``connectivity``, ``scores``, and ``per_image``: a dict of
        equal-length lists (``name``, ``iou``, ``dice``, ``instance_iou``, ``ap50_voc11``, ``n_gt``,
        ``n_pred``, ``count_error``). All values are JSON-ready Python numbers.
    """
    preds, gts = list(preds), list(gts)
    if len(preds) != len(gts):
        raise InputError(f"{len(preds)} predictions but {len(gts)} ground-truth masks.")
    if probs is not None:
        probs = list(probs)
        if len(probs) != len(preds):
            raise InputError(f"{len(probs)} probability maps for {len(preds)} predictions.")
    names = [f"image_{k}" for k in range(len(preds))] if names is None else [str(n) for n in names]
    per = {k: [] for k in ("name", "iou", "dice", "instance_iou", "ap50_voc11", "n_gt", "n_pred",
                           "count_error")}
    matches, scores_list, tps, best_all = [], [], [], []
    for k, (p, g) in enumerate(zip(preds, gts)):
        p, g = np.asarray(p), np.asarray(g)
        if p.shape != g.shape:
            raise InputError(f"{names[k]}: prediction is {p.shape} but ground truth is {g.shape}.")
        if valids is not None and valids[k] is not None:
            v = np.asarray(valids[k], dtype=bool)
            p, g = np.where(v, p, 0).astype(p.dtype), np.where(v, g, 0).astype(g.dtype)
        m = match_instances(p, g, connectivity)
        s = (np.ones(m.n_pred) if probs is None
             else particle_scores(m.pred_labels, probs[k]))
        tp = match_detections(m, s, iou_threshold)
        best = best_iou_per_gt(m)
        matches.append(m)
        scores_list.append(s)
        tps.append(tp)
        best_all.append(best)
        per["name"].append(names[k])
        per["iou"].append(iou(m.pred_labels, m.gt_labels))
        per["dice"].append(dice(m.pred_labels, m.gt_labels))
        per["instance_iou"].append(float(best.mean()) if m.n_gt else (1.0 if m.n_pred == 0 else 0.0))
        per["ap50_voc11"].append(voc11_ap(s, tp, m.n_gt))
        per["n_gt"].append(m.n_gt)
        per["n_pred"].append(m.n_pred)
        per["count_error"].append(count_error(m.n_pred, m.n_gt))
    n_gt_total = int(sum(per["n_gt"]))
    n_pred_total = int(sum(per["n_pred"]))
    if n_gt_total:
        inst = float(np.concatenate(best_all).mean())
    else:
        inst = 1.0 if n_pred_total == 0 else 0.0
    ap_voc = voc11_ap(np.concatenate(scores_list) if scores_list else [],
                      np.concatenate(tps) if tps else [], n_gt_total)
    coco_res = _coco_ap_from_matches(matches, scores_list) if coco else {"ap": None, "ap50": None}

    def mean(xs):
        return float(np.mean(xs)) if xs else float("nan")

    return {
        "mean_iou": mean(per["iou"]),
        "mean_dice": mean(per["dice"]),
        "ap50_voc11": ap_voc,
        "coco_ap": coco_res["ap"],
        "coco_ap50": coco_res["ap50"],
        "instance_iou": inst,
        "count_error": mean(per["count_error"]),
        "n_images": len(preds),
        "connectivity": connectivity,
        "scores": "mean probability" if probs is not None else "none given: every particle 1.0",
        "per_image": per,
    }


def per_image_frame(result: dict):
    """The per-image lists of :func:`evaluate_images` as a pandas DataFrame (for the per-image CSV)."""
    import pandas as pd

    return pd.DataFrame(result["per_image"])
