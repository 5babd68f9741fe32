"""Particles from probability maps: connected components and the watershed split."""

import numpy as np
import pytest

from tio2fiji.errors import InputError
from tio2fiji.instances import connected_components, labels_from_probability, watershed_split


def disk(shape, cy, cx, r):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def test_two_touching_disks_are_split_in_two():
    m = disk((60, 90), 30, 28, 15) | disk((60, 90), 30, 56, 15)  # overlap: a waist, one component
    assert connected_components(m).max() == 1
    lab = watershed_split(m)
    assert lab.max() == 2 and lab.dtype == np.uint32
    # the cut is the waist at x = 42 (the midpoint of the centres), one line of background
    assert np.all(lab[:, 42] == 0)
    left, right = lab[30, 28], lab[30, 56]
    assert {left, right} == {1, 2}
    # each half holds about half of the mask (the line takes one column)
    sizes = np.bincount(lab.ravel())[1:]
    assert abs(sizes[0] - sizes[1]) <= 2 and sizes.sum() == m.sum() - m[:, 42].sum()


def test_a_single_disk_stays_whole_and_tiny_flat_particles_are_kept():
    m = disk((50, 50), 25, 25, 12)
    m[2, 2] = True  # a 1-pixel particle: its own seed or an unseeded component, never lost
    m[45:47, 45:48] = True
    lab = watershed_split(m)
    assert lab.max() == 3
    assert (lab > 0).sum() == m.sum()
    # raster order of the first pixel, as ImageJ numbers particles
    assert lab[2, 2] == 1 and lab[25, 25] == 2 and lab[45, 45] == 3


def test_probability_weighting_cuts_at_a_low_probability_gap():
    # a 10 x 40 bar, no waist: the distance map alone has one ridge; a low-probability column
    # (what a gap-trained network outputs between touching particles) splits it
    m = np.zeros((20, 60), bool)
    m[5:15, 10:50] = True
    p = np.where(m, 0.95, 0.0)
    assert watershed_split(m, p).max() == 1
    p[:, 29:31] = 0.55
    assert watershed_split(m, p).max() == 2
    assert watershed_split(m, p, weight_by_probability=False).max() == 1


def test_label_particles_modes_and_errors():
    p = np.zeros((20, 20))
    p[2:5, 2:5] = 0.9
    p[5:8, 5:8] = 0.9  # touches the first only diagonally
    assert labels_from_probability(p, 0.5, "none", connectivity=4).max() == 2
    assert labels_from_probability(p, 0.5, "none", connectivity=8).max() == 1
    assert labels_from_probability(np.zeros((5, 5)), 0.5, "watershed").max() == 0
    with pytest.raises(InputError, match="separate"):
        labels_from_probability(p, 0.5, "magic")
    with pytest.raises(InputError, match="h > 0"):
        watershed_split(p > 0.5, h=0)
