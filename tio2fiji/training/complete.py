"""Fit the complete-particle classifier (:mod:`tio2fiji.particles._complete`) on manual masks.

A manual particle is *complete* when at least half of its pixels are marked in the 2-class mask
(``TiO2_Masks_Manual_4connected_2Classes``: the complete particles only). :func:`fit_classifier`
fits a class-balanced logistic regression (scikit-learn) on the standardised
:data:`tio2fiji.particles.FEATURES` and returns it as plain numbers (JSON-ready: no pickled code).
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..particles import FEATURES, particle_features

__all__ = ["complete_labels", "fit_classifier", "choose_threshold"]


def complete_labels(labels, complete_mask, min_fraction: float = 0.5) -> np.ndarray:
    """Per particle of ``labels`` (1..n), whether at least ``min_fraction`` of it is in ``complete_mask``."""
    lab = np.asarray(labels)
    cm = np.asarray(complete_mask).astype(bool)
    if cm.shape != lab.shape:
        raise InputError(f"complete mask {cm.shape} and labels {lab.shape} differ in size.")
    n = int(lab.max(initial=0))
    area = np.bincount(lab.ravel(), minlength=n + 1)[1:]
    inside = np.bincount(lab.ravel(), weights=cm.ravel(), minlength=n + 1)[1:]
    return inside >= min_fraction * np.maximum(area, 1)


def fit_classifier(labels_list, complete_list, C: float = 1.0, seed: int = 0) -> dict:
    """Logistic regression complete-vs-not on the particles of several label images.

    Returns
    -------
    dict
        ``features``, ``mean``, ``scale``, ``coef``, ``intercept`` (lists / floats),
        ``threshold`` 0.5 (see :func:`choose_threshold`), ``n_particles``, ``n_complete``.
    """
    from sklearn.linear_model import LogisticRegression

    x = np.concatenate([particle_features(lab) for lab in labels_list])
    y = np.concatenate([np.asarray(c, bool) for c in complete_list])
    if x.shape[0] != y.shape[0] or y.all() or not y.any():
        raise InputError("the complete-particle classifier needs complete and incomplete particles.")
    mean, scale = x.mean(0), x.std(0)
    scale[scale == 0] = 1.0
    model = LogisticRegression(C=C, class_weight="balanced", max_iter=1000, random_state=seed)
    model.fit((x - mean) / scale, y)
    return {"features": list(FEATURES), "mean": mean.tolist(), "scale": scale.tolist(),
            "coef": model.coef_[0].tolist(), "intercept": float(model.intercept_[0]), "threshold": 0.5,
            "n_particles": int(y.size), "n_complete": int(y.sum())}


def choose_threshold(scores, truth, grid=None) -> tuple[float, float]:
    """The score threshold with the best F1 of "complete" on validation particles: ``(threshold, f1)``."""
    s, t = np.asarray(scores, float), np.asarray(truth, bool)
    best = (0.5, -1.0)
    for th in (np.round(np.arange(0.2, 0.81, 0.05), 2) if grid is None else grid):
        pred = s >= th
        tp = float((pred & t).sum())
        f1 = 2 * tp / max(pred.sum() + t.sum(), 1)
        if f1 > best[1]:
            best = (float(th), f1)
    return best
