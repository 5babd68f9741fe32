"""Tiled inference against whole-image inference with the bundled U-Net on a bundled SEM image."""

from pathlib import Path

import numpy as np
import pytest
import torch

from tio2fiji.io import read_sem
from tio2fiji.models.checkpoint import DEFAULT_MODEL, load_model
from tio2fiji.predict import predict_probability

pytestmark = pytest.mark.skipif(not DEFAULT_MODEL.is_file(), reason="bundled model missing")

EX = Path(__file__).resolve().parents[2] / "examples" / "data" / "SEM"


@pytest.fixture(scope="module")
def case():
    torch.manual_seed(0)
    model = load_model("default")
    img = read_sem(EX / "1908248.tif").analysed[:256, :768]  # 1 x 3 tiles, two vertical seams
    x = torch.from_numpy((img / 255.0).astype(np.float32))[None, None]
    with torch.no_grad():
        whole = torch.sigmoid(model.net(x))[0, 0].numpy()  # the image in one pass: no seams at all
    near = np.zeros(img.shape, bool)
    for k in (256, 512):
        near[:, k - 8:k + 8] = True
    return model, img, whole, near


def test_overlapping_tiles_equal_whole_image_prediction(case):
    model, img, whole, near = case
    # float32 as the whole-image reference (the default's int8 graph adds its own, seam-free noise)
    blend = predict_probability(model, img, tile=256, overlap=64, mode="blend", engine="onnx")
    # measured: 0.004 % of mask pixels and a mean |dp| of 1e-4 (context differs only far from a pixel)
    assert np.mean((blend > 0.5) != (whole > 0.5)) < 5e-4
    assert np.abs(blend - whole).mean() < 1e-3
    # and nothing special happens at the tile borders
    d = np.abs(blend - whole)
    assert d[near].mean() < 3 * d[~near].mean() + 1e-4


def test_thesis_tiles_have_measurable_seams(case):
    model, img, whole, near = case
    thesis = predict_probability(model, img, tile=256, mode="thesis")
    d = np.abs(thesis - whole)
    seam, rest = d[near].mean(), d[~near].mean()
    # measured on this image: seam error ~0.01 (max ~0.9), ~25x the error away from the seams
    assert seam > 5 * rest
    assert d.max() > 0.3
    blend = predict_probability(model, img, tile=256, overlap=64, mode="blend")
    assert np.mean((thesis > 0.5) != (whole > 0.5)) > np.mean((blend > 0.5) != (whole > 0.5))
