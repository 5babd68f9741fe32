"""Overlays of detected particles on their SEM image: each particle's outline in its own colour
(:func:`overlay_rgb`, :func:`overlay_image`); the report's per-image panels
(:mod:`tio2fiji.report` re-exports both)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io import atomic_write

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


#: Colours of the error anatomy overlay (:func:`anatomy_rgb`): the cause of each unmatched manual
#: particle (filled), matched manual particles and false predictions (outlined).
ANATOMY_COLOURS = {"missed": (230, 40, 40), "merged": (255, 150, 0), "split": (220, 0, 220),
                   "boundary_only": (255, 235, 0), "matched": (40, 200, 60), "false": (0, 220, 255)}
__all__ += ["ANATOMY_COLOURS", "anatomy_rgb", "anatomy_image"]


def anatomy_rgb(image, gt_labels, pred_labels, gt_cause, pred_cause, causes, alpha: float = 0.55) -> np.ndarray:
    """The SEM image with the error anatomy drawn on it.

    Unmatched manual particles are filled (blended with ``alpha``) in the colour of their cause
    (:data:`ANATOMY_COLOURS`), matched manual particles outlined in green, false predicted
    particles outlined in cyan.

    Parameters
    ----------
    image : (H, W) array
    gt_labels, pred_labels : (H, W) integer arrays
        Sequential label images (label ``i + 1`` is particle ``i``).
    gt_cause, pred_cause : 1-D integer arrays
        Per particle, -1 when matched, else the index of its cause
        (:func:`tio2fiji.metrics.anatomy_labels`).
    causes : sequence of str
        The manual particles' cause names, in index order (:data:`tio2fiji.metrics.GT_CAUSES`).

    Returns
    -------
    (H, W, 3) ndarray of uint8
    """
    from skimage.segmentation import find_boundaries

    img, g, p = np.asarray(image), np.asarray(gt_labels), np.asarray(pred_labels)
    if img.ndim != 2 or img.shape != g.shape or g.shape != p.shape:
        raise InputError(f"anatomy overlay: image {img.shape}, manual {g.shape} and predicted {p.shape} "
                         f"labels must be 2-D and the same shape.")
    rgb = np.repeat(_display_gray(img)[:, :, None], 3, axis=2).astype(np.float64)
    gc = np.concatenate([[-2], np.asarray(gt_cause)])[g]  # -2: background
    for k, name in enumerate(causes):
        fill = gc == k
        rgb[fill] = (1 - alpha) * rgb[fill] + alpha * np.array(ANATOMY_COLOURS[name], np.float64)
    edge = find_boundaries(g, connectivity=1, mode="inner") & (gc == -1)
    rgb[edge] = ANATOMY_COLOURS["matched"]
    pc = np.concatenate([[-2], np.asarray(pred_cause)])[p]
    edge = find_boundaries(p, connectivity=1, mode="inner") & (pc >= 0)
    rgb[edge] = ANATOMY_COLOURS["false"]
    return rgb.round().astype(np.uint8)


def anatomy_image(path, *args, **kwargs) -> Path:
    """Write :func:`anatomy_rgb` (same arguments after ``path``) as a full-resolution PNG."""
    from matplotlib.image import imsave

    rgb = anatomy_rgb(*args, **kwargs)
    return atomic_write(Path(path), lambda p: imsave(p, rgb, format="png"))
