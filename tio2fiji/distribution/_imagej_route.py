"""The ImageJ route: UEPs and the BioVoxxel macro in a real ImageJ, through the bridge's session."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError, Tio2FijiError
from ..imagej import macro_file, session
from ..io import pixel_size_nm
from ._biovoxxel import _biovoxxel_tables
from ._edm import _check_mask


def ultimate_points_imagej(mask, ij_jar=None):
    """UEPs computed by a real ImageJ 1.x (``EDM`` plugin, argument ``"points"``), headless.

    Parameters
    ----------
    mask : (H, W) array_like of bool or 0/k
        Binary mask, foreground = nonzero.
    ij_jar : str or Path, optional
        See :func:`tio2fiji.imagej.start_imagej`.

    Returns
    -------
    coords : (n, 2) ndarray of int64
        ``(row, col)`` in raster order, as :func:`ultimate_points`.
    values : (n,) ndarray of uint8
        ImageJ's 8-bit output at the UEPs: the EDM value rounded.

    Notes
    -----
    Runs ``IJ.runPlugIn(imp, "ij.plugin.filter.EDM", "points")`` with ``Prefs.blackBackground``
    on and the EDM output type "overwrite", restoring both afterwards.
    """
    fg = _check_mask(mask)
    with session(ij_jar) as ij:
        prefs = ij.jclass("ij.Prefs")
        edm_class = ij.jclass("ij.plugin.filter.EDM")
        imp = ij.to_imageplus(fg, title="uep-input")
        old_black, old_type = bool(prefs.blackBackground), int(edm_class.getOutputType())
        prefs.blackBackground = True
        edm_class.setOutputType(edm_class.BYTE_OVERWRITE)
        try:
            ij.run_plugin(imp, "ij.plugin.filter.EDM", "points")
        finally:
            prefs.blackBackground = old_black
            edm_class.setOutputType(old_type)
        out = ij.from_imageplus(imp)
    rows, cols = np.nonzero(out)
    return np.stack([rows, cols], axis=1).astype(np.int64), out[rows, cols]


def macro_path() -> Path:
    """Path of ``BioVoxxel_Particle_Distribution.ijm`` (package data: ``tio2fiji/macros/``)."""
    return macro_file("BioVoxxel_Particle_Distribution.ijm")


def parse_macro_return(text: str) -> dict:
    """``"key=value;key=value"`` (what the project's macros return) to a dict, numbers as floats."""
    out = {}
    for item in text.strip().split(";"):
        if "=" not in item:
            continue
        key, value = item.split("=", 1)
        try:
            out[key] = float(value)
        except ValueError:
            out[key] = value
    return out


def biovoxxel_test_imagej(image, pixel_size_m=None, statistic="median", alpha=0.05,
                          java_student_bug=True, macro=None, ij_jar=None) -> dict:
    """Run the BioVoxxel procedure as an ImageJ macro in a real ImageJ, headless.

    The macro (``tio2fiji/macros/BioVoxxel_Particle_Distribution.ijm``) needs no BioVoxxel: it labels the
    8-connected groups of nonzero pixels (what *Analyze Particles* does on the thresholded UEP
    image), takes their centroids and runs the test of :func:`biovoxxel_test`.

    Parameters
    ----------
    image : (H, W) array_like
        A UEP image (nonzero = UEP, e.g. from :func:`ultimate_points`) or any binary mask.
    pixel_size_m : float, optional
        Pixel size in metres: centroids are then in nm while the area stays in pixels (as in
        BioVoxxel).
    statistic, alpha, java_student_bug
        As in :func:`biovoxxel_test`.
    macro : str or Path, optional
        Another copy of the macro (default :func:`macro_path`).
    ij_jar : str or Path, optional
        See :func:`tio2fiji.imagej.start_imagej`.

    Returns
    -------
    dict
        The keys of :func:`biovoxxel_test` parsed from the macro's return value, plus ``log``
        (what it printed to the Log window).
    """
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise InputError(f"expected a 2-D image, got shape {arr.shape}.")
    _biovoxxel_tables(alpha)  # validate before starting Java
    if statistic not in ("median", "mean"):
        raise InputError(f"statistic must be 'median' or 'mean', not {statistic!r}.")
    code = Path(macro or macro_path()).read_text(encoding="utf-8")
    fg = _check_mask(arr != 0, "uep")  # the checks of to_imageplus, before starting Java
    pixel_size_nm(pixel_size_m)
    args = (f"statistic={statistic} alpha={alpha:g} "
            f"java_student_bug={1 if java_student_bug else 0}")
    with session(ij_jar) as ij:
        imp = ij.to_imageplus(fg, title="uep", pixel_size_m=pixel_size_m)
        res = ij.run_macro(code, image=imp, args=args)
    if not res.value:
        raise Tio2FijiError(f"The BioVoxxel macro returned nothing; its log:\n{res.output}")
    out = parse_macro_return(res.value)
    for key in ("n", "df"):
        if key in out and np.isfinite(out[key]):
            out[key] = int(out[key]) if key == "n" else out[key]
    out["significant"] = out.get("significant") in (1.0, "1", "true")
    out["log"] = res.output
    return out
