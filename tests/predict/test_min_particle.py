"""The smallest particle a model reports (``ModelSettings.min_particle_px``), in its physical units."""

import numpy as np
import pytest
from test_whole_image import _Echo  # probability = input

from tio2fiji.errors import InputError
from tio2fiji.models import Model, ModelSettings
from tio2fiji.predict import segment
from tio2fiji.predict._segment import _drop_small_particles


def _labels():
    lab = np.zeros((40, 60), np.uint32)
    lab[0:5, 0:10] = 1  # 50 px
    lab[10:13, 0:3] = 2  # 9 px
    lab[20:22, 0:5] = 3  # 10 px
    lab[30:33, 20:33] = 4  # 39 px
    lab[0:4, 40:50] = 5  # 40 px
    return lab


def test_bound_in_the_models_pixels_converted_to_the_images():
    lab = _labels()
    st = ModelSettings(min_particle_px=10)  # at 7.34375 nm per pixel
    info = {}
    kept, mask = _drop_small_particles(lab, lab > 0, None, st, info)  # uncalibrated: the model's pixels
    assert sorted(np.bincount(kept.ravel())[1:]) == [10, 39, 40, 50] and np.array_equal(mask, kept > 0)
    assert info["min_particle"] == {"pixels": 10.0, "model_pixels": 10, "nm2": 539.3, "dropped": 1}
    info = {}
    kept, _ = _drop_small_particles(lab, lab > 0, 7.34375e-9 / 2, st, info)  # pixels 2x finer: 40 px
    assert sorted(np.bincount(kept.ravel())[1:]) == [40, 50] and info["min_particle"]["pixels"] == 40.0
    info = {}
    kept, _ = _drop_small_particles(lab, lab > 0, 7.34375e-9 * 2, st, info)  # 2x coarser: 2.5 px
    assert kept.max() == 5 and info["min_particle"]["dropped"] == 0
    info = {}
    kept, _ = _drop_small_particles(lab, lab > 0, None, ModelSettings(), info)  # files storing none
    assert kept is lab and info == {}


def test_segment_drops_slivers_and_stored_bounds_are_checked():
    img = np.zeros((64, 64), np.float32)
    img[10:20, 10:20] = 0.9  # 100 px
    img[40:42, 40:42] = 0.9  # 4 px
    keep_all = segment(Model(_Echo(), ModelSettings()), img, tile=64, overlap=16)
    assert keep_all.labels.max() == 2 and "min_particle" not in keep_all.info
    seg = segment(Model(_Echo(), ModelSettings(min_particle_px=10)), img, tile=64, overlap=16)
    assert seg.labels.max() == 1 and seg.info["min_particle"]["dropped"] == 1
    assert not seg.mask[40:42, 40:42].any() and seg.mask[10:20, 10:20].all()
    for bad in (0, 10.5, True, "10"):
        with pytest.raises(InputError, match="min_particle_px"):
            ModelSettings.from_config({"min_particle_px": bad})
    assert ModelSettings.from_config({"min_particle_px": 10}).min_particle_px == 10
