"""Complete particles: which particles are whole, and which are partly hidden or cut.

Sizes of partly hidden particles are too small, so a size distribution of all particles is biased
down; the BAM manual masks mark the *complete* particles separately (the 2-class masks). Each
particle gets a ``complete`` score in [0, 1] from a logistic regression on features of its shape and
surroundings (:data:`FEATURES`, :func:`particle_features`); they need only the label image, so
``measure`` on a mask scores particles as ``analyze`` does. A particle with score >= the
classifier's threshold is complete.

The bundled classifier (``tio2fiji/data/complete_classifier.json``, plain numbers: feature means,
scales, coefficients, intercept, threshold, and how it was made) was fitted on the manual particles
of the 21 training images of the bundled model's split, its threshold chosen on the 4 validation
images; ``tio2fiji.training.complete`` makes it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from .errors import InputError

__all__ = ["FEATURES", "DEFAULT_CLASSIFIER", "particle_features", "load_classifier", "complete_scores"]

#: Features of :func:`particle_features`, in the classifier's order.
FEATURES = ("log_area", "solidity", "extent", "aspect_ratio", "contact_fraction", "touches_border",
            "log_relative_area")
DEFAULT_CLASSIFIER = Path(__file__).resolve().parent / "data" / "complete_classifier.json"
_RING = np.ones((3, 3), bool)


def particle_features(labels) -> np.ndarray:
    """Shape and surroundings of every particle of a label image.

    Parameters
    ----------
    labels : (H, W) integer array
        0 = background, particles 1..n. A label up to the maximum that is missing gets a row of
        zeros (and does not count towards the median area of ``log_relative_area``).

    Returns
    -------
    (n, len(FEATURES)) float64 array
        Row ``j`` is particle ``j + 1``: ``log_area`` (ln of the pixel count), ``solidity`` (area /
        convex hull area), ``extent`` (area / bounding box area), ``aspect_ratio`` (major / minor
        axis of the fitted ellipse), ``contact_fraction`` (fraction of the pixels just outside the
        particle that lie next to another particle: a hidden particle is surrounded by the one in
        front of it), ``touches_border`` (1 if the particle touches the image edge: it may be cut),
        ``log_relative_area`` (ln of its area over the image's median particle area).
    """
    from skimage.measure import regionprops

    lab = np.asarray(labels)
    if lab.ndim != 2 or not np.issubdtype(lab.dtype, np.integer):
        raise InputError(f"particle features need a 2-D integer label image, got {lab.dtype} {lab.shape}.")
    n = int(lab.max(initial=0))
    out = np.zeros((n, len(FEATURES)))
    if n == 0:
        return out
    h, w = lab.shape
    lab = lab.astype(np.int64, copy=False)
    present = np.zeros(n, bool)
    for r in regionprops(lab):
        k = r.label
        present[k - 1] = True
        y0, x0, y1, x1 = r.bbox
        sy, sx = slice(max(y0 - 2, 0), min(y1 + 2, h)), slice(max(x0 - 2, 0), min(x1 + 2, w))
        win = lab[sy, sx]
        inside = win == k
        ring = ndi.binary_dilation(inside, _RING) & ~inside
        others = ndi.binary_dilation((win > 0) & ~inside, _RING)
        contact = float((ring & others).sum() / ring.sum()) if ring.any() else 0.0
        minor = max(float(r.axis_minor_length), 1.0)
        out[k - 1] = (np.log(r.area), float(r.solidity), float(r.extent),
                      max(float(r.axis_major_length), 1.0) / minor, contact,
                      float(y0 == 0 or x0 == 0 or y1 == h or x1 == w), 0.0)
    # missing labels (rows of zeros) do not count towards the median particle area
    median_area = np.median(np.exp(out[present, 0]))
    out[present, 6] = out[present, 0] - np.log(median_area)
    return out


def load_classifier(path="default") -> dict:
    """The complete-particle classifier stored as JSON (``"default"``: the bundled one)."""
    path = DEFAULT_CLASSIFIER if str(path) == "default" else Path(path)
    try:
        clf = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the complete-particle classifier ({exc}).") from exc
    need = {"features", "mean", "scale", "coef", "intercept", "threshold"}
    if not need <= set(clf) or tuple(clf["features"]) != FEATURES:
        raise InputError(f"{path}: not a complete-particle classifier for features {', '.join(FEATURES)}.")
    return clf


def complete_scores(labels, classifier=None) -> np.ndarray:
    """The complete score (probability) of every particle of a label image.

    Parameters
    ----------
    labels : (H, W) integer array
    classifier : dict or path, optional
        :func:`load_classifier`'s dict; default the bundled classifier.

    Returns
    -------
    (n,) float64 array
        Index ``j`` = particle ``j + 1``. Compare with ``classifier["threshold"]``.
    """
    clf = load_classifier(classifier or "default") if not isinstance(classifier, dict) else classifier
    x = particle_features(labels)
    if x.shape[0] == 0:
        return np.zeros(0)
    z = (x - np.asarray(clf["mean"])) / np.asarray(clf["scale"])
    return 1.0 / (1.0 + np.exp(-(z @ np.asarray(clf["coef"]) + float(clf["intercept"]))))
