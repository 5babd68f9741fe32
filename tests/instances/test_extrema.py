"""h-maxima without a sort (instances._extrema): the same maxima as scikit-image's, and the
hand-counted case of its documentation."""

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.morphology import h_maxima as skimage_h_maxima

from tio2fiji.instances import connected_components
from tio2fiji.instances._extrema import h_maxima


def test_h_maxima_by_hand():
    """skimage's docstring example: four plateaus of heights 1, 21, 41, 61, 81 above their
    saddles on a paraboloid; h = 40 keeps the three highest (one is the global maximum)."""
    w = 10
    x, y = np.mgrid[0:w, 0:w]
    f = 20 - 0.2 * ((x - w / 2) ** 2 + (y - w / 2) ** 2)
    f[2:4, 2:4] = 40
    f[2:4, 7:9] = 60
    f[7:9, 2:4] = 80
    f[7:9, 7:9] = 100
    f = f.astype(float)
    peaks = h_maxima(f, 40.0)
    assert connected_components(peaks > 0, 8).max() == 3
    assert peaks[2:4, 2:4].sum() == 0 and peaks[7:9, 7:9].all() and peaks[2:4, 7:9].all()
    assert h_maxima(f, 1000.0).sum() == 0  # h above the range: nothing


@pytest.mark.parametrize("seed", range(12))
def test_h_maxima_equals_scikit_image(seed):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(3, 90)), int(rng.integers(3, 90)))
    image = ndi.gaussian_filter(rng.random(shape), rng.uniform(0.0, 3.0))
    if seed % 3 == 0:  # a distance map of blobs, as the watershed sees it
        image = ndi.distance_transform_edt(rng.random(shape) > 0.3)
    for h in (1e-3, 0.05, 0.5, 2.0):
        expected = skimage_h_maxima(image, h)
        got = h_maxima(image, h)
        assert got.dtype == expected.dtype and np.array_equal(got, expected), (seed, h)
