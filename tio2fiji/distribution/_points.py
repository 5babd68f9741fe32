"""Point patterns: pixel indices to coordinates, nearest-neighbour distances, the window."""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree

from ..errors import InputError
from ..io import pixel_size_nm


def _scale_nm(pixel_size_m) -> float:
    """nm per pixel, or 1.0 (distances in pixels) without a pixel size."""
    nm = pixel_size_nm(pixel_size_m)
    return 1.0 if nm is None else nm


def pixel_points(coords, pixel_size_m=None) -> np.ndarray:
    """Pixel ``(row, col)`` indices to ``(x, y)`` centre coordinates, in pixels or nm.

    Parameters
    ----------
    coords : (n, 2) array_like of int
        ``(row, col)``, e.g. from :func:`ultimate_points`.
    pixel_size_m : float, optional
        Metres per pixel; the result is then in nanometres.

    Returns
    -------
    (n, 2) ndarray of float64
        ``((col + 0.5) * s, (row + 0.5) * s)``, ImageJ's centroid of a one-pixel particle.
    """
    c = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    return np.stack([c[:, 1] + 0.5, c[:, 0] + 0.5], axis=1) * _scale_nm(pixel_size_m)


def _check_points(points, name="points") -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise InputError(f"{name}: expected an (n, 2) array of (x, y), got shape {pts.shape}.")
    if not np.isfinite(pts).all():
        raise InputError(f"{name}: coordinates must be finite.")
    return pts


def nearest_neighbour_distances(points, return_index=False):
    """Distance from each point to its nearest other point, with a KD-tree (O(n log n)).

    Parameters
    ----------
    points : (n, 2) array_like
        Coordinates; n >= 2.
    return_index : bool
        Also return the index of each point's nearest neighbour.

    Returns
    -------
    d : (n,) ndarray of float64
    index : (n,) ndarray of int64, optional
    """
    pts = _check_points(points)
    if len(pts) < 2:
        raise InputError(f"nearest-neighbour distances need at least 2 points, got {len(pts)}.")
    dist, idx = cKDTree(pts).query(pts, k=2)
    # with duplicate points the tree may list the twin before the point itself
    self_first = idx[:, 0] == np.arange(len(pts))
    nn = np.where(self_first, idx[:, 1], idx[:, 0])
    d = np.where(self_first, dist[:, 1], dist[:, 0])
    return (d, nn.astype(np.int64)) if return_index else d


def _window(window) -> tuple[float, float]:
    try:
        width, height = (float(v) for v in window)
    except (TypeError, ValueError) as err:
        raise InputError(f"window must be (width, height), got {window!r}.") from err
    if not (width > 0 and height > 0 and math.isfinite(width) and math.isfinite(height)):
        raise InputError(f"window must have a positive width and height, got {window!r}.")
    return width, height
