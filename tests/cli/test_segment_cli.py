"""`tio2fiji segment`: the files it writes for each image agree with each other and the image."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from click.testing import CliRunner

from tio2fiji.cli import main
from tio2fiji.io import read_labels, read_mask, read_sem
from tio2fiji.models.checkpoint import DEFAULT_MODEL

pytestmark = pytest.mark.skipif(not DEFAULT_MODEL.is_file(), reason="bundled model missing")
EX = Path(__file__).resolve().parents[2] / "examples" / "data" / "SEM"


def test_segment_writes_consistent_mask_labels_scores_rois_and_probability(tmp_path):
    from tio2fiji.particles import read_roi_zip

    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"II*\x00not really a tiff")
    out = tmp_path / "seg"
    res = CliRunner().invoke(main, ["segment", str(EX / "1908252.tif"), str(bad), "--out", str(out),
                                    "--rois", "--probability", "--threads", "1"])
    # the broken file is reported, the good one written, and the exit code says something failed
    assert res.exit_code == 1
    assert "broken.tif" in res.output and "1 of 2 file(s) failed" in res.output
    sem = read_sem(EX / "1908252.tif")
    labels = read_labels(out / "1908252_labels.tif")
    mask = read_mask(out / "1908252_mask.tif")
    prob = tifffile.imread(out / "1908252_prob.tif")
    scores = pd.read_csv(out / "1908252_scores.csv")
    assert labels.shape == mask.shape == prob.shape == sem.analysed.shape  # data bar excluded
    np.testing.assert_array_equal(mask, labels > 0)
    n = int(labels.max())
    assert n > 50 and len(scores) == n and list(scores["label"]) == list(range(1, n + 1))
    np.testing.assert_array_equal(scores["area_px"], np.bincount(labels.ravel())[1:])
    # a particle's score is its mean probability, and particles are where the probability is high
    lab = 7
    assert scores["score"].iloc[lab - 1] == pytest.approx(prob[labels == lab].mean(), rel=1e-5)
    # the default's stored threshold decides (the distance U-Net's: 0.4)
    from tio2fiji.models.checkpoint import load_model

    threshold = load_model("default").settings.threshold
    assert threshold == pytest.approx(0.4)
    assert prob[mask].min() > threshold - 1e-6 and (prob[~mask] <= threshold + 1e-6).mean() > 0.99
    assert f"1908252: {n} particles" in res.output
    assert len(read_roi_zip(out / "1908252_rois.zip")) == n
    # calibration travels with the label image
    assert tifffile.TiffFile(out / "1908252_labels.tif").imagej_metadata.get("unit") in ("nm", "micron", "µm", "um")


def test_same_stem_from_two_folders_gets_two_sets_of_files(tmp_path):
    import json
    import shutil

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    shutil.copy(EX / "1908252.tif", tmp_path / "a" / "x.tif")
    # a different image under the same name: if one overwrote the other, the labels would agree
    shutil.copy(EX / "1908256.tif", tmp_path / "b" / "x.tif")
    out = tmp_path / "seg"
    res = CliRunner().invoke(main, ["segment", str(tmp_path / "a" / "x.tif"), str(tmp_path / "b" / "x.tif"),
                                    "--out", str(out), "--threads", "1"])
    assert res.exit_code == 0, res.output
    first, second = read_labels(out / "x_labels.tif"), read_labels(out / "x_2_labels.tif")
    assert not np.array_equal(first, second)
    meta = json.loads((out / "segment.json").read_text())
    assert [m["image"] for m in meta["images"]] == ["a/x.tif", "b/x.tif"]
    assert [Path(m["files"]["labels"]).name for m in meta["images"]] == ["x_labels.tif", "x_2_labels.tif"]
    assert meta["failures"] == [] and meta["versions"]["tio2fiji"]
