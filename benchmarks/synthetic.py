"""Synthetic particle masks for benchmarks: many small, irregular, non-touching particles."""

import numpy as np
from scipy import ndimage


def dense_particle_mask(shape=(896, 1280), n_target=15000, seed=0):
    """A binary mask with about ``n_target`` separate particles of varied size and shape.

    Random ellipses (semi-axes 1-6 px, random orientation) are dropped on a grid of cells, one per
    cell, so they never touch; a few get a bite taken out so that they are not all convex.
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    ny = max(1, int(round(np.sqrt(n_target * h / w))))
    nx = max(1, int(round(n_target / ny)))
    cell = int(min(h / ny, w / nx))
    mask = np.zeros(shape, bool)
    yy, xx = np.mgrid[-8:9, -8:9]
    for cy in np.linspace(cell // 2, h - cell // 2 - 1, ny).astype(int):
        for cx in np.linspace(cell // 2, w - cell // 2 - 1, nx).astype(int):
            a, b = rng.uniform(1.0, cell / 2 - 1, 2)
            t = rng.uniform(0, np.pi)
            u = (xx * np.cos(t) + yy * np.sin(t)) / a
            v = (-xx * np.sin(t) + yy * np.cos(t)) / b
            blob = u * u + v * v <= 1.0
            if rng.random() < 0.3:
                blob &= ~((xx - rng.integers(-2, 3)) ** 2 + (yy - rng.integers(-2, 3)) ** 2 <= 2)
            half = min(8, cell // 2 - 1)
            sub = blob[8 - half: 9 + half, 8 - half: 9 + half]
            y0, x0 = cy - half, cx - half
            mask[y0: y0 + sub.shape[0], x0: x0 + sub.shape[1]] |= sub
    return mask


if __name__ == "__main__":
    m = dense_particle_mask()
    print(m.shape, ndimage.label(m, np.ones((3, 3)))[1], "particles (8-connected)")
