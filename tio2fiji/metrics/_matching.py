"""Particles of two label images matched by their overlap: the sparse IoU table, instance IoU,
one-to-one matching at IoU 0.5 (precision, recall, F1, panoptic quality) and the count error."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

from ..errors import InputError
from ..instances import CONNECTIVITY, connected_components
from ..io import mask_or_labels

# Beyond this many cells the dense pair-id bincount would allocate too much; np.unique sorts the
# (far fewer) overlapping pixels instead.
_MAX_BINCOUNT_CELLS = 1 << 22


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


def matched_pairs(match: InstanceMatch, iou_threshold: float = 0.5):
    """The one-to-one matches: every (ground truth, prediction) pair with IoU above the threshold.

    For ``iou_threshold >= 0.5`` a particle can have at most one such partner (two particles that
    do not overlap each other cannot both cover more than half of a third), so the pairs are
    unique without an assignment step, as in StarDist's and Cellpose's matching.

    Returns
    -------
    gt_index, pred_index : ndarray of int
        0-based particle indices of the matched pairs.
    ious : ndarray of float
    """
    if iou_threshold < 0.5:
        raise InputError(f"one-to-one matching needs iou_threshold >= 0.5, got {iou_threshold}.")
    coo = match.iou.tocoo()
    keep = coo.data > iou_threshold
    return coo.row[keep], coo.col[keep], coo.data[keep]


def match_counts(match: InstanceMatch, iou_threshold: float = 0.5) -> dict:
    """True positives, false positives and false negatives at ``iou_threshold``, one-to-one.

    Returns
    -------
    dict
        ``tp``, ``fp``, ``fn`` (int) and ``sum_iou`` (the summed IoU of the matched pairs), which
        pool over images by addition (:func:`instance_scores`).
    """
    _, _, ious = matched_pairs(match, iou_threshold)
    tp = int(ious.size)
    return {"tp": tp, "fp": match.n_pred - tp, "fn": match.n_gt - tp, "sum_iou": float(ious.sum())}


def instance_scores(tp: int, fp: int, fn: int, sum_iou: float) -> dict:
    """Precision, recall, F1, segmentation and recognition quality, panoptic quality.

    ``precision = tp / (tp + fp)``, ``recall = tp / (tp + fn)``, ``f1 = 2 tp / (2 tp + fp + fn)``;
    panoptic quality (Kirillov et al. 2019) ``pq = sq * rq`` with ``sq`` the mean IoU of the matched
    pairs and ``rq = tp / (tp + fp/2 + fn/2)`` (= F1). Nothing to find and nothing found scores 1.0;
    a ratio whose denominator is 0 otherwise is 0.0 (precision with no predictions, recall with no
    particles).
    """
    if tp + fp + fn == 0:
        return {"precision": 1.0, "recall": 1.0, "f1": 1.0, "sq": 1.0, "rq": 1.0, "pq": 1.0}
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    rq = tp / (tp + 0.5 * fp + 0.5 * fn)
    sq = sum_iou / tp if tp else 0.0
    return {"precision": float(precision), "recall": float(recall), "f1": float(rq), "sq": float(sq),
            "rq": float(rq), "pq": float(sq * rq)}


def best_iou_per_pred(match: InstanceMatch) -> np.ndarray:
    """For each predicted particle, its best IoU with any ground-truth particle (0 if none)."""
    if match.n_pred == 0:
        return np.zeros(0)
    if match.n_gt == 0:
        return np.zeros(match.n_pred)
    return np.asarray(match.iou.max(axis=0).todense()).ravel()


def prediction_iou(pred_labels, gt_labels, connectivity: int = CONNECTIVITY) -> float:
    """Mean over *predicted* particles of the best IoU with a manual one (BAM's scoring script).

    This is the per-instance IoU of BAM's ``Calculate_Scores.py``: it ignores manual particles that
    were missed, so it rewards predicting few, easy particles. :func:`instance_iou` is the
    ground-truth-centred one. No particles on either side score 1.0; no predictions for a
    non-empty truth score 0.0 (the module's empty convention).
    """
    m = match_instances(pred_labels, gt_labels, connectivity)
    if m.n_pred == 0:
        return 1.0 if m.n_gt == 0 else 0.0
    return float(best_iou_per_pred(m).mean())
