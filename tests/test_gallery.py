"""The gallery (examples/plot_*.py) runs top to bottom on the bundled data and writes what it says.

Every script runs in its own process, as a user runs it (``python examples/plot_x.py``), in fast
mode (``TIO2FIJI_GALLERY_FAST=1``: the training scripts train for one step or epoch), with its
outputs in a temporary folder and no model hub.
"""

import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPTS = sorted(EXAMPLES.glob("plot_*.py"))
#: Scripts that take more than ~20 s even in fast mode.
SLOW = {"plot_thesis_tables.py", "plot_train_unet_thesis_mode.py"}


def _png(out, name):
    path = out / name
    assert path.is_file(), f"{name} not written"
    from PIL import Image

    with Image.open(path) as im:
        assert im.format == "PNG" and min(im.size) >= 200, (im.format, im.size)
        assert np.asarray(im.convert("L")).std() > 5, f"{name} is blank"


def _csv(out, name, **kw):
    path = out / name
    assert path.is_file(), f"{name} not written"
    return pd.read_csv(path, **kw)


def check_imagej_results_table(out):
    _png(out, "imagej_results_table.png")
    diff = _csv(out, "imagej_comparison.csv", index_col="column")
    assert {"Area", "Perim.", "Feret", "Solidity", "Major", "Angle"} <= set(diff.index)
    assert diff["max_rel"].max() <= 1e-9, diff["max_rel"].idxmax()
    assert diff["n_outside"].sum() == 0
    counts = _csv(out, "imagej_counts.csv").set_index("table")["particles"]
    assert counts["tio2fiji.measure"] == counts["ImageJ ParticleAnalyzer"] > 100
    # 8-connectivity merges the manual mask's particles across their one-pixel gaps
    assert counts["tio2fiji.measure, connectivity 8"] < counts["tio2fiji.measure"]
    native = _csv(out, "imagej_results_native.csv")
    assert len(native) == counts["tio2fiji.measure"] and len(_csv(out, "imagej_results_imagej.csv")) == len(native)


def check_thesis_tables(out):
    _png(out, "thesis_ecd_histograms.png")
    t8 = _csv(out, "thesis_table8.csv", dtype={"image": str})
    assert sorted(t8["image"]) == ["1908248", "1908252", "1908256"]
    assert (t8["particles"] > 20).all()
    assert t8["area_coverage_pct"].between(1, 60).all()
    assert t8["circularity_mean"].between(0, 1).all() and t8["solidity_mean"].between(0, 1).all()
    assert (t8["ECD_median_ci_low"] <= t8["ECD_median"]).all() and (t8["ECD_median"] <= t8["ECD_median_ci_high"]).all()
    t9 = _csv(out, "thesis_table9.csv", dtype={"image": str})
    assert sorted(t9["method"]) == ["biovoxxel"] * 3 + ["clark-evans"] * 3
    assert (t9["n"] > 20).all() and t9["classification"].notna().all()
    particles = _csv(out, "thesis_particles.csv", dtype={"image": str})
    assert particles.groupby("image").size().to_dict() == dict(zip(t8["image"], t8["particles"]))


def check_unet_vs_maskrcnn(out):
    _png(out, "unet_vs_maskrcnn.png")
    t = _csv(out, "unet_vs_maskrcnn.csv", dtype={"image": str})
    assert set(t["model"]) == {"U-Net (default)", "Mask R-CNN (maskrcnn)"}
    assert t["iou"].between(0, 1).all() and (t["n_gt"] > 0).all()
    assert (t.groupby("image")["n_gt"].nunique() == 1).all()  # the same manual particles for both
    assert (t["matched"] <= np.minimum(t["n_pred"], t["n_gt"])).all()
    # both bundled models on one of their training images (fast mode, a 256x256 crop: measured
    # IoU 0.90 / 0.65, F1 0.84 / 0.54); an untrained or wrongly scaled network scores near 0
    unet, mrcnn = t.set_index("model").loc["U-Net (default)"], t.set_index("model").loc["Mask R-CNN (maskrcnn)"]
    assert unet["iou"] > 0.75 and unet["f1"] > 0.6
    assert mrcnn["iou"] > 0.5 and mrcnn["f1"] > 0.4


def check_train_unet_thesis_mode(out):
    _png(out, "train_unet_thesis_mode.png")
    h = _csv(out, "train_unet_history.csv")
    assert list(h.columns[:4]) == ["epoch", "train_loss", "val_loss", "val_iou"]
    assert len(h) >= 1 and np.isfinite(h[["train_loss", "val_loss", "val_iou"]].to_numpy()).all()


CHECKS = {name[len("check_"):]: fn for name, fn in dict(globals()).items() if name.startswith("check_")}


def test_every_script_is_checked_and_listed():
    index = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    assert SCRIPTS
    for script in SCRIPTS:
        assert script.stem[len("plot_"):] in CHECKS, f"{script.name}: add a check_ function here"
        assert f"`{script.name}`" in index, f"{script.name}: list it in examples/README.md"
        doc = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8")))
        assert doc, f"{script.name}: needs a docstring (title line and a paragraph)"
        title, underline = doc.strip().splitlines()[:2]
        assert set(underline) == {"="} and len(underline) >= len(title), f"{script.name}: title"


@pytest.mark.parametrize("script", [
    pytest.param(s, id=s.stem, marks=[pytest.mark.slow] if s.name in SLOW else [])
    for s in SCRIPTS])
def test_gallery_script_runs(script, tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, TIO2FIJI_GALLERY_FAST="1", TIO2FIJI_GALLERY_OUT=str(out),
               HF_HUB_OFFLINE="1", MPLBACKEND="Agg", TMPDIR=str(tmp_path))  # no leftovers on failure
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, f"{script.name} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    CHECKS[script.stem[len("plot_"):]](out)
    assert not (tmp_path / "gallery-out").exists()  # everything went to TIO2FIJI_GALLERY_OUT
