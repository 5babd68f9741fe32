"""Network output -> particles (a label image): every rule that turns a probability map or
detections into labelled particles lives here, with the one labelling rule (connected components in
ImageJ's raster order) that measurement and scoring share.

A semantic network such as the U-Net gives each pixel a particle probability; touching particles
then merge into one connected component (the thesis's Fig. 31). :func:`watershed_split` cuts them
apart where the particle narrows: the Euclidean distance to the background, optionally weighted by
the probability (a network trained to mark the one-pixel gaps between particles, as the bundled
model is, lowers the probability there), is smoothed, its regional maxima higher than ``h`` pixels
above their surroundings become one seed each, and a watershed grows the seeds over the mask,
leaving one-pixel lines between particles like the BAM manual masks.

The default parameters were chosen on the four validation images of the bundled model's split
(BAM TiO2, 1908260/284/292/306) by mean instance IoU; see ``benchmarks/accuracy/separation.py``.

A network that knows where one particle ends (``outputs="star"`` models,
:mod:`tio2fiji.training.star`) gives, besides the particle probability, StarDist's two maps
(Schmidt et al. 2018): an *object probability* (each particle's Euclidean distance to the nearest
pixel outside it, normalised to 1 at its centre) and, per pixel, the distances to the particle's
edge along ``n`` equally spaced rays. :func:`star_targets` makes them from a label image (the
training targets); :func:`labels_from_star` turns them back into particles, either as StarDist does
(the candidate polygons of pixels whose object probability exceeds a threshold, thinned by
non-maximum suppression and painted) or as seeds grown over the particle mask. The polygon
geometry and NMS are the ``stardist`` package's compiled code (it needs no TensorFlow).
"""

from ._border import BORDER_DEFAULTS, BORDER_WIDTH, border_band, labels_from_border
from ._distance import DISTANCE_DEFAULTS, inner_distance, labels_from_distance
from ._labels import (
    CONNECTIVITY,
    SEPARATE,
    SEPARATIONS,
    WATERSHED_DEFAULTS,
    add_unseeded,
    connected_components,
    drop_small,
    labels_from_probability,
    labels_to_separated_mask,
    particle_scores,
    remove_touching,
    watershed_split,
)
from ._maps import OWN_LINES, OWN_SEPARATION, labels_from_maps
from ._maskrcnn import PASTE_METHODS, paint_instances, paste_masks
from ._star import STAR_DEFAULTS, STAR_MODES, labels_from_star, star_targets

__all__ = ["CONNECTIVITY", "SEPARATE", "SEPARATIONS", "WATERSHED_DEFAULTS", "connected_components",
           "watershed_split", "labels_from_probability", "particle_scores", "labels_to_separated_mask",
           "remove_touching", "drop_small", "add_unseeded", "PASTE_METHODS", "paste_masks", "paint_instances",
           "STAR_DEFAULTS", "STAR_MODES", "star_targets", "labels_from_star", "BORDER_DEFAULTS",
           "BORDER_WIDTH", "border_band", "labels_from_border", "DISTANCE_DEFAULTS", "inner_distance",
           "labels_from_distance", "OWN_LINES", "OWN_SEPARATION", "labels_from_maps"]
