"""Overlays of detected particles on their SEM image: each particle's outline in its own colour
(:func:`overlay_rgb`, :func:`overlay_image`); the report's per-image panels
(:mod:`tio2fiji.report` re-exports both)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import InputError
from .io import atomic_write

__all__ = ["overlay_rgb", "overlay_image"]


def _display_gray(image) -> np.ndarray:
    """8-bit version of a gray image for display only: uint8 as is, else a 0.5–99.5 % stretch."""
    img = np.asarray(image)
    if img.dtype == np.uint8:
        return img
    f = img.astype(np.float64)
    lo, hi = np.percentile(f, [0.5, 99.5]) if f.size else (0.0, 1.0)
    if hi <= lo:
        return np.zeros(img.shape, np.uint8)
    return (np.clip((f - lo) / (hi - lo), 0, 1) * 255).round().astype(np.uint8)


def _label_colours(n_labels: int) -> np.ndarray:
    """Distinct bright colours for labels 1..n (row 0 unused): golden-ratio steps around the hue
    circle, so labels with neighbouring numbers (often neighbouring particles) differ."""
    from matplotlib.colors import hsv_to_rgb

    k = np.arange(n_labels + 1, dtype=np.float64)
    hsv = np.stack([(k * 0.6180339887) % 1.0, np.full_like(k, 0.9), np.full_like(k, 1.0)], axis=1)
    return (hsv_to_rgb(hsv) * 255).round().astype(np.uint8)


def overlay_rgb(image, labels) -> np.ndarray:
    """The SEM image in gray with each particle's outline in its own colour.

    Parameters
    ----------
    image : (H, W) array
        Gray image (the analysed area, the same shape as ``labels``).
    labels : (H, W) integer array
        Label image, 0 = background.

    Returns
    -------
    (H, W, 3) ndarray of uint8
        Outline pixels (particle pixels with a 4-neighbour outside the particle) take the
        particle's colour; all other pixels show the image.
    """
    from skimage.segmentation import find_boundaries

    img, lab = np.asarray(image), np.asarray(labels)
    if img.ndim != 2 or img.shape != lab.shape:
        raise InputError(f"overlay: image {img.shape} and labels {lab.shape} must be 2-D and the same shape.")
    gray = _display_gray(img)
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    if lab.size and lab.max() > 0:
        edge = find_boundaries(lab, connectivity=1, mode="inner") & (lab > 0)
        # colours by rank of the label value, so sparse label values still get distinct colours
        values, inverse = np.unique(lab[edge], return_inverse=True)
        rgb[edge] = _label_colours(len(values))[inverse + 1]
    return rgb


def overlay_image(image, labels, path) -> Path:
    """Write :func:`overlay_rgb` as a PNG at the image's full resolution and return its path."""
    from matplotlib.image import imsave

    rgb = overlay_rgb(image, labels)
    return atomic_write(Path(path), lambda p: imsave(p, rgb, format="png"))
