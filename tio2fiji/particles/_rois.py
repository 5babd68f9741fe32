"""Particles as ImageJ ROI sets (``.zip`` files for the ROI Manager), written with roifile.

Every particle (nonzero label) becomes one ROI whose pixels are exactly the particle's pixels, so
ImageJ's *Measure* of the ROI gives the particle's pixel count as Area:

* a particle that is one 8-connected piece without holes becomes a **traced polygon**
  (``Roi.TRACED_ROI``), the outline ImageJ's wand and *Analyze Particles* make: vertices on pixel
  corners, only where the direction changes, clockwise on screen from the wand's start vertex.
  ImageJ then also reports the particle's own perimeter (``PolygonRoi.getTracedPerimeter``) and
  Feret values for it;
* a particle with holes (background enclosed by it, 4-connected) or in several pieces becomes a
  **composite ROI** (ImageJ's ``ShapeRoi``) made of all its boundary loops: outer loops clockwise,
  hole loops counter-clockwise, so the holes are not part of it under either fill rule.

ROIs are named ``0001-label`` ... (the label value, zero-padded so that ImageJ's alphabetical
sorting keeps the label order) and written in label order.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from ..errors import InputError
from ..io import atomic_write
from ._shape import _trace as wand_trace

__all__ = ["DEFAULT_NAME_FORMAT", "label_rois", "read_roi_zip", "roi_polygons", "rois_to_labels",
           "write_roi_zip"]

#: ``str.format`` pattern of a ROI's name; ``label`` is the particle's value, ``index`` its 1-based
#: position in the file and ``width`` the number of digits of the largest label (at least 4).
DEFAULT_NAME_FORMAT = "{label:0{width}d}-label"

_EIGHT = np.ones((3, 3), bool)
_FOUR = ndi.generate_binary_structure(2, 1)
# ImageJ stores polygon coordinates as 16-bit integers relative to the bounding box.
_MAX_ROI_EXTENT = 65535


def _check_labels(labels) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 2:
        raise InputError(f"a label image must be 2-D, got shape {arr.shape}; pass one image plane.")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"a label image needs integer values, got {arr.dtype}; for a binary mask "
                         "label it first (tio2fiji.particles.label_particles).")
    if arr.size and arr.min() < 0:
        raise InputError("a label image must not hold negative values.")
    return arr


def _first_pixels(labels: np.ndarray):
    """Label values present (ascending) and the raster index of each one's first pixel."""
    flat = labels.ravel()
    nz = np.flatnonzero(flat)
    values, first = np.unique(flat[nz], return_index=True)
    return values, nz[first]


def _is_simple(piece: np.ndarray) -> bool:
    """One 8-connected component whose complement (4-connected) has no enclosed part."""
    _, n_fg = ndi.label(piece, structure=_EIGHT)
    if n_fg != 1:
        return False
    _, n_bg = ndi.label(~np.pad(piece, 1), structure=_FOUR)
    return n_bg == 1


def _boundary_loops(piece: np.ndarray) -> list[np.ndarray]:
    """Closed pixel-corner loops around ``piece`` (bool), inside on the right of the walk.

    In screen coordinates (y down) that makes outer loops clockwise and hole loops
    counter-clockwise. Only corner vertices are kept. Coordinates are relative to ``piece``.
    """
    p = np.pad(piece, 1)
    inside = p[1:-1, 1:-1]
    edges = []  # (x0, y0, x1, y1), one per pixel side between inside and outside
    ys, xs = np.nonzero(inside & ~p[:-2, 1:-1])  # top sides, walked left to right
    edges += list(zip(xs, ys, xs + 1, ys))
    ys, xs = np.nonzero(inside & ~p[1:-1, 2:])  # right sides, walked down
    edges += list(zip(xs + 1, ys, xs + 1, ys + 1))
    ys, xs = np.nonzero(inside & ~p[2:, 1:-1])  # bottom sides, walked right to left
    edges += list(zip(xs + 1, ys + 1, xs, ys + 1))
    ys, xs = np.nonzero(inside & ~p[1:-1, :-2])  # left sides, walked up
    edges += list(zip(xs, ys + 1, xs, ys))
    outgoing: dict[tuple, list] = {}
    for x0, y0, x1, y1 in edges:
        outgoing.setdefault((int(x0), int(y0)), []).append((int(x1), int(y1)))
    loops = []
    while outgoing:
        start = min(outgoing)  # top-left-most remaining vertex: deterministic output
        path = [start]
        prev_dir = None
        here = start
        while True:
            targets = outgoing[here]
            if len(targets) == 1:
                nxt = targets.pop()
            else:
                # A vertex where two pixels touch diagonally: turn right, which keeps the loop
                # around one pixel group (either choice fills the same pixels).
                nxt = min(targets, key=lambda t: _right_turn_rank(prev_dir, t, here))
                targets.remove(nxt)
            if not targets:
                del outgoing[here]
            prev_dir = (nxt[0] - here[0], nxt[1] - here[1])
            here = nxt
            if here == start:  # edges left at a diagonal touch start a loop of their own
                break
            path.append(here)
        loops.append(_corners(np.array(path, np.int64)))
    return loops


def _right_turn_rank(prev_dir, target, here) -> int:
    d = (target[0] - here[0], target[1] - here[1])
    if prev_dir is None:
        return 0
    # screen coordinates (y down): a right turn of (dx, dy) is (-dy, dx)
    if d == (-prev_dir[1], prev_dir[0]):
        return 0
    if d == prev_dir:
        return 1
    return 2


def _corners(path: np.ndarray) -> np.ndarray:
    """Drop the vertices where a loop goes straight on."""
    prev = np.roll(path, 1, axis=0)
    nxt = np.roll(path, -1, axis=0)
    d1 = path - prev
    d2 = nxt - path
    turn = d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]
    return path[turn != 0]


def _traced_roi(labels, value, x0, y0, buf_x, buf_y):
    n = wand_trace(labels, value, x0, y0, False, buf_x, buf_y)  # ImageJ's Wand, ported exactly
    return np.stack([buf_x[:n], buf_y[:n]], axis=1)


def _make_traced(points: np.ndarray, name: str):
    import roifile

    roi = roifile.ImagejRoi()
    roi.roitype = roifile.ROI_TYPE.TRACED
    roi.name = name
    left, top = points.min(axis=0)
    right, bottom = points.max(axis=0)
    roi.left, roi.top, roi.right, roi.bottom = int(left), int(top), int(right), int(bottom)
    roi.integer_coordinates = (points - [left, top]).astype(np.int32)
    roi.n_coordinates = len(points)
    return roi


def _make_composite(loops: list[np.ndarray], name: str):
    import roifile

    path = []
    for loop in loops:
        path += [0.0, float(loop[0, 0]), float(loop[0, 1])]
        for x, y in loop[1:]:
            path += [1.0, float(x), float(y)]
        path.append(4.0)
    allpts = np.concatenate(loops)
    roi = roifile.ImagejRoi()
    roi.roitype = roifile.ROI_TYPE.RECT
    roi.name = name
    left, top = allpts.min(axis=0)
    right, bottom = allpts.max(axis=0)
    roi.left, roi.top, roi.right, roi.bottom = int(left), int(top), int(right), int(bottom)
    roi.multi_coordinates = np.asarray(path, np.float32)
    roi.shape_roi_size = len(path)
    return roi


def label_rois(labels, name_format: str = DEFAULT_NAME_FORMAT) -> list:
    """One ImageJ ROI per particle of a label image (see the module notes for the outline rules).

    Parameters
    ----------
    labels : (H, W) array_like of int
        0 = background; every other value is one particle (its pixels need not be connected).
    name_format : str
        ``str.format`` pattern of the ROI names with the fields ``label``, ``index`` and ``width``
        (see :data:`DEFAULT_NAME_FORMAT`).

    Returns
    -------
    list of roifile.ImagejRoi
        In ascending label order.

    Raises
    ------
    InputError
        Not a 2-D non-negative integer image, a bad ``name_format``, or a particle wider or taller
        than 65,535 pixels (ImageJ's 16-bit ROI coordinates).
    """
    lab = _check_labels(labels)
    if lab.size == 0 or not lab.any():
        return []
    values, first = _first_pixels(lab)
    width = max(4, len(str(int(values[-1]))))
    h, w = lab.shape
    # find_objects needs consecutive labels: compact them for the bounding boxes
    compact = np.searchsorted(values, lab).astype(np.int32) + 1
    compact[lab == 0] = 0
    boxes = ndi.find_objects(compact)
    trace_labels = np.ascontiguousarray(lab)
    buf = 4 * int(np.bincount(compact.ravel())[1:].max()) + 8  # an outline has <= 4 sides per pixel
    buf_x = np.empty(buf, np.int64)
    buf_y = np.empty(buf, np.int64)
    rois = []
    for index, (value, start, box) in enumerate(zip(values, first, boxes), start=1):
        value = int(value)
        try:
            name = name_format.format(label=value, index=index, width=width)
        except (KeyError, IndexError, ValueError) as err:
            raise InputError(f"name_format {name_format!r} cannot be filled ({err}); use the fields "
                             "{label}, {index} and {width}.") from err
        piece = lab[box] == value
        if max(piece.shape) > _MAX_ROI_EXTENT:
            raise InputError(f"particle {value} spans {piece.shape[1]}x{piece.shape[0]} pixels; ImageJ "
                             f"ROI files hold at most {_MAX_ROI_EXTENT} pixels per side.")
        if _is_simple(piece):
            y0, x0 = divmod(int(start), w)
            points = _traced_roi(trace_labels, trace_labels.dtype.type(value), x0, y0, buf_x, buf_y)
            rois.append(_make_traced(points, name))
        else:
            offset = np.array([box[1].start, box[0].start], np.int64)
            loops = [loop + offset for loop in _boundary_loops(piece)]
            rois.append(_make_composite(loops, name))
    return rois


def write_roi_zip(labels, path, name_format: str = DEFAULT_NAME_FORMAT) -> Path:
    """Write every particle of a label image as an ImageJ ROI set (``.zip``), atomically.

    Parameters
    ----------
    labels : (H, W) array_like of int
        Label image: 0 = background, each other value one particle (e.g. ``Segmentation.labels``).
    path : str or Path
        The ``.zip`` to write (parent folders are created). Opened by ImageJ's ROI Manager
        (*More › Open...*, ``roiManager("Open", path)``) or by dragging it onto ImageJ.
    name_format : str
        Pattern of the ROI names, see :data:`DEFAULT_NAME_FORMAT`.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    InputError
        See :func:`label_rois`; also when ``path`` does not end in ``.zip``.

    Notes
    -----
    Measuring a ROI in ImageJ gives the particle's pixel count as Area (times the pixel area when
    the image is calibrated). An image without particles gives an empty zip, which the ROI Manager
    opens as an empty list.
    """
    path = Path(path)
    if path.suffix.lower() != ".zip":
        raise InputError(f"{path}: an ImageJ ROI set must be a .zip file; name it e.g. "
                         f"{path.with_suffix('.zip').name}.")
    rois = label_rois(labels, name_format=name_format)

    def _write(tmp: Path) -> None:
        # ImageJ's RoiManager reads entries named "<name>.roi" in file order
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            seen = set()
            for roi in rois:
                entry = f"{roi.name}.roi"
                if entry in seen:
                    raise InputError(f"{path}: two ROIs would be named {roi.name!r}; give "
                                     "name_format a field that differs, e.g. {label}.")
                seen.add(entry)
                zf.writestr(entry, roi.tobytes())

    return atomic_write(path, _write)


#: Largest uncompressed ROI entry read (a polygon of ~8 million float vertices); a zip that
#: claims more is refused before it is inflated (a "zip bomb").
MAX_ROI_BYTES = 64 * 2 ** 20


def _check_entry_sizes(path: Path, zf) -> None:
    """Refuse entries whose declared size no ImageJ ROI reaches (before reading them)."""
    for info in zf.infolist():
        if info.file_size > MAX_ROI_BYTES:
            raise InputError(f"{path}: entry {info.filename!r} inflates to {info.file_size} bytes, more "
                             f"than any ImageJ ROI ({MAX_ROI_BYTES} bytes); it is not a ROI set.")


def read_roi_zip(path) -> list:
    """Read an ImageJ ROI set (``.zip``) or a single ``.roi`` file.

    Parameters
    ----------
    path : str or Path
        A ROI set written by :func:`write_roi_zip`, by ImageJ's ROI Manager or by Fiji.

    Returns
    -------
    list of roifile.ImagejRoi
        In file order (the ROI Manager's order). Use :func:`roi_polygons` for their outlines and
        :func:`rois_to_labels` to turn them back into a label image.

    Raises
    ------
    InputError
        The file is missing, is not a zip/ROI file, or holds an entry that is not an ImageJ ROI.
    """
    import roifile

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such ROI file; write one with `tio2fiji segment --rois` or "
                         "tio2fiji.particles.write_roi_zip.")
    if path.suffix.lower() == ".roi":
        data = {path.name: path.read_bytes()}
    else:
        try:
            with zipfile.ZipFile(path) as zf:
                _check_entry_sizes(path, zf)
                data = {name: zf.read(name) for name in zf.namelist() if not name.endswith("/")}
        except zipfile.BadZipFile as err:
            raise InputError(f"{path}: not a zip file ({err}); an ImageJ ROI set is a .zip of "
                             ".roi files, saved by the ROI Manager's More › Save...") from err
    rois = []
    for name, raw in data.items():
        if raw[:4] != b"Iout":
            raise InputError(f"{path}: entry {name!r} is not an ImageJ ROI (no 'Iout' header); "
                             "remove it or save the set again from ImageJ's ROI Manager.")
        rois.append(roifile.ImagejRoi.frombytes(raw))
    return rois


def roi_polygons(roi) -> list[np.ndarray]:
    """Closed outlines of an area ROI in image coordinates (x, y), one array per loop.

    Parameters
    ----------
    roi : roifile.ImagejRoi
        A polygon, traced, freehand or rectangle ROI, or a composite (shape) ROI of polygons.

    Returns
    -------
    list of (n, 2) ndarray of float64
        Vertices of each loop (a loop's first vertex is not repeated at its end).

    Raises
    ------
    InputError
        Line, point, oval or text ROIs, or composite ROIs with curves.
    """
    import roifile

    kind = roifile.ROI_TYPE
    if roi.composite and roi.roitype == kind.RECT:
        try:
            loops = roi.path2coords(roi.multi_coordinates)
        except (NotImplementedError, RuntimeError) as err:
            raise InputError(f"ROI {roi.name!r}: composite outline with curves ({err}); only polygon "
                             "outlines can be rasterised.") from err
        out = []
        for loop in loops:
            loop = np.asarray(loop, np.float64)
            if len(loop) > 1 and np.array_equal(loop[0], loop[-1]):
                loop = loop[:-1]
            out.append(loop)
        return out
    if roi.roitype in (kind.POLYGON, kind.TRACED, kind.FREEHAND):
        return [np.asarray(roi.coordinates(), np.float64)]
    if roi.roitype == kind.RECT and roi.subtype == 0:
        return [np.array([[roi.left, roi.top], [roi.right, roi.top], [roi.right, roi.bottom],
                          [roi.left, roi.bottom]], np.float64)]
    raise InputError(f"ROI {roi.name!r} of type {roi.roitype.name} has no polygon area; only "
                     "polygon, traced, freehand, rectangle and composite ROIs can be rasterised.")


def rois_to_labels(rois, shape, start: int = 1) -> np.ndarray:
    """Paint area ROIs into a label image, as ImageJ fills them (pixel centres inside, even-odd).

    Parameters
    ----------
    rois : sequence of roifile.ImagejRoi
        E.g. from :func:`read_roi_zip`.
    shape : (int, int)
        ``(height, width)`` of the label image.
    start : int
        Label of the first ROI; the others follow in order. Names written by
        :func:`write_roi_zip` (``0007-label``) carry the original label values; parse them when
        labels are not consecutive.

    Returns
    -------
    (H, W) ndarray of int32
        Later ROIs overwrite earlier ones where they overlap.
    """
    from skimage.draw import polygon as draw_polygon

    height, width = (int(s) for s in shape)
    out = np.zeros((height, width), np.int32)
    for i, roi in enumerate(rois):
        loops = roi_polygons(roi)
        pts = np.concatenate(loops)
        # work in the ROI's bounding box (clipped to the image)
        x0, y0 = (max(0, int(np.floor(v))) for v in pts.min(axis=0))
        x1, y1 = int(np.ceil(pts[:, 0].max())), int(np.ceil(pts[:, 1].max()))
        x1, y1 = min(x1, width), min(y1, height)
        if x1 <= x0 or y1 <= y0:
            continue
        box = (y1 - y0, x1 - x0)
        fill = np.zeros(box, bool)
        for loop in loops:
            # pixel (x, y) is the square [x, x+1) x [y, y+1); skimage tests integer centres
            rr, cc = draw_polygon(loop[:, 1] - 0.5 - y0, loop[:, 0] - 0.5 - x0, shape=box)
            part = np.zeros(box, bool)
            part[rr, cc] = True
            fill ^= part  # even-odd: holes and pieces of composite ROIs
        out[y0:y1, x0:x1][fill] = start + i
    return out
