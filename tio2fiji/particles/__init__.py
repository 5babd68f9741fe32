"""ImageJ-exact particle measurements, computed natively (numpy + numba).

:func:`measure` reproduces the numbers of ImageJ 1.x *Analyze Particles* with the measurements
"area centroid perimeter bounding fit shape feret's", plus BioVoxxel's extended descriptors
(``docs/imagej-spec.md`` sections A and B). It is a port of ImageJ's own algorithms, not an
approximation of them:

* particles are found in ImageJ's order (raster scan of each particle's first pixel);
* the outline is ImageJ's ``Wand`` trace (legacy mode: 8-connected outer boundary, or 4-connected),
  starting where ImageJ starts, because the traced perimeter depends on the start vertex;
* Perim. is ``PolygonRoi.getTracedPerimeter`` (corner counting), Circ. is capped at 1;
* the convex hull lists the same vertices in the same order as ``FloatPolygon.getConvexHull``
  (from the top-left vertex, counter-clockwise on screen), so Feret ties resolve like ImageJ's;
  MinFeret is the exact rotating-calipers width (ImageJ >= 1.52m);
* the ellipse is ``EllipseFitter`` with its constants (``0.08333333``, ``1e-6`` stand-ins, the
  truncated ``sqrt(pi)`` of the 1-pixel-wide special case).

The per-particle work (trace, hull, calipers, ellipse) runs in numba kernels compiled with
``cache=True``; labelling uses :func:`scipy.ndimage.label`, which numbers components in the same
raster order as ImageJ (:func:`tio2fiji.instances.connected_components`).

Whether an array is a mask or a label image follows :func:`tio2fiji.io.mask_or_labels`. ImageJ's
size filter (``size=10-Infinity``, with or without ``pixel``) is :func:`parse_size` (``_size``).

Beside the measurement, what belongs to a particle table: its columns and units (``_columns``),
ImageJ ROI sets of the particles (``_rois``) and the complete-particle score (``_complete``).
"""

from ._columns import (
    ANGLE_COLUMNS,
    BIOVOXXEL_COLUMNS,
    COLUMNS,
    IMAGEJ_COLUMNS,
    TEXT_COLUMNS,
    derived_columns,
    mixed_units,
)
from ._complete import (
    DEFAULT_CLASSIFIER,
    FEATURES,
    add_complete_columns,
    complete_classifier,
    complete_scores,
    load_classifier,
    measured_labels,
    particle_features,
)
from ._measure import label_particles, measure
from ._rois import DEFAULT_NAME_FORMAT, label_rois, read_roi_zip, roi_polygons, rois_to_labels, write_roi_zip
from ._shape import _trace as wand_trace
from ._size import SizeFilter, parse_size

__all__ = ["COLUMNS", "IMAGEJ_COLUMNS", "BIOVOXXEL_COLUMNS", "TEXT_COLUMNS", "ANGLE_COLUMNS", "derived_columns",
           "mixed_units", "SizeFilter", "label_particles", "measure", "parse_size", "wand_trace",
           "FEATURES", "DEFAULT_CLASSIFIER", "particle_features", "load_classifier", "complete_scores",
           "complete_classifier", "measured_labels", "add_complete_columns",
           "DEFAULT_NAME_FORMAT", "label_rois", "read_roi_zip", "roi_polygons", "rois_to_labels", "write_roi_zip"]
