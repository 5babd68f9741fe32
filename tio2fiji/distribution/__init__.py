"""Spatial distribution of particles: ultimate eroded points, nearest neighbours and tests.

The thesis classifies each image's particles as clustered, random or self-avoiding (its Table 9)
with the BioVoxxel "Particle Distribution (2D)" test applied to ImageJ's ultimate eroded points
(UEPs). This package

* computes UEPs exactly as ImageJ's *Process > Binary > Ultimate Points* does
  (:func:`ultimate_points`, a port of ``EDM.makeFloatEDM`` and ``MaximumFinder``), and through a
  real ImageJ (:func:`ultimate_points_imagej`);
* reproduces the BioVoxxel test step by step (:func:`biovoxxel_test`), natively and as an ImageJ
  macro (``tio2fiji/macros/BioVoxxel_Particle_Distribution.ijm``, :func:`biovoxxel_test_imagej`), to
  check published numbers, **not** as a recommendation: it uses the expected nearest-neighbour
  distance (NND) as a variance, has no edge correction, and calls truly random patterns
  "clustering" (``docs/imagej-spec.md`` §B, §C);
* provides sound tests, the default: the Clark–Evans ratio with Donnelly's edge correction
  (:func:`clark_evans_test`), a Monte Carlo test against complete spatial randomness (CSR) or
  random non-overlapping placement of the observed particles (:func:`monte_carlo_test`), and the
  G-function and Ripley's L with simulation envelopes (:func:`envelopes`; plotted by
  :func:`tio2fiji.report.plot_envelopes`);
* puts one image's result into a ``distribution.csv`` row (:func:`test_distribution`,
  :func:`distribution_table`).

Conventions
-----------
* Pixel positions returned by :func:`ultimate_points` are integer ``(row, col)`` indices.
* Point patterns are float ``(x, y)`` arrays, ``x`` to the right and ``y`` down, in a rectangular
  window ``[0, width] x [0, height]``. A pixel ``(row, col)`` has its centre at
  ``(col + 0.5, row + 0.5)`` (ImageJ's centroid convention), see :func:`pixel_points`.
* With a pixel size (metres) the sound methods work in nanometres throughout (points, window,
  area, distances). The BioVoxxel mode reproduces BioVoxxel's units instead: centroids are
  calibrated but the area is the image's width x height in pixels.

Layout: ``_edm`` (the EDM / Ultimate Points port), ``_points`` (points, nearest neighbours),
``_biovoxxel``, ``_spatial`` (the sound tests, G, L, envelopes), ``_imagej_route`` (the same in a
real ImageJ, through :func:`tio2fiji.imagej.session`), ``_plot`` and ``_table`` (one row per
image and method).
"""

from ._biovoxxel import (
    BIOVOXXEL_BINS,
    BIOVOXXEL_CRITICAL_F,
    BIOVOXXEL_CRITICAL_T,
    biovoxxel_expected_nnd,
    biovoxxel_points,
    biovoxxel_test,
)
from ._edm import UEP_PROMINENCE, edm_imagej, ultimate_points
from ._imagej_route import (
    biovoxxel_test_imagej,
    macro_path,
    parse_macro_return,
    ultimate_points_imagej,
)
from ._points import nearest_neighbour_distances, pixel_points
from ._spatial import (
    CLARK_EVANS_MIN_POINTS,
    clark_evans_test,
    envelope_tests,
    envelopes,
    g_function,
    l_function,
    monte_carlo_test,
    random_sequential_discs,
)
from ._table import COLUMNS, METHODS, distribution_table, test_distribution

__all__ = [
    "BIOVOXXEL_BINS",
    "BIOVOXXEL_CRITICAL_F",
    "BIOVOXXEL_CRITICAL_T",
    "CLARK_EVANS_MIN_POINTS",
    "COLUMNS",
    "METHODS",
    "UEP_PROMINENCE",
    "biovoxxel_expected_nnd",
    "biovoxxel_points",
    "biovoxxel_test",
    "biovoxxel_test_imagej",
    "clark_evans_test",
    "distribution_table",
    "edm_imagej",
    "envelope_tests",
    "envelopes",
    "g_function",
    "l_function",
    "macro_path",
    "monte_carlo_test",
    "nearest_neighbour_distances",
    "parse_macro_return",
    "pixel_points",
    "random_sequential_discs",
    "test_distribution",
    "ultimate_points",
    "ultimate_points_imagej",
]
