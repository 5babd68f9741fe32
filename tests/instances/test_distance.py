"""The distance U-Net's target and its particles (issue 27), against hand-computed cases."""

import numpy as np
import pytest

from tio2fiji.errors import InputError
from tio2fiji.instances import (
    DISTANCE_DEFAULTS,
    border_band,
    connected_components,
    inner_distance,
    labels_from_border,
    labels_from_distance,
    labels_from_maps,
    star_targets,
)


def test_inner_distance_by_hand():
    lab = np.zeros((9, 12), np.int32)
    lab[2:7, 1:6] = 1  # a 5x5 square: Euclidean distance to the outside 1 (ring), 2, 3 (centre)
    lab[2:7, 6:8] = 2  # touches 1 along a column: another particle is "outside" for both
    lab[0, 11] = 3  # one pixel at the image corner: the image edge counts as outside
    d = inner_distance(lab)
    assert d.dtype == np.float32 and d[lab == 0].max() == 0
    assert d[4, 3] == 1.0 and d[3, 3] == pytest.approx(2 / 3) and d[2, 3] == pytest.approx(1 / 3)
    # column 5 of square 1 touches particle 2: its pixels are on an edge (1/3), its neighbour 2/3
    assert d[4, 5] == pytest.approx(1 / 3) and d[4, 4] == pytest.approx(2 / 3)
    # particle 2 is 2 px wide: every pixel is at distance 1 from outside -> all 1
    assert np.all(d[lab == 2] == 1.0) and d[0, 11] == 1.0
    # StarDist's object probability is the same map
    assert np.array_equal(star_targets(lab, 8)[0], d)
    with pytest.raises(InputError):
        inner_distance(lab.astype(float))


def _dense_small_particles():
    """Four 4x4 particles in a row, one-pixel gaps (a dense agglomerate of small particles)."""
    lab = np.zeros((12, 30), np.int32)
    for k in range(4):
        lab[4:8, 3 + 5 * k:7 + 5 * k] = k + 1
    return lab


def test_small_particles_keep_their_seeds():
    """The network's maps as the targets say, the gaps inside one mask component: off the 5x5
    band the inner particles keep 2 columns (8 px), the outer ones 3 (12 px), all under the 16 px
    smallest seed the shipped border decoding uses, so one particle grows over all four; the
    normalised distance peaks at each centre (2x2 px over 0.5), so the distance decoding finds
    all four, each whole (16 px)."""
    lab = _dense_small_particles()
    merged = (lab > 0).astype(np.float32)
    merged[4:8, 7:18:5] = 1.0  # the gaps as a network sees them: inside one mask component
    band = border_band(lab, 2).astype(np.float32)
    dist = inner_distance(lab)
    assert int(((lab > 0) & (band == 0)).sum()) == 12 + 8 + 8 + 12
    assert labels_from_border(merged, band, border_threshold=0.5, min_seed=16).max() == 1
    out = labels_from_distance(merged, band, dist, seed_threshold=0.5)
    assert out.max() == 4
    assert sorted(np.bincount(out.ravel())[1:]) == [16, 16, 16, 16]
    # the dispatch: a "distance" U-Net's three maps, its own way
    labels, mask, method = labels_from_maps(np.stack([merged, band, dist]), "distance", 0.5)
    assert method == "distance" and labels.max() == 4 and np.array_equal(mask, labels > 0)
    with pytest.raises(InputError, match="distance U-Net"):
        labels_from_maps(np.stack([merged, band]), "border", 0.5, separate="distance")


def test_labels_from_distance_lines_and_parameters():
    """Two 10x10 squares touching along a column, distance peaks in each: two particles with a
    one-pixel line between them (4-connected components = the particles); a seed threshold above
    every value gives none, and each mask component stays one particle; bad parameters refused."""
    lab = np.zeros((20, 30), np.int32)
    lab[5:15, 3:13] = 1
    lab[5:15, 13:23] = 2
    prob, dist = (lab > 0).astype(np.float32), inner_distance(lab)
    band = np.zeros_like(prob)
    out = labels_from_distance(prob, band, dist)
    assert out.max() == 2 and (out > 0).sum() == 200 - 10
    assert np.array_equal(connected_components(out > 0, 4), out)
    assert labels_from_distance(prob, band, dist * 0.4, seed_threshold=0.5).max() == 1
    # seeds under min_seed pixels seed nothing (each square's core over 0.8 is 2x2 = 4 px)
    assert labels_from_distance(prob, band, dist, seed_threshold=0.8, min_seed=5).max() == 1
    assert labels_from_distance(prob, band, dist, seed_threshold=0.8, min_seed=4).max() == 2
    assert set(DISTANCE_DEFAULTS) == {"seed_threshold", "min_seed", "border_threshold", "sigma", "h"}
    for bad in ({"seed_threshold": 1.0}, {"border_threshold": 0.0}, {"min_seed": 0}, {"sigma": -1}, {"h": 1.0}):
        with pytest.raises(InputError):
            labels_from_distance(prob, band, dist, **bad)
    with pytest.raises(InputError, match="same 2-D shape"):
        labels_from_distance(prob, band, dist[:5])
    assert labels_from_distance(prob * 0, band, dist).max() == 0


def test_labels_from_distance_h_splits_a_seed_region_at_its_saddle():
    """Two touching discs (radius 8, centres 14 px apart) whose predicted distance stays over the
    seed threshold across the contact (peaks 1 and 0.95, saddle 0.7): one seed region, one
    particle with h = 0; with h = 0.2 each peak (the lower 0.25 above the saddle) seeds its own,
    two particles of equal size; h = 0.4 (above the lower peak's 0.25) gives one again."""
    yy, xx = np.mgrid[0:30, 0:44]
    r1, r2 = np.hypot(yy - 15, xx - 15), np.hypot(yy - 15, xx - 29)
    prob = ((r1 <= 8) | (r2 <= 8)).astype(np.float32)
    dist = np.where(prob > 0, np.maximum(1 - 0.3 * r1 / 7, 0.95 - 0.25 * r2 / 7), 0).astype(np.float32)
    band = np.zeros_like(prob)
    assert dist[15, 22] == pytest.approx(0.7)  # the saddle on the contact
    one = labels_from_distance(prob, band, dist, seed_threshold=0.5, sigma=0.0, min_seed=1)
    assert one.max() == 1
    two = labels_from_distance(prob, band, dist, seed_threshold=0.5, sigma=0.0, min_seed=1, h=0.2)
    assert two.max() == 2 and abs(int((two == 1).sum()) - int((two == 2).sum())) <= 16
    assert labels_from_distance(prob, band, dist, seed_threshold=0.5, sigma=0.0, min_seed=1, h=0.4).max() == 1
