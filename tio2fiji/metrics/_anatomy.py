"""Why particles are unmatched: the error anatomy of one-to-one matching at IoU 0.5.

For a user who asks "why does my count differ from my manual count?". Every manual particle
without a predicted partner (IoU above 0.5) gets one cause, checked in this order:

``missed``
    At most half of it lies inside predicted particles.
``merged``
    More than half of it lies inside one predicted particle that also holds more than half of
    another manual particle: two (or more) particles became one.
``split``
    More than half of it is predicted, but no single predicted particle holds more than half of
    it: it was cut into pieces.
``boundary_only``
    One predicted particle holds more than half of it and of no other manual particle: it was
    found on its own, but its outline is off by enough to fall to IoU 0.5 or below.

Every predicted particle without a partner (a false particle) is ``merger`` when it holds more than
half of two or more manual particles, ``piece`` when it holds more than half of one manual particle
or lies on manual particles for more than half of its area (a piece of a split particle or a badly
drawn outline), and ``spurious`` otherwise (found where there is no particle).
Both are also counted by size class (:data:`SIZE_CLASSES`, areas in pixels).
"""

from __future__ import annotations

import numpy as np

from ._matching import InstanceMatch, matched_pairs

__all__ = ["GT_CAUSES", "PRED_CAUSES", "SIZE_CLASSES", "error_anatomy", "anatomy_labels", "size_class",
           "pool_anatomy"]

#: Causes of an unmatched manual particle, in the order they are checked.
GT_CAUSES = ("missed", "merged", "split", "boundary_only")
#: Causes of a false (unmatched predicted) particle.
PRED_CAUSES = ("merger", "piece", "spurious")
#: Size classes of particle areas in pixels: (name, lowest area, area it stays below).
SIZE_CLASSES = (("under_10px", 0, 10), ("10_100px", 10, 100), ("100_400px", 100, 400),
                ("400_1600px", 400, 1600), ("over_1600px", 1600, np.inf))


def size_class(area) -> np.ndarray:
    """Index into :data:`SIZE_CLASSES` of each area."""
    edges = [lo for _, lo, _ in SIZE_CLASSES[1:]]
    return np.searchsorted(edges, np.asarray(area), side="right")


def _intersections(match: InstanceMatch):
    """Dense-free ``(gt index, pred index, intersection)`` of every overlapping pair."""
    m = match.iou.tocoo()
    g, p, v = m.row, m.col, m.data
    inter = np.rint(v * (match.gt_area[g] + match.pred_area[p]) / (1.0 + v)).astype(np.int64)
    return g, p, inter


def anatomy_labels(match: InstanceMatch, iou_threshold: float = 0.5):
    """Per particle, its cause: ``(gt_cause, pred_cause)`` integer arrays.

    ``gt_cause[i]`` is -1 for a matched manual particle, else the index of its cause in
    :data:`GT_CAUSES`; ``pred_cause[j]`` is -1 for a matched prediction, else the index in
    :data:`PRED_CAUSES`.
    """
    n_g, n_p = match.n_gt, match.n_pred
    gt_cause = np.full(n_g, -1, np.int64)
    pred_cause = np.full(n_p, -1, np.int64)
    gi, pj = matched_pairs(match, iou_threshold)[:2]
    g_matched = np.zeros(n_g, bool)
    p_matched = np.zeros(n_p, bool)
    g_matched[gi] = True
    p_matched[pj] = True
    g, p, inter = _intersections(match)
    covered = np.bincount(g, weights=inter, minlength=n_g)  # pixels of each manual particle predicted
    best = np.zeros(n_g)  # largest share of it inside one prediction
    best_pred = np.full(n_g, -1, np.int64)
    order = np.lexsort((-inter, g))  # per gt, the largest intersection first
    first = np.ones(order.size, bool)
    first[1:] = g[order][1:] != g[order][:-1]
    top = order[first]
    best[g[top]] = inter[top]
    best_pred[g[top]] = p[top]
    half_of_gt = inter > 0.5 * match.gt_area[g]
    holds = np.bincount(p[half_of_gt], minlength=n_p)  # manual particles half inside each prediction
    for i in np.flatnonzero(~g_matched):
        area = match.gt_area[i]
        if covered[i] <= 0.5 * area:
            gt_cause[i] = 0
        elif best[i] > 0.5 * area:
            gt_cause[i] = 1 if holds[best_pred[i]] >= 2 else 3
        else:
            gt_cause[i] = 2
    on_gt = np.bincount(p, weights=inter, minlength=n_p)
    for j in np.flatnonzero(~p_matched):
        if holds[j] >= 2:
            pred_cause[j] = 0
        elif holds[j] == 1 or on_gt[j] > 0.5 * match.pred_area[j]:
            pred_cause[j] = 1
        else:
            pred_cause[j] = 2
    return gt_cause, pred_cause


def error_anatomy(match: InstanceMatch, iou_threshold: float = 0.5) -> dict:
    """Counts of the causes of unmatched particles in one image, overall and by size class.

    Returns
    -------
    dict
        ``missed``, ``merged``, ``split``, ``boundary_only`` (unmatched manual particles),
        ``false_merger``, ``false_piece``, ``false_spurious`` (unmatched predictions), and
        ``unmatched_by_size`` / ``false_by_size``: per size class of :data:`SIZE_CLASSES` (the
        manual or predicted particle's area), a dict of those counts.
    """
    gt_cause, pred_cause = anatomy_labels(match, iou_threshold)
    out = {c: int((gt_cause == k).sum()) for k, c in enumerate(GT_CAUSES)}
    out.update({f"false_{c}": int((pred_cause == k).sum()) for k, c in enumerate(PRED_CAUSES)})
    gs, ps = size_class(match.gt_area), size_class(match.pred_area)
    out["unmatched_by_size"] = {name: {c: int(((gs == s) & (gt_cause == k)).sum()) for k, c in enumerate(GT_CAUSES)}
                                for s, (name, _, _) in enumerate(SIZE_CLASSES)}
    out["false_by_size"] = {name: {c: int(((ps == s) & (pred_cause == k)).sum()) for k, c in enumerate(PRED_CAUSES)}
                            for s, (name, _, _) in enumerate(SIZE_CLASSES)}
    return out


def pool_anatomy(anatomies) -> dict:
    """The sum of several images' :func:`error_anatomy` dicts."""
    anatomies = list(anatomies)
    out = {}
    for a in anatomies:
        for k, v in a.items():
            if isinstance(v, dict):
                dst = out.setdefault(k, {})
                for cls, counts in v.items():
                    row = dst.setdefault(cls, dict.fromkeys(counts, 0))
                    for c, n in counts.items():
                        row[c] += n
            else:
                out[k] = out.get(k, 0) + v
    return out
