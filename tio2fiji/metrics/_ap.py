"""Average precision: PASCAL VOC 11-point AP at IoU 0.5 and COCO AP (pycocotools)."""

from __future__ import annotations

import contextlib
import io as _stdio

import numpy as np
from scipy import sparse

from ..errors import InputError
from ..instances import CONNECTIVITY
from ._matching import InstanceMatch, match_instances


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
