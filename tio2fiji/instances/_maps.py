"""A U-Net's output maps -> particles, by what its outputs mean (the one dispatch that
:func:`tio2fiji.predict.segment`, the benchmarks and the training validations share)."""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ._border import labels_from_border
from ._distance import labels_from_distance
from ._labels import CONNECTIVITY, labels_from_probability
from ._star import labels_from_star

__all__ = ["OWN_SEPARATION", "OWN_LINES", "labels_from_maps"]

#: The particles a U-Net's outputs give by themselves (``separate="auto"``).
OWN_SEPARATION = {"probability": "watershed", "star": "star", "border": "border", "distance": "distance"}
#: The rules that draw their own lines between particles (their mask is ``labels > 0``).
OWN_LINES = ("star", "border", "distance")


def labels_from_maps(maps, outputs: str, threshold: float, separate: str = "auto", params: dict | None = None,
                     connectivity: int = CONNECTIVITY):
    """Particles of a U-Net's maps ``(C, H, W)`` (channel 0: the particle probability).

    Parameters
    ----------
    maps : ndarray (C, H, W)
        As :func:`tio2fiji.predict.predict_maps` returns them.
    outputs : {"probability", "star", "border", "distance"}
        What the channels mean.
    threshold : float
        Particle pixels: probability above it.
    separate : {"auto", "watershed", "none", "star", "border", "distance"}
        ``"auto"``: the outputs' own way (:data:`OWN_SEPARATION`).
    params : dict, optional
        The parameters of the chosen rule (:func:`~tio2fiji.instances.watershed_split`,
        :func:`~tio2fiji.instances.labels_from_star`, :func:`~tio2fiji.instances.labels_from_border`,
        :func:`~tio2fiji.instances.labels_from_distance`).
    connectivity : {4, 8}
        Connected components with ``separate="none"``.

    Returns
    -------
    labels : ndarray of uint32
    mask : ndarray of bool
        The particle pixels measured: ``labels > 0`` where the rule draws its own lines, else the
        probability above the threshold.
    method : str
        The rule used.
    """
    maps = np.asarray(maps)
    method = OWN_SEPARATION.get(outputs, "watershed") if separate == "auto" else separate
    if method in OWN_LINES and outputs != method:
        raise InputError(f"separate={method!r} needs a {method} U-Net; this model's outputs are {outputs!r}.")
    prob, params = maps[0], dict(params or {})
    if method == "distance":
        labels = labels_from_distance(prob, maps[1], maps[2], threshold, **params)
    elif method == "border":
        labels = labels_from_border(prob, maps[1], threshold, **params)
    elif method == "star":
        labels = labels_from_star(maps[1], maps[2:], mask=prob > threshold, **params)
    else:
        labels = labels_from_probability(prob, threshold, separate=method, connectivity=connectivity, **params)
    mask = labels > 0 if method in OWN_LINES else prob > threshold
    return labels, mask, method
