"""Inputs of the same name (issue 15, case 7): no output overwrites another, tables tell them apart."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from click.testing import CliRunner

from tio2fiji.cli import main
from tio2fiji.run import unique_names

EX = Path(__file__).resolve().parents[2] / "examples" / "data"


def test_names_use_the_shortest_path_ending_that_differs():
    paths = [Path("p/a/x.tif"), Path("q/a/x.tif"), Path("b/x.tif"), Path("y.tif")]
    assert [n for n, _ in unique_names(paths)] == ["p/a/x.tif", "q/a/x.tif", "b/x.tif", "y.tif"]
    # absolute paths: still only as long as needed
    abs_paths = [Path("/data/run1/a/m.tif"), Path("/data/run2/a/m.tif")]
    assert [n for n, _ in unique_names(abs_paths)] == ["run1/a/m.tif", "run2/a/m.tif"]
    # the same file twice
    assert [n for n, _ in unique_names([Path("a/x.tif"), Path("a/x.tif")])] == ["a/x.tif", "a/x.tif #2"]


def test_stems_never_collide_not_even_with_another_input_or_by_case():
    # x_2.tif keeps its own stem, so b/x.tif cannot take it
    stems = [s for _, s in unique_names([Path("a/x.tif"), Path("b/x.tif"), Path("x_2.tif")])]
    assert stems == ["x", "x_3", "x_2"]
    # X.tif and x.tif are one file on a case-insensitive disk
    assert [s for _, s in unique_names([Path("X.tif"), Path("d/x.tif")])] == ["X", "x_2"]
    assert [s for _, s in unique_names([Path("a/x.tif"), Path("b/x.png")])] == ["x", "x_2"]


def _two_masks(tmp_path, folders=("a", "b")):
    paths = []
    for k, folder in enumerate(folders):
        d = tmp_path.joinpath(*folder.split("/"))
        d.mkdir(parents=True)
        m = np.zeros((64, 64), np.uint8)
        for j in range(k + 1):  # 1 particle in the first mask, 2 in the second
            m[5 + 30 * j:15 + 30 * j, 5:15] = 255
        tifffile.imwrite(d / "m.tif", m)
        paths.append(d / "m.tif")
    return paths


def test_measure_table_names_same_named_masks_by_their_folder(tmp_path):
    masks = _two_masks(tmp_path)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["measure", *map(str, masks), "--out", str(out)])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "particles.csv")
    assert table.groupby("image").size().to_dict() == {"a/m.tif": 1, "b/m.tif": 2}
    meta = json.loads((out / "particles.json").read_text())
    assert [(i["name"], i["particles"]) for i in meta["images"]] == [("a/m.tif", 1), ("b/m.tif", 2)]
    assert "a/m.tif: 1 particles" in res.output and "b/m.tif: 2 particles" in res.output


def test_distribution_table_names_masks_by_the_folders_that_differ(tmp_path):
    masks = _two_masks(tmp_path, folders=("p/a", "q/a"))
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["distribution", *map(str, masks), "--out", str(out)])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "distribution.csv")
    assert table[["image", "n"]].values.tolist() == [["p/a/m.tif", 1], ["q/a/m.tif", 2]]


@pytest.mark.slow  # the network, on three crops
def test_segment_same_named_images_get_their_own_files(tmp_path):
    from tio2fiji.io import read_labels
    from tio2fiji.models.checkpoint import DEFAULT_MODEL

    if not DEFAULT_MODEL.is_file():
        pytest.skip("bundled model missing")
    sem = tifffile.imread(EX / "SEM" / "1908252.tif")
    crops = {"a/x.tif": sem[:256, :256], "b/x.tif": sem[256:512, :256], "x_2.tif": sem[:256, 256:512]}
    paths = []
    for rel, crop in crops.items():
        p = tmp_path.joinpath(*rel.split("/"))
        p.parent.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(p, crop)
        paths.append(p)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["segment", *map(str, paths), "--out", str(out), "--threads", "1"])
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "segment.json").read_text())
    assert [(m["image"], m["stem"]) for m in meta["images"]] == [
        ("a/x.tif", "x"), ("b/x.tif", "x_3"), ("x_2.tif", "x_2")]
    labels = {s: read_labels(out / f"{s}_labels.tif") for s in ("x", "x_3", "x_2")}
    # three different crops: had one overwritten another, two label images would be equal
    assert not np.array_equal(labels["x"], labels["x_3"])
    assert not np.array_equal(labels["x"], labels["x_2"])
    assert not np.array_equal(labels["x_3"], labels["x_2"])
    assert f"x_3: {int(labels['x_3'].max())} particles (from b/x.tif)" in res.output
    assert "wrote 3 image(s)" in res.output
