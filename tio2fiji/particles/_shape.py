"""Numba kernels of ImageJ's shape measurements: the Wand outline trace, the traced perimeter,
the convex hull, Feret and MinFeret (rotating calipers), the polygon area and ``EllipseFitter``.

Ports of ImageJ 1.x's own code (``docs/imagej-spec.md`` section A), down to the order of the
arithmetic, so that every value matches ImageJ's to the last bits.
"""

import math

import numba
import numpy as np


@numba.njit(cache=True, inline="always")
def _inside(labels, lab, x, y, w, h):
    if x < 0 or x >= w or y < 0 or y >= h:
        return False
    return labels[y, x] == lab


@numba.njit(cache=True, inline="always")
def _inside_dir(labels, lab, x, y, direction, w, h):
    # Wand.inside(x, y, direction): the pixel diagonal to vertex (x, y) in that direction.
    d = direction & 3
    if d == 0:
        return _inside(labels, lab, x, y, w, h)
    if d == 1:
        return _inside(labels, lab, x, y - 1, w, h)
    if d == 2:
        return _inside(labels, lab, x - 1, y - 1, w, h)
    return _inside(labels, lab, x - 1, y, w, h)


@numba.njit(cache=True)
def _trace(labels, lab, x0, y0, four, xs, ys):
    """Port of ``Wand.autoOutline`` + ``traceEdge`` for a thresholded particle.

    Starts at the particle's first raster pixel ``(x0, y0)``, walks right to the first outside
    pixel, then traces the outer boundary with the outside on the left (clockwise on screen),
    storing only the vertices where the direction changes. Returns the number of vertices.
    """
    h, w = labels.shape
    x = x0
    while _inside(labels, lab, x, y0, w, h):
        x += 1
    # (x-1, y0) is inside and (x, y0) outside: start below the vertical edge, heading down.
    start_x = x
    start_y = y0 + 1
    start_dir = 3
    y = start_y
    direction = start_dir
    n = 0
    while True:
        if four:
            new_dir = direction
            while True:
                if not _inside_dir(labels, lab, x, y, new_dir, w, h):
                    break
                new_dir += 1
                if new_dir >= direction + 2:
                    break
            new_dir -= 1
        else:
            new_dir = direction + 1
            while True:
                if _inside_dir(labels, lab, x, y, new_dir, w, h):
                    break
                new_dir -= 1
                if new_dir < direction:
                    break
        if new_dir != direction:
            xs[n] = x
            ys[n] = y
            n += 1
        d = new_dir & 3
        if d == 0:
            x += 1
        elif d == 1:
            y -= 1
        elif d == 2:
            x -= 1
        else:
            y += 1
        direction = new_dir
        if x == start_x and y == start_y and (direction & 3) == start_dir:
            break
    if n == 0 or xs[0] != x:  # ImageJ compares x only
        xs[n] = x
        ys[n] = y
        n += 1
    return n


@numba.njit(cache=True)
def _traced_perimeter(xs, ys, n, pw, ph):
    """``PolygonRoi.getTracedPerimeter``: edge lengths minus (pw+ph-hypot) per counted corner."""
    if n < 4:
        return 0.0
    sumdx = 0
    sumdy = 0
    ncorners = 0
    dx1 = xs[0] - xs[n - 1]
    dy1 = ys[0] - ys[n - 1]
    side1 = abs(dx1) + abs(dy1)
    corner = False
    for i in range(n):
        nexti = i + 1
        if nexti == n:
            nexti = 0
        dx2 = xs[nexti] - xs[i]
        dy2 = ys[nexti] - ys[i]
        sumdx += abs(dx1)
        sumdy += abs(dy1)
        side2 = abs(dx2) + abs(dy2)
        if side1 > 1 or not corner:
            corner = True
            ncorners += 1
        else:
            corner = False
        dx1 = dx2
        dy1 = dy2
        side1 = side2
    return sumdx * pw + sumdy * ph - ncorners * ((pw + ph) - math.sqrt(pw * pw + ph * ph))


@numba.njit(cache=True, inline="always")
def _turn(ax, ay, bx, by, cx, cy):
    return (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)


@numba.njit(cache=True)
def _convex_hull(xs, ys, n, ytop, nrows, left, right, hx, hy):
    """Convex hull of outline vertices, in ``FloatPolygon.getConvexHull``'s order.

    ImageJ's gift wrapping returns the strict hull vertices starting at the top-most (then
    left-most) vertex, counter-clockwise on screen. The strict vertices of a point set are unique,
    so any exact hull listed from the same start in the same sense is the same sequence; this one
    is O(n + rows): only the left-most and right-most vertex of each row can be hull vertices
    (every row of a traced outline has at least two), and a monotone chain runs down the left
    extremes and back up the right ones. ``left``/``right`` are workspaces of ``nrows`` entries
    (rows ``ytop .. ytop + nrows - 1``). Returns the number of hull vertices.
    """
    big = 1 << 62
    for r in range(nrows):
        left[r] = big
        right[r] = -big
    for i in range(n):
        r = ys[i] - ytop
        if xs[i] < left[r]:
            left[r] = xs[i]
        if xs[i] > right[r]:
            right[r] = xs[i]
    nh = 0
    for r in range(nrows):  # down the left side: (top, left-most) ... (bottom, left-most)
        if right[r] < left[r]:
            continue
        x = float(left[r])
        y = float(ytop + r)
        while nh >= 2 and _turn(hx[nh - 2], hy[nh - 2], hx[nh - 1], hy[nh - 1], x, y) >= 0.0:
            nh -= 1  # not a strict left turn on screen: drop (collinear points too)
        hx[nh] = x
        hy[nh] = y
        nh += 1
    base = nh  # the bottom-left vertex is a hull vertex: never drop it
    for r in range(nrows - 1, -1, -1):  # up the right side
        if right[r] < left[r]:
            continue
        x = float(right[r])
        y = float(ytop + r)
        while nh > base and _turn(hx[nh - 2], hy[nh - 2], hx[nh - 1], hy[nh - 1], x, y) >= 0.0:
            nh -= 1
        hx[nh] = x
        hy[nh] = y
        nh += 1
    return nh


@numba.njit(cache=True)
def _convex_hull_giftwrap(xs, ys, n, hx, hy):
    """Port of ``FloatPolygon.getConvexHull`` (gift wrapping). Returns the number of vertices.

    The reference for :func:`_convex_hull` (the tests hold the two equal); O(n * hull size).

    Starts at the top-most (then left-most) vertex, runs counter-clockwise on screen and drops
    collinear points. Coordinates are integers held exactly in doubles.
    """
    smallest_y = np.inf
    for i in range(n):
        if ys[i] < smallest_y:
            smallest_y = ys[i]
    smallest_x = np.inf
    p1 = 0
    for i in range(n):
        if ys[i] == smallest_y and xs[i] < smallest_x:
            smallest_x = xs[i]
            p1 = i
    pstart = p1
    n2 = 0
    while True:
        x1 = float(xs[p1])
        y1 = float(ys[p1])
        p2 = p1
        x2 = 0.0
        y2 = 0.0
        while True:  # next point that differs from p1
            p2 += 1
            if p2 == n:
                p2 = 0
            if p2 == p1:
                break
            x2 = float(xs[p2])
            y2 = float(ys[p2])
            if x2 != x1 or y2 != y1:
                break
        p3 = p2 + 1
        if p3 == n:
            p3 = 0
        if p2 != p1:
            while True:
                x3 = float(xs[p3])
                y3 = float(ys[p3])
                det = x1 * (y2 - y3) - y1 * (x2 - x3) + (y3 * x2 - y2 * x3)
                further = False
                if det == 0.0 and p3 != p2:
                    d2 = (x2 - x1) * (x2 - x1) + (y2 - y1) * (y2 - y1)
                    d3 = (x3 - x1) * (x3 - x1) + (y3 - y1) * (y3 - y1)
                    further = d3 > d2
                if det > 0.0 or further:
                    x2 = x3
                    y2 = y3
                    p2 = p3
                p3 += 1
                if p3 == n:
                    p3 = 0
                if p3 == p1:
                    break
        hx[n2] = x1
        hy[n2] = y1
        n2 += 1
        if p2 == p1:
            break
        p1 = p2
        if n2 > 1 and xs[p1] == hx[0] and ys[p1] == hy[0]:
            break
        if p1 == pstart:
            break
    return n2


@numba.njit(cache=True)
def _feret(hx, hy, nh, pw, ph):
    """``Roi.getFeretValues``: Feret, FeretAngle, MinFeret, FeretX, FeretY (corner coordinates)."""
    p1 = 0
    p2 = 0
    diameter_sqr = 0.0
    for i in range(nh):
        for j in range(i + 1, nh):
            dx = (hx[i] - hx[j]) * pw
            dy = (hy[i] - hy[j]) * ph
            dsqr = dx * dx + dy * dy
            if dsqr > diameter_sqr:  # strict: the first pair found wins ties
                diameter_sqr = dsqr
                p1 = i
                p2 = j
    if hx[p1] > hx[p2]:
        p1, p2 = p2, p1
    xf1 = hx[p1]
    yf1 = hy[p1]
    xf2 = hx[p2]
    yf2 = hy[p2]
    angle = 57.29577951308232 * math.atan2((yf1 - yf2) * ph, (xf2 - xf1) * pw)
    if angle < 0.0:
        angle += 180.0
    # MinFeret: for each hull edge the farthest vertex from its line; the smallest of these.
    x0 = hx[nh - 1]
    y0 = hy[nh - 1]
    min_feret = 1.7976931348623157e308
    for i in range(nh):
        xprev = x0
        yprev = y0
        x0 = hx[i]
        y0 = hy[i]
        xnorm = (y0 - yprev) * ph
        ynorm = (xprev - x0) * pw
        norm = 1.0 / math.sqrt(xnorm * xnorm + ynorm * ynorm)
        xnorm *= norm * pw
        ynorm *= norm * ph
        max_dist = 0.0
        for j in range(nh):
            dist = (hx[j] - x0) * xnorm + (hy[j] - y0) * ynorm
            if dist > max_dist:
                max_dist = dist
        if max_dist < min_feret:
            min_feret = max_dist
    return math.sqrt(diameter_sqr), angle, min_feret, xf1, yf1


@numba.njit(cache=True)
def _polygon_area(hx, hy, nh):
    """``Analyzer.getArea``: shoelace area of an integer polygon."""
    carea = 0
    for i in range(nh):
        im1 = i - 1
        if im1 < 0:
            im1 = nh - 1
        carea += (int(hx[i]) + int(hx[im1])) * (int(hy[i]) - int(hy[im1]))
    return abs(carea / 2.0)


@numba.njit(cache=True)
def _ellipse(n, width, height, left, top, xsum, ysum, x2sum, xysum, y2sum):
    """Port of ``EllipseFitter.getEllipseParam``; sums are relative to the bounding box.

    Returns major, minor, angle (degrees) and the centre, all in pixels.
    """
    sqrt_pi = 1.772453851
    halfpi = 1.5707963267949
    if width == 1 or height == 1:
        # ImageJ gives the fitter no mask for these particles: axes from the box.
        major = (width * 2) / sqrt_pi
        minor = (height * 2) / sqrt_pi
        angle = 0.0
        if major < minor:
            major, minor = minor, major
            angle = 90.0
        return major, minor, angle, left + width / 2.0, top + height / 2.0
    x2sum = x2sum + 0.08333333 * n
    y2sum = y2sum + 0.08333333 * n
    nn = float(n)
    x1 = xsum / nn
    y1 = ysum / nn
    x2 = x2sum / nn
    y2 = y2sum / nn
    xy = xysum / nn
    u20 = x2 - x1 * x1
    u02 = y2 - y1 * y1
    u11 = xy - x1 * y1
    m4 = 4.0 * abs(u02 * u20 - u11 * u11)
    if m4 < 0.000001:
        m4 = 0.000001
    a11 = u02 / m4
    a12 = u11 / m4
    a22 = u20 / m4
    tmp = a11 - a22
    if tmp == 0.0:
        tmp = 0.000001
    theta = 0.5 * math.atan(2.0 * a12 / tmp)
    if theta < 0.0:
        theta += halfpi
    if a12 > 0.0:
        theta += halfpi
    elif a12 == 0.0:
        if a22 > a11:
            theta = 0.0
            tmp = a22
            a22 = a11
            a11 = tmp
        elif a11 != a22:
            theta = halfpi
    tmp = math.sin(theta)
    if tmp == 0.0:
        tmp = 0.000001
    z = a12 * math.cos(theta) / tmp
    major = math.sqrt(1.0 / abs(a22 + z))
    minor = math.sqrt(1.0 / abs(a11 - z))
    scale = math.sqrt(nn / (math.pi * major * minor))  # equal areas
    major = major * scale * 2.0
    minor = minor * scale * 2.0
    angle = 180.0 * theta / math.pi
    if angle == 180.0:
        angle = 0.0
    if major < minor:
        major, minor = minor, major
    return major, minor, angle, left + x1 + 0.5, top + y1 + 0.5


@numba.njit(cache=True)
def _geometry(labels, ids, fx, fy, counts, heights, four, pw, ph, out):
    """Outline-based values of the particles ``ids`` (label values in ``labels``).

    ``out[k]`` receives Perim., Feret, FeretAngle, MinFeret, FeretX, FeretY and the hull's polygon
    area (pixels²) of particle ``ids[k]``. Serial on purpose: it is already several times faster
    than ImageJ, and a threaded kernel (OpenMP) would make the library unsafe to fork and
    oversubscribe CPUs when images are processed in parallel.
    """
    maxcount = 1
    maxrows = 1
    for k in range(ids.shape[0]):
        maxcount = max(maxcount, counts[k])
        maxrows = max(maxrows, heights[k] + 1)
    size = 4 * maxcount + 8  # a traced outline has at most 4 vertices per pixel
    xs = np.empty(size, np.int64)
    ys = np.empty(size, np.int64)
    hx = np.empty(2 * maxrows + 2, np.float64)
    hy = np.empty(2 * maxrows + 2, np.float64)
    left = np.empty(maxrows, np.int64)
    right = np.empty(maxrows, np.int64)
    for k in range(ids.shape[0]):
        nv = _trace(labels, ids[k], fx[k], fy[k], four, xs, ys)
        out[k, 0] = _traced_perimeter(xs, ys, nv, pw, ph)
        # Outline vertices span rows fy .. fy + height (the top row is the first pixel's).
        nh = _convex_hull(xs, ys, nv, fy[k], heights[k] + 1, left, right, hx, hy)
        feret, angle, min_feret, xf1, yf1 = _feret(hx, hy, nh, pw, ph)
        out[k, 1] = feret
        out[k, 2] = angle
        out[k, 3] = min_feret
        out[k, 4] = xf1
        out[k, 5] = yf1
        out[k, 6] = _polygon_area(hx, hy, nh)


@numba.njit(cache=True)
def _geometry_pieces(pieces, ids, fx, fy, counts, ytop, nrows, four, pw, ph, out):
    """Outline-based values of one particle in several pieces (a label in separate parts).

    ``pieces`` labels every piece apart; ``ids``, ``fx``, ``fy``, ``counts`` are the particle's
    pieces, their first pixels and pixel counts; ``ytop``, ``nrows`` the particle's top row and
    height + 1. ``out`` receives what :func:`_geometry` gives a particle: Perim. is the sum of the
    pieces' traced perimeters (each piece's outer outline); the convex hull, and from it Feret,
    FeretAngle, MinFeret, FeretX, FeretY and the hull area, is that of all the pieces' outline
    vertices together.
    """
    total = 0
    biggest = 1
    for k in range(ids.shape[0]):
        total += counts[k]
        biggest = max(biggest, counts[k])
    xs = np.empty(4 * biggest + 8, np.int64)
    ys = np.empty(4 * biggest + 8, np.int64)
    xs_all = np.empty(4 * total + 8 * ids.shape[0], np.int64)
    ys_all = np.empty(4 * total + 8 * ids.shape[0], np.int64)
    m = 0
    perim = 0.0
    for k in range(ids.shape[0]):
        nv = _trace(pieces, ids[k], fx[k], fy[k], four, xs, ys)
        perim += _traced_perimeter(xs, ys, nv, pw, ph)
        for i in range(nv):
            xs_all[m + i] = xs[i]
            ys_all[m + i] = ys[i]
        m += nv
    hx = np.empty(2 * nrows + 2, np.float64)
    hy = np.empty(2 * nrows + 2, np.float64)
    left = np.empty(nrows, np.int64)
    right = np.empty(nrows, np.int64)
    nh = _convex_hull(xs_all, ys_all, m, ytop, nrows, left, right, hx, hy)
    feret, angle, min_feret, xf1, yf1 = _feret(hx, hy, nh, pw, ph)
    out[0] = perim
    out[1] = feret
    out[2] = angle
    out[3] = min_feret
    out[4] = xf1
    out[5] = yf1
    out[6] = _polygon_area(hx, hy, nh)


@numba.njit(cache=True)
def _ellipses(count, minx, maxx, miny, maxy, sums, out):
    """Fitted ellipse of every particle; ``sums`` are absolute integer moment sums."""
    for k in range(count.shape[0]):
        n = count[k]
        left = minx[k]
        top = miny[k]
        # Shift the exact integer sums to the bounding box origin, as EllipseFitter sums them.
        sx = sums[k, 0] - n * left
        sy = sums[k, 1] - n * top
        sxx = sums[k, 2] - 2 * left * sums[k, 0] + n * left * left
        sxy = sums[k, 3] - top * sums[k, 0] - left * sums[k, 1] + n * left * top
        syy = sums[k, 4] - 2 * top * sums[k, 1] + n * top * top
        major, minor, angle, xc, yc = _ellipse(
            n, maxx[k] - left + 1, maxy[k] - top + 1, left, top,
            float(sx), float(sy), float(sxx), float(sxy), float(syy))
        out[k, 0] = major
        out[k, 1] = minor
        out[k, 2] = angle
        out[k, 3] = xc
        out[k, 4] = yc
