"""What a user publishes: the size distribution of the particles, predicted against manual.

Sizes are equivalent circle diameters, ``ECD = sqrt(4 * area / pi)``, of each particle's pixel
count; relative errors and the Kolmogorov-Smirnov distance do not depend on the pixel size.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

#: Size statistics compared per image: name -> quantile of the ECD distribution.
SIZE_QUANTILES = {"median": 0.5, "d10": 0.1, "d90": 0.9}


def ecd_of_labels(labels) -> np.ndarray:
    """Equivalent circle diameter (pixels) of every particle of a sequential label image."""
    lab = np.asarray(labels)
    n = int(lab.max(initial=0))
    area = np.bincount(lab.ravel(), minlength=n + 1)[1:]
    area = area[area > 0]
    return np.sqrt(4.0 * area / math.pi)


def size_errors(pred_ecd, gt_ecd) -> dict:
    """Agreement of two size distributions of one image.

    Parameters
    ----------
    pred_ecd, gt_ecd : 1-D array_like
        ECDs of the predicted and of the manual particles (any one unit).

    Returns
    -------
    dict
        ``count_error_signed`` ``(n_pred - n_gt) / max(n_gt, 1)``; ``median_ecd_error``,
        ``d10_ecd_error``, ``d90_ecd_error``: ``|q_pred - q_gt| / q_gt`` of the quantiles
        (linear interpolation, numpy's default); ``ks_distance``: the two-sample
        Kolmogorov-Smirnov statistic, the largest gap between the two empirical distribution
        functions. Quantile errors and the KS distance are NaN when either side has no particles.
    """
    p = np.asarray(pred_ecd, dtype=np.float64).ravel()
    g = np.asarray(gt_ecd, dtype=np.float64).ravel()
    out = {"count_error_signed": float((p.size - g.size) / max(g.size, 1))}
    for name, q in SIZE_QUANTILES.items():
        if p.size and g.size:
            qg = float(np.quantile(g, q))
            out[f"{name}_ecd_error"] = abs(float(np.quantile(p, q)) - qg) / qg
        else:
            out[f"{name}_ecd_error"] = math.nan
    out["ks_distance"] = float(stats.ks_2samp(p, g).statistic) if p.size and g.size else math.nan
    return out
