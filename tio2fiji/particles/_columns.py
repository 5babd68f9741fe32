"""The particle table's columns, shared by the native and the ImageJ backends.

ImageJ's Analyze Particles columns come first, then BioVoxxel's Extended Particle Analyzer columns
(``docs/imagej-spec.md`` §B), then ours. Every row says its unit (``unit``: ``"nm"`` when the
image is calibrated, else ``"pixel"``; lengths are in it, areas in its square, FeretX/FeretY always
in pixels, as ImageJ), so that a table of several images never mixes nm² and px² silently.
"""

import math
from collections import Counter

import numpy as np

__all__ = ["IMAGEJ_COLUMNS", "BIOVOXXEL_COLUMNS", "COLUMNS", "TEXT_COLUMNS", "ANGLE_COLUMNS",
           "derived_columns", "mixed_units"]

#: Columns of ImageJ's ResultsTable, in ImageJ's order.
IMAGEJ_COLUMNS = ("Area", "Perim.", "Circ.", "AR", "Round", "Solidity", "Feret", "FeretAngle",
                  "MinFeret", "FeretX", "FeretY", "Major", "Minor", "Angle", "X", "Y", "BX", "BY",
                  "Width", "Height")
#: BioVoxxel's extra shape columns.
BIOVOXXEL_COLUMNS = ("FeretAR", "Compact", "Extent")
#: Every column of a particle table (``particles.csv``).
COLUMNS = IMAGEJ_COLUMNS + BIOVOXXEL_COLUMNS + ("image", "label", "ECD", "touches_edge", "unit")
#: The columns that hold text, not numbers.
TEXT_COLUMNS = ("image", "unit")
#: Columns in degrees in [0, 180).
ANGLE_COLUMNS = ("FeretAngle", "Angle")


def derived_columns(area, feret, min_feret, major, width, height) -> dict:
    """BioVoxxel's FeretAR, Compact, Extent and the equivalent circle diameter ECD.

    FeretAR = Feret/MinFeret; Compact = sqrt(4·Area/π)/Major (= sqrt(Minor/Major), the ellipse
    having the particle's area); Extent = Area/(Width·Height); ECD = sqrt(4·Area/π).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        ecd = np.sqrt(4.0 * np.asarray(area, dtype=np.float64) / math.pi)
        return {"FeretAR": feret / min_feret, "Compact": ecd / major,
                "Extent": area / (width * height), "ECD": ecd}


def mixed_units(units) -> str | None:
    """The warning of a table whose images are in different units, None when they share one.

    Parameters
    ----------
    units : iterable of str
        Each image's unit (``"nm"`` or ``"pixel"``).

    Returns
    -------
    str or None
        One line (the same for every image of the run, so that it is said once).
    """
    counts = Counter(units)
    if len(counts) <= 1:
        return None
    parts = ", ".join(f"{n} image(s) in {u} (areas in {u}²)" for u, n in sorted(counts.items()))
    return (f"particles.csv mixes units: {parts}; lengths and areas compare only between rows of "
            f"the same unit column (give --pixel-size, or analyse the images apart)")
