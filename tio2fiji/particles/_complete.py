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

from ..errors import InputError
from ..instances import CONNECTIVITY, connected_components
from ..io import file_sha256, mask_or_labels
from ._measure import label_particles

__all__ = ["FEATURES", "DEFAULT_CLASSIFIER", "particle_features", "load_classifier", "complete_scores",
           "complete_classifier", "measured_labels", "add_complete_columns"]

#: Features of :func:`particle_features`, in the classifier's order.
FEATURES = ("log_area", "solidity", "extent", "aspect_ratio", "contact_fraction", "touches_border",
            "log_relative_area")
DEFAULT_CLASSIFIER = Path(__file__).resolve().parent.parent / "data" / "complete_classifier.json"
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


def complete_classifier() -> tuple[dict, dict]:
    """The bundled complete-particle classifier and what the run's JSON records about it.

    Returns
    -------
    (dict, dict)
        :func:`tio2fiji.particles.load_classifier`'s dict, and ``{"file", "sha256", "threshold"}``.

    Raises
    ------
    InputError
        The classifier file is missing or unreadable.
    """
    clf = load_classifier("default")
    path = Path(DEFAULT_CLASSIFIER)
    return clf, {"file": path.name, "sha256": file_sha256(path), "threshold": float(clf["threshold"])}


def measured_labels(image, table, connectivity=CONNECTIVITY, include_holes=False,
                    exclude_edges=False, size_px=None) -> tuple[np.ndarray, np.ndarray]:
    """The particles of a table measured from ``image``, as a label image, and each row's label.

    Parameters
    ----------
    image : (H, W) array
        What was measured: a binary mask or a label image (:func:`tio2fiji.io.mask_or_labels`).
    table : pandas.DataFrame
        Its particle table (:func:`tio2fiji.particles.measure` or
        :func:`tio2fiji.imagej.measure_imagej`, with the same options).
    connectivity, include_holes, exclude_edges, size_px
        The options of the measurement (``size_px``: :meth:`tio2fiji.particles.SizeFilter.pixel_bounds`).

    Returns
    -------
    labels : (H, W) ndarray of int32
        0 = background, particles 1..n: each particle's own pixels (holes stay background, as in
        a label image). For a mask, numbered as the measurement numbers them
        (:func:`tio2fiji.particles.label_particles`: raster order of their first pixel, ImageJ's
        results-table order; a particle inside another's hole is part of that one when holes are
        included, as ImageJ merges it). For a label image, its labels renumbered 1..n in order of
        value.
    rows : (len(table),) ndarray of int
        The label in ``labels`` of each table row. For a mask row ``i`` is the ``i``-th particle
        in raster order, skipping those on the border with ``exclude_edges`` or outside ``size_px``
        (they stay in ``labels``: they still hide their neighbours); for a label image rows are
        matched by the table's ``label`` column (measure orders them by first pixel, not by value).
    """
    kind, arr = mask_or_labels(image)
    if kind == "mask":
        filled, n = label_particles(arr, connectivity=connectivity, include_holes=include_holes)
        own = connected_components(arr, connectivity, dtype=np.int32)
        number = np.zeros(int(own.max(initial=0)) + 1, np.int32)
        number[own.ravel()] = filled.ravel()  # a component's pixels share one measured number
        number[0] = 0
        labels = number[own]
        rows = np.arange(1, n + 1)
        if exclude_edges:
            edge = np.zeros(n + 1, bool)
            edge[np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])] = True
            rows = rows[~edge[1:]]
        if size_px is not None:  # ImageJ's pixel count: holes included with include_holes
            count = np.bincount(filled.ravel(), minlength=n + 1)
            rows = rows[(count[rows] >= size_px[0]) & (count[rows] <= size_px[1])]
    else:
        values, inverse = np.unique(arr, return_inverse=True)
        labels = inverse.reshape(arr.shape).astype(np.int32)
        if values[0] == 0:
            values = values[1:]
        else:
            labels += 1
        want = table["label"].to_numpy(np.int64) if len(table) else np.zeros(0, np.int64)
        rows = np.searchsorted(values, want) + 1
        if (rows > len(values)).any() or not np.array_equal(values[rows - 1], want):
            raise InputError("the particle table's labels are not those of the label image.")
    if len(rows) != len(table):
        raise InputError(f"the particle table has {len(table)} rows, the image {len(rows)} particles "
                         f"for these options.")
    return labels, rows


def add_complete_columns(table, image, classifier, connectivity=CONNECTIVITY, include_holes=False,
                         exclude_edges=False, size_px=None):
    """A particle table with ``complete_score`` and ``complete`` (:mod:`tio2fiji.particles._complete`).

    Each row gets the score of its own particle (:func:`measured_labels`), computed on the whole
    label image the particles were measured from (neighbours left out by ``exclude_edges``
    included: they still hide particles).

    Parameters
    ----------
    table : pandas.DataFrame
        The particle table measured from ``image``.
    image : (H, W) array
        The mask or label image measured.
    classifier : dict
        :func:`tio2fiji.particles.load_classifier`'s dict.
    connectivity, include_holes, exclude_edges, size_px
        The options of the measurement (:func:`measured_labels`).

    Returns
    -------
    table : pandas.DataFrame
        A copy with ``complete_score`` (float, the classifier's probability) and ``complete``
        (bool, ``complete_score >= classifier["threshold"]``).
    labels, rows
        As :func:`measured_labels`.
    """
    labels, rows = measured_labels(image, table, connectivity, include_holes, exclude_edges, size_px)
    scores = complete_scores(labels, classifier)[rows - 1] if len(rows) else np.zeros(0)
    out = table.copy()
    out["complete_score"] = scores.astype(np.float64)
    out["complete"] = scores >= float(classifier["threshold"])
    return out, labels, rows
