"""The h-maxima of a distance map, exactly as scikit-image computes them, without its sort.

``skimage.morphology.h_maxima`` reconstructs ``image - h`` under ``image`` by dilation with an
algorithm that sorts every pixel value (two float64 argsorts of twice the image): half of
``segment``'s time on a 1024×704 image. Reconstruction by dilation has one result whatever the
algorithm, and it only ever copies input values (minima and maxima, no arithmetic), so Vincent's
hybrid algorithm (a forward and a backward raster scan, then a queue; Vincent 1993, IEEE TIP 2(2))
gives the same values bit for bit, in linear time.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["h_maxima"]


@njit(cache=True)
def _reconstruct_by_dilation(marker, mask):  # pragma: no cover - compiled
    """Vincent's hybrid reconstruction by dilation, 8-connected, of ``marker <= mask`` (2-D)."""
    h, w = mask.shape
    rec = np.minimum(marker, mask)
    # forward scan: the neighbours before each pixel in raster order
    for y in range(h):
        for x in range(w):
            v = rec[y, x]
            for dy, dx in ((-1, -1), (-1, 0), (-1, 1), (0, -1)):
                yy, xx = y + dy, x + dx
                if 0 <= yy < h and 0 <= xx < w and rec[yy, xx] > v:
                    v = rec[yy, xx]
            rec[y, x] = min(v, mask[y, x])
    # backward scan; pixels that could still raise a later neighbour go to the queue
    queue = np.empty(h * w, np.int64)
    head, tail = 0, 0
    for y in range(h - 1, -1, -1):
        for x in range(w - 1, -1, -1):
            v = rec[y, x]
            for dy, dx in ((1, 1), (1, 0), (1, -1), (0, 1)):
                yy, xx = y + dy, x + dx
                if 0 <= yy < h and 0 <= xx < w and rec[yy, xx] > v:
                    v = rec[yy, xx]
            v = min(v, mask[y, x])
            rec[y, x] = v
            for dy, dx in ((1, 1), (1, 0), (1, -1), (0, 1)):
                yy, xx = y + dy, x + dx
                if 0 <= yy < h and 0 <= xx < w and rec[yy, xx] < v and rec[yy, xx] < mask[yy, xx]:
                    queue[tail] = y * w + x
                    tail += 1
                    break
    # propagation: a circular FIFO, grown when full (a pixel raised twice is queued twice)
    n = queue.size
    count = tail
    while count > 0:
        p = queue[head]
        head = (head + 1) % n
        count -= 1
        y, x = p // w, p % w
        v = rec[y, x]
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if dy == 0 and dx == 0:
                    continue
                yy, xx = y + dy, x + dx
                if 0 <= yy < h and 0 <= xx < w and rec[yy, xx] < v and rec[yy, xx] != mask[yy, xx]:
                    rec[yy, xx] = min(v, mask[yy, xx])
                    if count == n:  # full: unroll into a queue twice the size
                        grown = np.empty(2 * n, np.int64)
                        for i in range(n):
                            grown[i] = queue[(head + i) % n]
                        queue, head, tail, n = grown, 0, n, 2 * n
                    queue[tail] = yy * w + xx
                    tail = (tail + 1) % n
                    count += 1
    return rec


def h_maxima(image, h: float) -> np.ndarray:
    """The maxima of a 2-D float image that stand at least ``h`` above their surroundings, and the
    global maxima: ``skimage.morphology.h_maxima(image, h)`` (3×3 neighbourhood), same result.

    Parameters
    ----------
    image : (H, W) float array
    h : float
        > 0.

    Returns
    -------
    (H, W) ndarray of uint8
        1 on the maxima.
    """
    img = np.ascontiguousarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"h_maxima needs a 2-D image, got {img.shape}.")
    if h > np.ptp(img):
        return np.zeros(img.shape, np.uint8)
    # as skimage: the marker is h (and a rounding margin) below the image
    resolution = 2 * np.finfo(img.dtype).resolution * np.abs(img)
    rec = _reconstruct_by_dilation(img - h - resolution, img)
    return ((img - rec) >= h).astype(np.uint8)
