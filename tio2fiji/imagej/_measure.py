"""Particle measurement by ImageJ's ParticleAnalyzer, and comparing two particle tables."""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import pandas as pd

from ..errors import InputError, Tio2FijiError
from ..io import pixel_size_nm
from ..particles import ANGLE_COLUMNS, COLUMNS, IMAGEJ_COLUMNS, TEXT_COLUMNS, derived_columns, parse_size
from ._convert import _as_binary_mask, to_imageplus
from ._jvm import _lock, _state, start_imagej, start_pyimagej

logger = logging.getLogger(__package__)  # "tio2fiji.imagej", as before the split


def _select_backend(backend: str, fiji_dir) -> str:
    if backend not in ("auto", "ij1", "pyimagej"):
        raise InputError(f"backend must be 'auto', 'ij1' or 'pyimagej', not {backend!r}.")
    if backend == "auto":
        return "pyimagej" if fiji_dir is not None else "ij1"
    return backend


def _analyzer_options(pa_class, connectivity: int, include_holes: bool, exclude_edges: bool) -> int:
    options = pa_class.SHOW_NONE
    if include_holes:
        options |= pa_class.INCLUDE_HOLES
    if exclude_edges:
        options |= pa_class.EXCLUDE_EDGE_PARTICLES
    if connectivity == 4:
        options |= pa_class.FOUR_CONNECTED
    return int(options)


def _measurements(m_class) -> int:
    return int(m_class.AREA | m_class.CENTROID | m_class.PERIMETER | m_class.RECT | m_class.ELLIPSE
               | m_class.SHAPE_DESCRIPTORS | m_class.FERET)


def _run_particle_analyzer(imp, options: int, min_px: float = 0.0, max_px: float = math.inf) -> dict:
    """Run ParticleAnalyzer on ``imp`` (sizes in pixels, as its constructor takes them); return the
    ResultsTable's columns as float64 arrays."""
    import jpype

    pa_class = jpype.JClass("ij.plugin.filter.ParticleAnalyzer")
    prefs = jpype.JClass("ij.Prefs")
    rt = jpype.JClass("ij.measure.ResultsTable")()
    # circularity 0..1: every shape
    pa = pa_class(options, _measurements(jpype.JClass("ij.measure.Measurements")), rt,
                  float(min_px), float(max_px), 0.0, 1.0)
    pa.setHideOutputImage(True)
    old_black = bool(prefs.blackBackground)
    prefs.blackBackground = True  # 255 = particle
    try:
        ok = pa.analyze(imp)
    finally:
        prefs.blackBackground = old_black
    if not ok:
        raise Tio2FijiError(f"ImageJ's ParticleAnalyzer failed on {imp.getTitle()}.")
    n = int(rt.size())
    columns = {}
    for name in IMAGEJ_COLUMNS:
        if n == 0:
            columns[name] = np.zeros(0)
            continue
        idx = int(rt.getColumnIndex(name))
        if idx < 0:
            raise Tio2FijiError(f"ImageJ {_state.version} produced no {name!r} column.")
        # Full doubles, not the 3-decimal text of the Results window.
        columns[name] = np.array(rt.getColumnAsDoubles(idx), dtype=np.float64)
    return columns


def _assemble(columns: dict, shape, pw_nm, image_name: str) -> pd.DataFrame:
    df = pd.DataFrame({name: columns[name] for name in IMAGEJ_COLUMNS})
    n = len(df)
    extra = derived_columns(df["Area"].to_numpy(), df["Feret"].to_numpy(), df["MinFeret"].to_numpy(),
                            df["Major"].to_numpy(), df["Width"].to_numpy(), df["Height"].to_numpy())
    for name in ("FeretAR", "Compact", "Extent"):
        df[name] = extra[name]
    df["image"] = pd.Series([image_name] * n, dtype=object)
    df["label"] = np.arange(1, n + 1, dtype=np.int64)
    df["ECD"] = extra["ECD"]
    scale = 1.0 if pw_nm is None else pw_nm
    bx, by = np.rint(df["BX"] / scale), np.rint(df["BY"] / scale)
    bw, bh = np.rint(df["Width"] / scale), np.rint(df["Height"] / scale)
    height, width = shape
    df["touches_edge"] = ((bx <= 0) | (by <= 0) | (bx + bw >= width) | (by + bh >= height)).astype(bool)
    df["unit"] = pd.Series(["pixel" if pw_nm is None else "nm"] * n, dtype=object)
    return df[list(COLUMNS)]


def measure_imagej(mask, pixel_size_m=None, connectivity=8, include_holes=False, exclude_edges=False,
                   image_name="", ij_jar=None, backend="auto", fiji_dir=None, size=None) -> pd.DataFrame:
    """Measure the particles of a binary mask with ImageJ's ParticleAnalyzer.

    Parameters
    ----------
    mask : (H, W) array_like
        Binary mask (bool, or zeros and one foreground value such as 255).
    pixel_size_m : float, optional
        Pixel size in metres. Lengths are then in nm and areas in nm², else in pixels.
    connectivity : {8, 4}
        Particle connectivity. 4 always includes holes (see Notes).
    include_holes : bool
        ImageJ's "Include holes": a particle is everything inside its outer outline.
    exclude_edges : bool
        ImageJ's "Exclude on edges": drop particles whose bounding box touches the image border.
    image_name : str
        Written to the ``image`` column.
    ij_jar : str or Path, optional
        ImageJ 1.x for the ``"ij1"`` backend, see :func:`find_ij_jar`.
    backend : {"auto", "ij1", "pyimagej"}
        ``"auto"`` is ``"pyimagej"`` if ``fiji_dir`` is given, else ``"ij1"``.
    fiji_dir : str or Path, optional
        Local Fiji.app for the ``"pyimagej"`` backend.
    size : str or SizeFilter, optional
        ImageJ's size filter (``"10-Infinity"``, ``"10-500 pixel"``,
        :func:`tio2fiji.particles.parse_size`), turned into pixel counts as ImageJ's dialog does.

    Returns
    -------
    DataFrame
        One row per particle in ImageJ's order, columns :data:`COLUMNS`. ``FeretX``/``FeretY`` are
        pixel-corner coordinates even when calibrated (as in ImageJ); ``unit`` (``"nm"`` or
        ``"pixel"``) is on every row. ``df.attrs`` records
        ``unit``, ``pixel_size_m``, ``connectivity``, ``include_holes`` (as applied),
        ``exclude_edges``, ``backend``, ``imagej_version``, ``imagej_source`` (jar or Fiji
        directory) and ``seconds`` (ParticleAnalyzer time).

    Raises
    ------
    InputError
        Not a 2-D binary mask, bad options or pixel size.
    JavaNotFoundError
        No Java or no ImageJ.

    Notes
    -----
    ImageJ 1.53t's ParticleAnalyzer with ``FOUR_CONNECTED`` but without ``INCLUDE_HOLES`` returns
    thousands of zero-area particles; later versions force include-holes for 4-connectivity. This
    function therefore always adds ``INCLUDE_HOLES`` when ``connectivity == 4``.
    """
    if connectivity not in (4, 8):
        raise InputError(f"connectivity must be 4 or 8, not {connectivity!r}.")
    which = _select_backend(backend, fiji_dir)
    binary = _as_binary_mask(mask, image_name or "mask")
    pw_nm = pixel_size_nm(pixel_size_m)
    size = parse_size(size)
    min_px, max_px = size.pixel_bounds(pixel_size_m) if size is not None else (0.0, math.inf)
    holes = bool(include_holes) or connectivity == 4
    if holes and not include_holes:
        logger.info("connectivity=4: include_holes forced on (as in ImageJ >= 1.54; "
                    "ImageJ 1.53t returns nonsense without it)")
    version = start_pyimagej(fiji_dir) if which == "pyimagej" else start_imagej(ij_jar)
    import jpype

    with _lock:
        imp = to_imageplus(binary, title=image_name or "mask", pixel_size_m=pixel_size_m)
        options = _analyzer_options(jpype.JClass("ij.plugin.filter.ParticleAnalyzer"),
                                    connectivity, holes, exclude_edges)
        t0 = time.perf_counter()
        columns = _run_particle_analyzer(imp, options, min_px, max_px)
        seconds = time.perf_counter() - t0
    df = _assemble(columns, binary.shape, pw_nm, image_name)
    logger.debug("ImageJ measured %d particles in %s in %.3f s", len(df), image_name or "mask", seconds)
    df.attrs.update({
        "unit": "pixel" if pw_nm is None else "nm",
        "pixel_size_m": None if pixel_size_m is None else float(pixel_size_m),
        "connectivity": int(connectivity),
        "include_holes": holes,
        "include_holes_forced": holes and not include_holes,
        "exclude_edges": bool(exclude_edges),
        "size": None if size is None else size.text,
        "backend": f"imagej-{_state.backend}",  # the JVM's, which may predate this call
        "imagej_source": str(_state.jar or _state.fiji_dir or ""),
        "imagej_version": version,
        "seconds": seconds,
    })
    return df


def compare_tables(reference, other, rtol=1e-6, atol=1e-9, angle_atol=1e-4) -> pd.DataFrame:
    """Column-by-column deviations between two particle tables (e.g. ImageJ vs native).

    Parameters
    ----------
    reference, other : DataFrame
        Tables with :data:`COLUMNS`, rows in the same (ImageJ's raster) order.
    rtol, atol : float
        A value agrees if ``|a - b| <= atol + rtol * max(|a|, |b|)``.
    angle_atol : float
        Degrees allowed for :data:`ANGLE_COLUMNS`, compared modulo 180 (179.99999 ~ 0).

    Returns
    -------
    DataFrame
        Indexed by column: ``max_abs``, ``max_rel`` (relative to ``max(|a|, |b|)``) and
        ``n_outside`` (values out of tolerance). The ``image`` and ``unit`` columns count
        mismatching strings.

    Raises
    ------
    InputError
        If the row counts differ (the particles do not correspond).
    """
    if len(reference) != len(other):
        raise InputError(f"particle counts differ: {len(reference)} vs {len(other)}")
    rows = {}
    for col in COLUMNS:
        if col in TEXT_COLUMNS:
            bad = int((reference[col].astype(str).to_numpy() != other[col].astype(str).to_numpy()).sum())
            rows[col] = (float(bad > 0), float(bad > 0), bad)
            continue
        a = reference[col].to_numpy(dtype=np.float64)
        b = other[col].to_numpy(dtype=np.float64)
        with np.errstate(invalid="ignore"):
            diff = np.abs(a - b)
            # equal (also both inf) or both NaN agree; NaN against a number does not
            same = (a == b) | (np.isnan(a) & np.isnan(b))
            diff = np.where(same, 0.0, np.where(np.isnan(diff), np.inf, diff))
            if col in ANGLE_COLUMNS:
                diff = np.minimum(diff, np.abs(180.0 - diff))
                allowed = np.full_like(diff, angle_atol)
            else:
                allowed = atol + rtol * np.fmax(np.abs(a), np.abs(b))
            scale = np.fmax(np.abs(a), np.abs(b))
            rel = np.where(diff == 0, 0.0, diff / np.where(scale > 0, scale, 1.0))
        rows[col] = (float(diff.max(initial=0.0)), float(rel.max(initial=0.0)),
                     int((diff > allowed).sum()))
    return pd.DataFrame.from_dict(rows, orient="index", columns=["max_abs", "max_rel", "n_outside"])
