"""`tio2fiji distribution` on the bundled masks: the window excludes the data bar, units are nm."""

import pandas as pd
import pytest
from click.testing import CliRunner

from tio2fiji.cli import main
from tio2fiji.distribution import COLUMNS


def test_distribution_cli_on_bundled_masks(tmp_path, example_masks, example_images):
    out = tmp_path / "d"
    res = CliRunner().invoke(main, ["distribution", *map(str, example_masks[:2]), "--images",
                                    str(example_images[0].parent), "--out", str(out),
                                    "--method", "clark-evans", "--method", "biovoxxel"])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "distribution.csv")
    assert list(table.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert len(table) == 4 and set(table["method"]) == {"clark-evans", "biovoxxel"}
    ce = table[table["method"] == "clark-evans"].iloc[0]
    bv = table[table["method"] == "biovoxxel"].iloc[0]
    # sound test: window = analysed area (1024 x 704 px) in nm^2
    assert ce["area"] == pytest.approx(1024 * 704 * 7.34375 ** 2)
    # BioVoxxel: the whole (analysed) image in pixels, E = 0.5 sqrt(A/n)
    assert bv["area"] == 1024 * 704
    assert bv["expected_nnd"] == pytest.approx(0.5 * (1024 * 704 / bv["n"]) ** 0.5)
    assert (out / "distribution.json").is_file()


def test_centroids_of_a_mask_use_the_connectivity_of_measure(tmp_path, monkeypatch):
    # a 6 x 6 checkerboard of 3 x 3 squares: 18 squares that touch only at corners. By hand: 18
    # particles 4-connected (measure's default), one 8-connected. Before, distribution's
    # centroids labelled 8-connected and found 1 point where measure found 18 particles.
    import json

    import numpy as np
    import tifffile
    from test_complete import use_tiny_classifier

    use_tiny_classifier(tmp_path, monkeypatch)
    mask = np.zeros((40, 40), np.uint8)
    for r in range(6):
        for c in range(6):
            if (r + c) % 2 == 0:
                mask[5 + 3 * r:8 + 3 * r, 5 + 3 * c:8 + 3 * c] = 255
    path = tmp_path / "diag_m.tif"
    tifffile.imwrite(path, mask)
    runner = CliRunner()
    res = runner.invoke(main, ["measure", str(path), "--pixel-size", "2nm", "--out", str(tmp_path / "m")])
    assert res.exit_code == 0, res.output
    n_measure = len(pd.read_csv(tmp_path / "m" / "particles.csv"))
    assert n_measure == 18
    res = runner.invoke(main, ["distribution", str(path), "--pixel-size", "2nm", "--points", "centroid",
                               "--out", str(tmp_path / "d")])
    assert res.exit_code == 0, res.output
    row = pd.read_csv(tmp_path / "d" / "distribution.csv").iloc[0]
    assert row["n"] == n_measure == 18 and row["connectivity"] == 4 and row["points"] == "centroid"
    assert json.loads((tmp_path / "d" / "distribution.json").read_text())["connectivity"] == 4
    # the option: 8-connected, the whole checkerboard is one particle (too few points)
    res = runner.invoke(main, ["distribution", str(path), "--pixel-size", "2nm", "--points", "centroid",
                               "--connectivity", "8", "--out", str(tmp_path / "d8")])
    assert res.exit_code == 0, res.output
    row8 = pd.read_csv(tmp_path / "d8" / "distribution.csv").iloc[0]
    assert row8["n"] == 1 and row8["connectivity"] == 8 and row8["classification"] == "too few points"
