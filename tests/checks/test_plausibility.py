"""Issue 15, case 4: a segmentation that is almost certainly wrong (an all-white frame, an inverted
mask) is flagged in the outputs (particles.json, summary.csv, analysis.json, report.html), through
``warnings`` and as ``warning: ...`` on the command line; the bundled examples are not flagged."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import tifffile
from click.testing import CliRunner

from tio2fiji.checks import ResultWarning, plausibility_warnings
from tio2fiji.cli import main
from tio2fiji.io import read_mask
from tio2fiji.models.checkpoint import DEFAULT_MODEL
from tio2fiji.run import measure_files

EXAMPLES = "examples/data"


def test_rule_by_hand():
    # 100 x 100 frame: 61 % foreground warns, 59 % does not; one particle of 26 % warns
    assert plausibility_warnings(5900, [100] * 59, 100, 100, warn=False) == []
    fg = plausibility_warnings(6100, [100] * 61, 100, 100, "x.tif", warn=False)
    assert len(fg) == 1 and fg[0].startswith("x.tif: 61% of the analysed area is particle")
    big = plausibility_warnings(3000, [2600, 400], 100, 100, warn=False)
    assert len(big) == 1 and "one particle covers 26% of the analysed area" in big[0]
    with pytest.warns(ResultWarning, match="inverted"):
        plausibility_warnings(9000, [9000], 100, 100)


@pytest.fixture
def inverted_mask(tmp_path, example_masks):
    p = tmp_path / "1908248_m.tif"
    tifffile.imwrite(p, np.where(read_mask(example_masks[0]), 0, 255).astype(np.uint8))
    return p


def test_inverted_mask_is_flagged_in_particles_json(inverted_mask, tmp_path):
    with pytest.warns(ResultWarning) as caught:
        res = measure_files([inverted_mask], out_dir=tmp_path / "o", images_dir=f"{EXAMPLES}/SEM")
    meta = json.loads((tmp_path / "o" / "particles.json").read_text())
    warned = meta["images"][0]["warnings"]
    # the inverted 1908248 mask: ~90 % of the 1024 x 704 analysed area, in one particle
    assert any("of the analysed area is particle" in w for w in warned)
    assert any("one particle covers" in w for w in warned)
    assert {str(w.message) for w in caught} == set(warned)
    assert len(res.tables[0]) > 0  # still measured: a warning, not a refusal


def test_cli_measure_prints_the_warning(inverted_mask, tmp_path):
    res = CliRunner().invoke(main, ["measure", str(inverted_mask), "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("warning: ")]
    assert len(lines) == 2 and "1908248_m.tif: " in lines[0] and "inverted" in lines[0]


def test_bundled_masks_are_not_flagged(example_masks, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResultWarning)
        measure_files(example_masks, out_dir=tmp_path / "o", images_dir=f"{EXAMPLES}/SEM")
    meta = json.loads((tmp_path / "o" / "particles.json").read_text())
    assert [m["warnings"] for m in meta["images"]] == [[], [], []]


def test_summary_and_report_show_the_warnings(tmp_path):
    from tio2fiji.report import summary_table, write_report

    parts = pd.DataFrame({"image": ["a.tif"], "Area": [90.0], "Circ.": [1.0], "Solidity": [1.0],
                          "FeretAngle": [0.0], "ECD": [10.7]})
    images = [{"image": "a.tif", "width": 10, "height": 10, "warnings": ["a.tif: 90% ... inverted?"]},
              {"image": "b.tif", "width": 10, "height": 10, "warnings": []}]
    summary = summary_table(parts, images, n_boot=10)
    assert list(summary["warnings"]) == ["a.tif: 90% ... inverted?", ""]
    dist = pd.DataFrame({"image": ["a.tif"], "method": ["monte-carlo"], "note": ["not testable: n_sim"]})
    page = write_report(tmp_path, summary, {"tio2fiji": "x"}, distribution=dist,
                        images=images).read_text(encoding="utf-8")
    block = page.split("id='warnings'")[1].split("</ul>")[0]
    assert "a.tif: 90% ... inverted?" in block and "a.tif: monte-carlo: not testable: n_sim" in block
    clean = write_report(tmp_path / "c", summary.iloc[1:], {"tio2fiji": "x"}, images=images[1:])
    assert "id='warnings'" not in clean.read_text(encoding="utf-8")


@pytest.mark.slow  # ~20 s on a busy 2-core machine (model load and inference)
@pytest.mark.skipif(not DEFAULT_MODEL.is_file(), reason="bundled model missing")
def test_all_white_frame_is_flagged_by_analyze(tmp_path):
    from tio2fiji.run import analyze_images

    white = tmp_path / "white.tif"
    tifffile.imwrite(white, np.full((256, 320), 255, np.uint8))
    with pytest.warns(ResultWarning, match="white.tif: .* of the analysed area is particle"):
        res = analyze_images([white], tmp_path / "o", n_boot=20, envelope_sims=0,
                             methods=("clark-evans",), allow_pixels=True)
    assert res.images[0]["warnings"]
    summary = pd.read_csv(tmp_path / "o" / "summary.csv", keep_default_na=False)
    assert "of the analysed area is particle" in summary.loc[0, "warnings"]
    meta = json.loads((tmp_path / "o" / "analysis.json").read_text())
    assert meta["images"][0]["warnings"] == res.images[0]["warnings"]
    page = (tmp_path / "o" / "report.html").read_text(encoding="utf-8")
    assert "id='warnings'" in page and "white.tif: " in page


@pytest.mark.slow
@pytest.mark.skipif(not DEFAULT_MODEL.is_file(), reason="bundled model missing")
def test_bundled_images_segmented_are_not_flagged(example_images, tmp_path):
    from tio2fiji.run import segment_files

    with warnings.catch_warnings():
        warnings.simplefilter("error", ResultWarning)
        res = segment_files(example_images, tmp_path / "seg")
    assert [i["warnings"] for i in res.inputs] == [[], [], []]
