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
