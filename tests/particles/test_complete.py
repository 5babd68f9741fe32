"""Complete particles: features by hand, each particle-table row scored as its own particle, the
summary's all/complete rows, `--complete-only`, and fitting the classifier.

No test depends on the bundled classifier's numbers: :data:`TINY` is a hand-made classifier
(complete unless the particle lies against another one or on the image border), written to a
temporary JSON that stands in for the bundled file (:func:`use_tiny_classifier`).
"""

import json
import math

import numpy as np
import pandas as pd
import pytest
import tifffile
from click.testing import CliRunner

from tio2fiji.cli import main
from tio2fiji.errors import InputError
from tio2fiji.instances import labels_to_separated_mask
from tio2fiji.particles import (
    FEATURES,
    add_complete_columns,
    complete_scores,
    load_classifier,
    measure,
    measured_labels,
    particle_features,
)
from tio2fiji.particles import _complete as complete
from tio2fiji.report import _summary as S
from tio2fiji.run import measure_files

#: Standardisation off (mean 0, scale 1): logit = 5 - 20 * contact_fraction - 10 * touches_border,
#: so a particle is complete (p >= 0.5) when less than a quarter of its surroundings is another
#: particle and it does not touch the image border.
TINY = {"features": list(FEATURES), "mean": [0.0] * 7, "scale": [1.0] * 7,
        "coef": [0.0, 0.0, 0.0, 0.0, -20.0, -10.0, 0.0], "intercept": 5.0, "threshold": 0.5,
        "made_by": "tests/particles/test_complete.py"}


def use_tiny_classifier(tmp_path, monkeypatch, clf=TINY):
    """Make :data:`TINY` the bundled classifier for one test; returns it."""
    path = tmp_path / "complete_classifier.json"
    path.write_text(json.dumps(clf))
    monkeypatch.setattr(complete, "DEFAULT_CLASSIFIER", path)
    return clf


@pytest.fixture(autouse=True)
def tiny_classifier(tmp_path, monkeypatch):
    return use_tiny_classifier(tmp_path, monkeypatch)


def _feature(x, row, name):
    return x[row, FEATURES.index(name)]


# --------------------------------------------------------------------------------------------------
# features by hand


def test_features_of_an_isolated_rectangle():
    lab = np.zeros((20, 20), np.int32)
    lab[5:9, 4:10] = 1  # 4 rows x 6 columns, away from the border
    x = particle_features(lab)
    assert x.shape == (1, len(FEATURES))
    assert _feature(x, 0, "log_area") == pytest.approx(math.log(24))
    assert _feature(x, 0, "solidity") == pytest.approx(1.0)
    assert _feature(x, 0, "extent") == pytest.approx(1.0)
    # ellipse of the same second moments: a run of n pixels has variance (n² - 1) / 12
    assert _feature(x, 0, "aspect_ratio") == pytest.approx(math.sqrt((6 ** 2 - 1) / (4 ** 2 - 1)))
    assert _feature(x, 0, "contact_fraction") == 0.0
    assert _feature(x, 0, "touches_border") == 0.0
    assert _feature(x, 0, "log_relative_area") == pytest.approx(0.0)  # the median particle itself


def test_contact_fraction_of_a_particle_inside_a_ring():
    lab = np.zeros((14, 14), np.int32)
    lab[2:9, 2:9] = 2    # a 7x7 square ...
    lab[4:7, 4:7] = 1    # ... with a 3x3 particle in its middle
    lab[0:2, 11:14] = 3  # a 2x3 block in the corner, on the border, two pixels from the square's frame
    x = particle_features(lab)
    # the 3x3 particle's 16 outside neighbours all belong to label 2
    assert _feature(x, 0, "contact_fraction") == 1.0
    # the square's outside: the 32 pixels of the 9x9 frame around it (all background, none next to
    # another particle) and the 8 border pixels of the 3x3 particle (the other particle itself)
    assert _feature(x, 1, "contact_fraction") == pytest.approx(8 / 40)
    assert _feature(x, 1, "solidity") == pytest.approx(40 / 49)
    assert _feature(x, 1, "extent") == pytest.approx(40 / 49)
    assert [_feature(x, k, "touches_border") for k in range(3)] == [0.0, 0.0, 1.0]
    # areas 9, 40, 6: median 9
    np.testing.assert_allclose(x[:, FEATURES.index("log_relative_area")],
                               np.log([9 / 9, 40 / 9, 6 / 9]))


def test_missing_labels_get_zero_rows_and_do_not_shift_the_median():
    lab = np.zeros((12, 12), np.int32)
    lab[1:3, 1:3] = 1    # area 4
    lab[6:10, 6:10] = 3  # area 16; label 2 is missing
    x = particle_features(lab)
    assert (x[1] == 0).all()
    np.testing.assert_allclose(x[[0, 2], FEATURES.index("log_relative_area")], np.log([4 / 10, 16 / 10]))
    assert particle_features(np.zeros((4, 4), np.int32)).shape == (0, len(FEATURES))
    with pytest.raises(InputError, match="integer label image"):
        particle_features(np.zeros((4, 4), bool))


def test_scores_and_the_classifier_file(tmp_path):
    lab = np.zeros((11, 11), np.int32)
    lab[2:9, 2:9] = 2
    lab[4:7, 4:7] = 1
    s = complete_scores(lab, TINY)
    assert s == pytest.approx([1 / (1 + math.exp(15)), 1 / (1 + math.exp(-1))])  # logits -15 and 1
    # the bundled file (here the tiny one, see the autouse fixture) gives the same
    assert complete_scores(lab) == pytest.approx(s)
    assert load_classifier("default")["made_by"] == "tests/particles/test_complete.py"
    with pytest.raises(InputError, match="cannot read the complete-particle classifier"):
        load_classifier(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(dict(TINY, features=["log_area"])))
    with pytest.raises(InputError, match="not a complete-particle classifier"):
        load_classifier(bad)


# --------------------------------------------------------------------------------------------------
# every row gets its own particle's score


def scene():
    """A label image: 1 cut by the top border, 2 half hidden behind 3 (drawn over it), 4 and 5
    isolated. Raster order of the first pixels: 1, 4, 3, 2, 5 (not the label order)."""
    h, w = 64, 96
    yy, xx = np.mgrid[:h, :w]
    lab = np.zeros((h, w), np.int32)
    for v, (cy, cx, r) in enumerate([(0, 20, 6), (44, 30, 7), (40, 44, 13), (14, 70, 7), (48, 80, 7)], 1):
        lab[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = v
    return lab


def _label_at_centroids(table, lab):
    """The scene's label under each row's centroid (every particle here is convex enough)."""
    return [int(lab[int(y), int(x)]) for x, y in zip(table["X"], table["Y"])]


def test_hand_made_scene_features():
    x = particle_features(scene())
    contact = x[:, FEATURES.index("contact_fraction")]
    assert contact[1] > 0.3 and contact[2] < 0.2 and contact[3] == contact[4] == 0.0
    logit = 5 - 20 * contact - 10 * x[:, FEATURES.index("touches_border")]
    np.testing.assert_allclose(complete_scores(scene(), TINY), 1 / (1 + np.exp(-logit)))
    assert (complete_scores(scene(), TINY) >= 0.5).tolist() == [False, False, True, True, True]


@pytest.mark.parametrize("exclude_edges", [False, True])
def test_each_row_of_a_measured_mask_gets_its_own_particles_score(tmp_path, exclude_edges):
    lab = scene()
    mask = labels_to_separated_mask(lab, 4)  # one-pixel cut between 2 and 3, as the BAM masks
    p = tmp_path / "scene_m.tif"
    tifffile.imwrite(p, mask.astype(np.uint8) * 255)
    res = measure_files([p], out_dir=tmp_path / "o", connectivity=4, exclude_edges=exclude_edges)
    assert not res.failures
    table = pd.read_csv(tmp_path / "o" / "particles.csv")
    # rows in ImageJ's raster order, not the scene's label order
    expected = [4, 3, 2, 5] if exclude_edges else [1, 4, 3, 2, 5]
    assert _label_at_centroids(table, lab) == expected
    hidden = [v == 2 for v in expected]
    cut = [v == 1 for v in expected]
    assert table["complete"].tolist() == [not (a or b) for a, b in zip(hidden, cut)]
    assert table.loc[hidden, "complete_score"].item() < 0.3 < table.loc[~np.asarray(hidden) & ~np.asarray(cut),
                                                                          "complete_score"].min()
    assert table["complete_score"].dtype == float and table["complete"].dtype == bool
    meta = json.loads((tmp_path / "o" / "particles.json").read_text())
    assert meta["options"]["complete_only"] is False
    assert meta["images"][0]["complete_particles"] == int(table["complete"].sum())
    assert meta["complete_classifier"]["threshold"] == 0.5
    assert meta["complete_classifier"]["file"] == "complete_classifier.json"


def test_each_row_of_a_measured_label_image_gets_its_own_particles_score(tmp_path):
    lab = scene() * 10  # values 10..50, not 1..n
    p = tmp_path / "scene_labels.tif"
    tifffile.imwrite(p, lab.astype(np.uint16))
    res = measure_files([p], out_dir=tmp_path / "o", connectivity=4)
    table = res.tables[0]
    # a label image keeps its values; measure orders rows by first pixel, not by value
    assert table["label"].tolist() == [10, 40, 30, 20, 50]
    assert _label_at_centroids(table, lab) == [10, 40, 30, 20, 50]
    by_label = dict(zip(table["label"], table["complete_score"]))
    np.testing.assert_allclose([by_label[v] for v in (10, 20, 30, 40, 50)], complete_scores(scene(), TINY))
    assert table["complete"].tolist() == [False, True, True, False, True]


def test_measured_labels_rows_and_mismatches():
    lab = scene()
    table = measure(lab, connectivity=4)
    labels, rows = measured_labels(lab, table, connectivity=4)
    np.testing.assert_array_equal(labels, lab)  # already 1..n
    assert rows.tolist() == table["label"].tolist() == [1, 4, 3, 2, 5]
    with pytest.raises(InputError, match="labels are not those"):
        measured_labels(lab, table.assign(label=table["label"] + 100), connectivity=4)
    with pytest.raises(InputError, match="rows"):
        measured_labels(lab > 0, table.iloc[:2], connectivity=4)
    empty = measure(np.zeros((8, 8), bool))
    out, labels, rows = add_complete_columns(empty, np.zeros((8, 8), bool), TINY)
    assert len(out) == 0 and {"complete_score", "complete"} <= set(out.columns) and len(rows) == 0


def test_a_particle_in_a_hole_is_scored_with_the_one_it_is_merged_into():
    mask = np.zeros((16, 16), bool)
    mask[3:12, 3:12] = True
    mask[5:10, 5:10] = False  # a hole ...
    mask[7, 7] = True         # ... with a particle in it, which ImageJ merges (holes included)
    mask[13:15, 1:3] = True   # and one on its own
    table = measure(mask, connectivity=4)  # 4-connected tracing always includes holes
    assert len(table) == 2
    labels, rows = measured_labels(mask, table, connectivity=4)
    assert rows.tolist() == [1, 2] and labels[7, 7] == labels[3, 3] == 1 and labels[13, 1] == 2
    assert labels[6, 6] == 0  # the hole stays background: features see the particle's own pixels
    eight = measure(mask, connectivity=8)  # holes not included: three particles
    assert measured_labels(mask, eight, connectivity=8)[1].tolist() == [1, 2, 3]


def test_missing_classifier_stops_before_measuring(tmp_path, monkeypatch):
    monkeypatch.setattr(complete, "DEFAULT_CLASSIFIER", tmp_path / "none.json")
    p = tmp_path / "m.tif"
    tifffile.imwrite(p, (scene() > 0).astype(np.uint8) * 255)
    with pytest.raises(InputError, match="none.json: cannot read the complete-particle classifier"):
        measure_files([p], out_dir=tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_cli_measure_complete_only(tmp_path):
    p = tmp_path / "scene_m.tif"
    tifffile.imwrite(p, labels_to_separated_mask(scene(), 4).astype(np.uint8) * 255)
    res = CliRunner().invoke(main, ["measure", str(p), "--out", str(tmp_path / "all")])
    assert res.exit_code == 0, res.output
    assert "scene_m.tif: 5 particles, 3 complete" in res.output
    every = pd.read_csv(tmp_path / "all" / "particles.csv")
    assert len(every) == 5 and every["complete"].sum() == 3  # every particle, with its column
    res = CliRunner().invoke(main, ["measure", str(p), "--out", str(tmp_path / "o"), "--complete-only"])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(tmp_path / "o" / "particles.csv")
    assert len(table) == 3 and table["complete"].all()
    # the complete rows are the same particles, with the numbers they have among all particles
    cols = [c for c in table.columns if c in every.columns]
    expect = every[every["complete"]].reset_index(drop=True)[cols]
    pd.testing.assert_frame_equal(table[cols], expect)
    meta = json.loads((tmp_path / "o" / "particles.json").read_text())
    assert meta["options"]["complete_only"] is True


# --------------------------------------------------------------------------------------------------
# summary.csv: a row of all particles and one of the complete ones per image


def particles_with_complete():
    area = np.array([math.pi, 4 * math.pi, 9 * math.pi, 16 * math.pi])  # ECD 2, 4, 6, 8
    return pd.DataFrame({"image": ["a.tif"] * 4, "Area": area, "Circ.": [0.5, 0.7, 0.9, 0.3],
                         "Solidity": [0.8, 0.9, 1.0, 0.6], "FeretAngle": [10.0, 30.0, 50.0, 170.0],
                         "ECD": np.sqrt(4 * area / math.pi), "complete": [False, True, True, False]})


def test_summary_rows_of_all_and_complete_particles():
    meta = [{"image": "a.tif", "width": 10, "height": 20, "pixel_size_m": None, "foreground_px": 120},
            {"image": "b.tif", "width": 8, "height": 8, "pixel_size_m": None}]
    s = S.summary_table(particles_with_complete(), meta, n_boot=100)
    assert list(s.columns) == S.SUMMARY_COLUMNS
    assert list(zip(s["image"], s["particles_kind"])) == [("a.tif", "all"), ("a.tif", "complete"),
                                                          ("b.tif", "all"), ("b.tif", "complete")]
    a, c = s.iloc[0], s.iloc[1]
    assert (a["particles"], c["particles"]) == (4, 2)
    assert a["area_coverage_pct"] == pytest.approx(60.0)  # foreground_px: all particles
    assert c["area_coverage_pct"] == pytest.approx(100 * 13 * math.pi / 200)  # complete areas summed
    assert a["circularity_mean"] == pytest.approx(0.6) and c["circularity_mean"] == pytest.approx(0.8)
    assert c["solidity_mean"] == pytest.approx(0.95) and c["feret_angle_mean"] == pytest.approx(40.0)
    assert a["ECD_median"] == pytest.approx(5.0) and c["ECD_median"] == pytest.approx(5.0)
    assert a["ECD_mean"] == pytest.approx(5.0) and c["ECD_D10"] == pytest.approx(4.2)
    assert s.iloc[3]["particles"] == 0 and math.isnan(s.iloc[3]["ECD_median"])
    only = S.summary_table(particles_with_complete(), meta, n_boot=100, complete_only=True)
    assert list(only["particles_kind"]) == ["complete", "complete"]
    pd.testing.assert_frame_equal(only.iloc[[0]].reset_index(drop=True), s.iloc[[1]].reset_index(drop=True))
    # a table without the column (e.g. from tio2fiji.measure directly): one "all" row per image
    plain = S.summary_table(particles_with_complete().drop(columns="complete"), meta, n_boot=100)
    assert list(plain["particles_kind"]) == ["all", "all"]
    with pytest.raises(InputError, match="'complete' column"):
        S.summary_table(particles_with_complete().drop(columns="complete"), meta, complete_only=True)


def test_report_shows_the_complete_rows_and_says_what_they_are(tmp_path):
    from tio2fiji import report as R
    from tio2fiji.run import software_versions

    meta = [{"image": "a.tif", "width": 10, "height": 20, "pixel_size_m": None, "particles": 4,
             "complete_particles": 2}]
    for only, says in ((False, "Two rows per image"), (True, "Complete particles only")):
        s = S.summary_table(particles_with_complete(), meta, n_boot=50, complete_only=only)
        page = R.write_report(tmp_path / str(only), s, software_versions(), images=meta).read_text()
        assert says in page and "Complete particles" in page
        assert page.count("<td class=\"text\">complete</td>") == 2  # summary and size tables
        assert page.count("<td class=\"text\">all</td>") == (0 if only else 2)


# --------------------------------------------------------------------------------------------------
# fitting the classifier (tio2fiji.training.complete)


def test_fit_classifier_on_synthetic_scenes_separates_hidden_particles():
    from tio2fiji.training.complete import choose_threshold, complete_labels, fit_classifier

    rng = np.random.default_rng(0)
    labels_list, complete_list = [], []
    for _ in range(6):
        lab = scene()
        # shift the scene so that features vary a little between images
        lab = np.roll(lab, int(rng.integers(0, 3)), axis=1)
        complete_mask = np.isin(lab, [3, 4, 5])  # what a 2-class manual mask marks complete
        labels_list.append(lab)
        complete_list.append(complete_labels(lab, complete_mask))
    assert complete_list[0].tolist() == [False, False, True, True, True]
    clf = fit_classifier(labels_list, complete_list)
    assert clf["features"] == list(FEATURES) and clf["n_particles"] == 30 and clf["n_complete"] == 18
    json.dumps(clf)  # plain numbers
    s = complete_scores(scene(), clf)
    assert s[[0, 1]].max() < 0.5 < s[[2, 3, 4]].min()
    th, f1 = choose_threshold(s, [False, False, True, True, True])
    assert f1 == pytest.approx(1.0) and 0.2 <= th <= 0.8
    with pytest.raises(InputError, match="complete and incomplete"):
        fit_classifier([scene()], [np.ones(5, bool)])
