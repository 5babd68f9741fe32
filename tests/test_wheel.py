"""A user's ordinary install: the wheel built from the repository, installed (not editable), runs.

The wheel is built from a copy of the checkout's files (``pip wheel --no-deps``, without build
isolation: no network), installed with ``pip install --no-deps --target`` into a temporary folder,
and its ``tio2fiji`` script is run from another folder with that folder first on ``PYTHONPATH``
(torch and the other dependencies come from this virtual environment). Every check first proves
that the installed files, not the repository's, were imported; then the installed copy runs the
demo on one bundled image (the bundled model), and the ImageJ macro route (BioVoxxel's test as an
ImageJ macro, read from the package data), whose statistic must equal the native port's.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tio2fiji import distribution as D
from tio2fiji.imagej import MACRO_FILES
from tio2fiji.io import read_mask
from tio2fiji.particles import measure

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "data"
PIXEL = 7.34375e-9

pytestmark = pytest.mark.slow


def _sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``(target folder, environment)`` of the installed wheel."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.splitlines()
    for rel in files:  # the repository's files as they are now (committed or not), nothing ignored
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    dist = tmp / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    subprocess.run([*pip, "wheel", str(src), "--no-deps", "--no-build-isolation", "-w", str(dist), "-q"],
                   cwd=tmp, check=True, capture_output=True)
    (wheel,) = dist.glob("tio2fiji-*.whl")
    target = tmp / "site"
    subprocess.run([*pip, "install", "--no-deps", "--no-compile", "--target", str(target), str(wheel), "-q"],
                   cwd=tmp, check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    return target, env


def _run(installed, *args, cwd):
    target, env = installed
    return subprocess.run([str(target / "bin" / "tio2fiji"), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_installed_wheel_is_what_runs_and_ships_the_macros(installed, tmp_path):
    target, env = installed
    code = ("import tio2fiji, tio2fiji.distribution as D; print(tio2fiji.__file__); print(D.macro_path())")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert Path(out[0]).is_relative_to(target), out  # the installed copy, not the checkout
    assert Path(out[1]) == target / "tio2fiji" / "macros" / "BioVoxxel_Particle_Distribution.ijm"
    for name in MACRO_FILES:
        assert _sha(target / "tio2fiji" / "macros" / name) == _sha(ROOT / "tio2fiji" / "macros" / name)
    for name in ("unet_border.pt", "unet_watershed.pt"):
        assert _sha(target / "tio2fiji" / "data" / name) == _sha(ROOT / "tio2fiji" / "data" / name)


def test_installed_demo_runs_on_one_image(installed, tmp_path):
    """``tio2fiji demo`` from the wheel: without --data a one-line refusal (the example images are not
    in the wheel), with --data on one bundled image the whole job with the installed model; the
    particle table's areas are those the checkout's ``measure`` gives on the mask it wrote."""
    res = _run(installed, "demo", "--out", tmp_path / "none", cwd=tmp_path)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("error: the example images are not installed")
    data = tmp_path / "data"
    (data / "SEM").mkdir(parents=True)
    shutil.copy2(EXAMPLES / "SEM" / "1908248.tif", data / "SEM")
    out = tmp_path / "demo-out"
    res = _run(installed, "demo", "--data", data, "--out", out, cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    meta = json.loads((out / "analysis.json").read_text())
    assert meta["model"]["sha256"] == _sha(installed[0] / "tio2fiji" / "data" / "unet_border.pt")  # the default
    (image,) = meta["images"]
    assert image["pixel_size_m"] == PIXEL and image["pixel_size_source"] == "CZ_SEM"
    table = pd.read_csv(out / "particles.csv")
    assert len(table) == image["particles"] > 50
    expected = measure(read_mask(out / "1908248_mask.tif"), pixel_size_m=PIXEL, connectivity=4)
    assert len(expected) == len(table)
    assert (table["Area"].to_numpy() == expected["Area"].to_numpy()).all()
    assert (out / "report.html").is_file()


def test_installed_macro_route_equals_native(installed, tmp_path):
    """The ImageJ macro route of the installed copy (``distribution --backend imagej --method
    biovoxxel`` runs tio2fiji/macros/BioVoxxel_Particle_Distribution.ijm in ImageJ) gives the native
    port's statistic on the bundled mask."""
    mask = EXAMPLES / "masks" / "1908248_m.tif"
    out = tmp_path / "dist"
    res = _run(installed, "distribution", mask, "--method", "biovoxxel", "--backend", "imagej",
               "--pixel-size", "7.34375nm", "--out", out, cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    row = pd.read_csv(out / "distribution.csv").iloc[0]
    native = D.test_distribution(read_mask(mask), method="biovoxxel", pixel_size_m=PIXEL, backend="native")
    assert row["backend"] == "imagej" and row["n"] == native["n"] > 50
    assert row["statistic"] == pytest.approx(native["statistic"], rel=1e-12)
    assert row["classification"] == native["classification"]
