"""Numba kernels that scan a label image once: per-particle pixel counts, bounding boxes, first
pixels and moment sums, and ImageJ's hole filling ("include holes")."""

import numba
import numpy as np


@numba.njit(cache=True)
def _compact_lookup(arr, maxval):
    """Map label values to 1..n in raster order of first appearance (lookup-table version)."""
    lut = np.zeros(maxval + 1, np.int32)
    out = np.empty(arr.shape, np.int32)
    values = np.empty(arr.size + 1, np.int64)
    n = 0
    h, w = arr.shape
    for y in range(h):
        for x in range(w):
            v = arr[y, x]
            if v == 0:
                out[y, x] = 0
                continue
            c = lut[v]
            if c == 0:
                n += 1
                lut[v] = n
                values[n - 1] = v
                c = n
            out[y, x] = c
    return out, values[:n].copy()


def _compact_labels(arr):
    """Compact label image (int32, 1..n in raster order of first pixel) and the original values."""
    maxval = int(arr.max())
    if maxval <= max(4 * arr.size, 1 << 16):
        return _compact_lookup(np.ascontiguousarray(arr), maxval)
    values, first, inverse = np.unique(arr.ravel(), return_index=True, return_inverse=True)
    if values[0] == 0:
        values, first = values[1:], first[1:]
        inverse = inverse - 1
    order = np.argsort(first, kind="stable")
    rank = np.empty(len(order), np.int32)
    rank[order] = np.arange(1, len(order) + 1, dtype=np.int32)
    inverse = inverse.reshape(arr.shape)
    out = np.where(inverse >= 0, rank[np.maximum(inverse, 0)], 0).astype(np.int32)
    return out, values[order].astype(np.int64)


@numba.njit(cache=True)
def _scan(labels, n):
    """Pixel count, bounding box, first pixel and integer moment sums of labels 1..n."""
    h, w = labels.shape
    count = np.zeros(n + 1, np.int64)
    minx = np.full(n + 1, w, np.int64)
    maxx = np.full(n + 1, -1, np.int64)
    miny = np.full(n + 1, h, np.int64)
    maxy = np.full(n + 1, -1, np.int64)
    fx = np.zeros(n + 1, np.int64)
    fy = np.zeros(n + 1, np.int64)
    sums = np.zeros((n + 1, 5), np.int64)  # sum x, y, x*x, x*y, y*y (absolute coordinates)
    for y in range(h):
        for x in range(w):
            lab = labels[y, x]
            if lab <= 0:
                continue
            if count[lab] == 0:
                fx[lab] = x
                fy[lab] = y
                miny[lab] = y
            count[lab] += 1
            if x < minx[lab]:
                minx[lab] = x
            if x > maxx[lab]:
                maxx[lab] = x
            maxy[lab] = y
            sums[lab, 0] += x
            sums[lab, 1] += y
            sums[lab, 2] += x * x
            sums[lab, 3] += x * y
            sums[lab, 4] += y * y
    return count, minx, maxx, miny, maxy, fx, fy, sums


@numba.njit(cache=True)
def _fill_holes(labels, n, minx, maxx, miny, maxy, bg8, skip_nested, filled):
    """Holes of every label: pixels in its bounding box not reachable from outside.

    A hole is what lies inside the particle's outer outline but is not the particle: background
    not connected to the outside (4-connected background for 8-connected particles, 8-connected
    for 4-connected ones) and anything within it, other particles included. Returns per-label
    hole pixel counts and moment sums, and for each label the label whose hole holds it (0 if
    none). Labels inside another's hole are skipped if ``skip_nested`` (their own holes lie
    within that hole). If ``filled`` has the image's shape, hole pixels are written into it.
    """
    h, w = labels.shape
    write = filled.shape[0] == h and filled.shape[1] == w
    hole_count = np.zeros(n + 1, np.int64)
    hole_sums = np.zeros((n + 1, 5), np.int64)
    inside_of = np.zeros(n + 1, np.int64)
    maxarea = 0
    for lab in range(1, n + 1):
        a = (maxx[lab] - minx[lab] + 3) * (maxy[lab] - miny[lab] + 3)
        if a > maxarea:
            maxarea = a
    grid = np.zeros(maxarea, np.uint8)
    stack = np.zeros(maxarea, np.int64)
    for lab in range(1, n + 1):
        if maxx[lab] < 0 or (skip_nested and inside_of[lab] != 0):
            continue
        x0 = minx[lab] - 1
        y0 = miny[lab] - 1
        gw = maxx[lab] - minx[lab] + 3
        gh = maxy[lab] - miny[lab] + 3
        # 1 = particle, 0 = other, 2 = reached from outside; the one-pixel frame is outside.
        for gy in range(gh):
            for gx in range(gw):
                y = y0 + gy
                x = x0 + gx
                v = 0
                if 0 <= y < h and 0 <= x < w and labels[y, x] == lab:
                    v = 1
                grid[gy * gw + gx] = v
        grid[0] = 2
        sp = 0
        stack[sp] = 0
        sp += 1
        while sp > 0:
            sp -= 1
            p = stack[sp]
            py = p // gw
            px = p - py * gw
            for dy in range(-1, 2):
                for dx in range(-1, 2):
                    if dx == 0 and dy == 0:
                        continue
                    if not bg8 and dx != 0 and dy != 0:
                        continue
                    qx = px + dx
                    qy = py + dy
                    if qx < 0 or qy < 0 or qx >= gw or qy >= gh:
                        continue
                    q = qy * gw + qx
                    if grid[q] == 0:
                        grid[q] = 2
                        stack[sp] = q
                        sp += 1
        for gy in range(1, gh - 1):
            for gx in range(1, gw - 1):
                if grid[gy * gw + gx] != 0:
                    continue
                y = y0 + gy
                x = x0 + gx
                hole_count[lab] += 1
                hole_sums[lab, 0] += x
                hole_sums[lab, 1] += y
                hole_sums[lab, 2] += x * x
                hole_sums[lab, 3] += x * y
                hole_sums[lab, 4] += y * y
                other = labels[y, x]
                if other > 0 and inside_of[other] == 0:
                    inside_of[other] = lab
                if write:
                    filled[y, x] = lab
    return hole_count, hole_sums, inside_of
