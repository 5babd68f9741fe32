"""Pixel metrics: IoU and Dice of two boolean masks."""

from __future__ import annotations

import numpy as np

from ..errors import InputError


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
