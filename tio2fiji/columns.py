"""The particle table's columns, shared by the native and the ImageJ backends.

ImageJ's Analyze Particles columns come first, then BioVoxxel's Extended Particle Analyzer columns
(``docs/imagej-spec.md`` §B), then ours.
"""

import math

import numpy as np

__all__ = ["IMAGEJ_COLUMNS", "BIOVOXXEL_COLUMNS", "COLUMNS", "ANGLE_COLUMNS", "derived_columns"]

#: Columns of ImageJ's ResultsTable, in ImageJ's order.
IMAGEJ_COLUMNS = ("Area", "Perim.", "Circ.", "AR", "Round", "Solidity", "Feret", "FeretAngle",
                  "MinFeret", "FeretX", "FeretY", "Major", "Minor", "Angle", "X", "Y", "BX", "BY",
                  "Width", "Height")
#: BioVoxxel's extra shape columns.
BIOVOXXEL_COLUMNS = ("FeretAR", "Compact", "Extent")
#: Every column of a particle table (``particles.csv``).
COLUMNS = IMAGEJ_COLUMNS + BIOVOXXEL_COLUMNS + ("image", "label", "ECD", "touches_edge")
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
