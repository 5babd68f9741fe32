"""The ImageJ macros in ``tio2fiji/macros/`` run in the real ImageJ and give the native route's numbers.

ImageJ 1.x runs as its own process, ``java -jar ij.jar -batch DRIVER.ijm``, under Xvfb: the macros
use menu commands (Analyze Particles, Ultimate Points, the ROI Manager), which need a display and
so cannot run in the headless JVM of the bridge. Nothing is mocked; only for the Segment macro the
network is replaced by a stand-in ``tio2fiji`` executable that writes the files the real
``tio2fiji segment`` writes (the real one runs in the slow test). ImageJ reads its preferences from a
temporary ``user.home``, so the user's own ImageJ settings are neither used nor changed.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tio2fiji import distribution as D
from tio2fiji.imagej import find_ij_jar
from tio2fiji.io import pixel_size_nm, read_mask, read_sem, write_mask
from tio2fiji.particles import ANGLE_COLUMNS, BIOVOXXEL_COLUMNS, IMAGEJ_COLUMNS, measure

ROOT = Path(__file__).resolve().parents[2]
MACROS = ROOT / "tio2fiji" / "macros"
ANALYSIS = MACROS / "TiO2_Particle_Analysis.ijm"
SEGMENT = MACROS / "TiO2_Segment.ijm"
BIOVOXXEL = MACROS / "BioVoxxel_Particle_Distribution.ijm"
EXAMPLES = ROOT / "examples" / "data"
PIXEL = 7.34375e-9


def _missing(reason: str):
    # scripts/setup.sh installs everything these tests need: in CI a missing piece is a failure
    if os.environ.get("CI"):
        pytest.fail(f"{reason} -- scripts/setup.sh should have installed it")
    pytest.skip(reason)


def _imagej_command():
    java = shutil.which("java")
    xvfb = shutil.which("xvfb-run")
    try:
        jar = find_ij_jar()
    except Exception as err:  # JavaNotFoundError: no ImageJ here
        _missing(f"ImageJ not installed: {err}")
    if java is None or xvfb is None:
        _missing("needs java and xvfb-run (Debian: default-jre xvfb) to run ImageJ's menu commands")
    if not (Path(java).resolve().parents[1] / "lib" / "libawt_xawt.so").is_file():
        # a headless JRE (Debian's default-jre-headless) cannot open windows, even on Xvfb
        _missing("needs a Java runtime with GUI support (Debian: default-jre) for ImageJ's menu commands")
    return [xvfb, "-a", "-s", "-screen 0 1280x1024x24", java, "-Xmx2g"], jar


def run_imagej(driver: str, workdir: Path, timeout: float = 120, imagej_dir=None) -> str:
    """Run macro code in a fresh ImageJ under Xvfb; return its Log window's text.

    ImageJ runs with its GUI (``-macro``), not in ``-batch`` mode: a macro called with
    ``runMacro`` from a batch-mode macro closes the caller's images when it ends (ImageJ 1.53t),
    and in the GUI the macros run as a user runs them from the menu.
    """
    prefix, jar = _imagej_command()
    home = workdir / "home"
    home.mkdir(parents=True, exist_ok=True)
    path = workdir / "driver.ijm"
    log_path = workdir / "imagej-log.txt"
    path.write_text(driver + f"\nFile.saveString(getInfo(\"log\"), {ijm(log_path)});\n"
                    'run("Quit");\n', encoding="utf-8")
    where = [f"-Dplugins.dir={imagej_dir}"] if imagej_dir is not None else []  # its plugins/ folder
    cmd = prefix + [f"-Duser.home={home}", *where, "-jar", str(jar), "-macro", str(path)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=workdir)
    except subprocess.TimeoutExpired as err:
        # a macro error opens a dialog that nobody closes: the run hangs instead of failing
        out = err.stdout.decode(errors="replace") if isinstance(err.stdout, bytes) else err.stdout
        raise AssertionError(f"ImageJ did not finish in {timeout} s (a macro error dialog?):\n"
                             f"{out}") from err
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert log_path.is_file(), f"the driver macro did not finish:\n{proc.stdout}{proc.stderr}"
    return log_path.read_text(encoding="utf-8")


def ijm(path) -> str:
    """A path as an ImageJ macro string literal."""
    return json.dumps(str(path))


def parse_return(text: str) -> dict:
    return D.parse_macro_return(text)


DUMP_RESULTS = """
function dumpResults(path) {
    f = File.open(path);
    headings = split(String.getResultsHeadings, "\\t");
    names = newArray(0);
    for (k = 0; k < headings.length; k++)
        if (headings[k] != " " && headings[k] != "") names = Array.concat(names, headings[k]);
    line = "";
    for (k = 0; k < names.length; k++) { if (k > 0) line = line + ","; line = line + names[k]; }
    print(f, line);
    for (i = 0; i < nResults; i++) {
        line = "";
        for (k = 0; k < names.length; k++) {
            if (k > 0) line = line + ",";
            line = line + String.format("%.17g", getResult(names[k], i));
        }
        print(f, line);
    }
    File.close(f);
}
"""


# --------------------------------------------------------------------------------------------
# masks: the bundled examples (with their data bar) and generated ones
# --------------------------------------------------------------------------------------------

def random_mask(rng, h, w, k, holes=False):
    yy, xx = np.mgrid[:h, :w]
    m = np.zeros((h, w), bool)
    for _ in range(k):
        cy, cx = rng.uniform(-5, h + 5), rng.uniform(-5, w + 5)
        a, b = rng.uniform(1.5, 16, 2)
        th = rng.uniform(0, np.pi)
        c, s = np.cos(th), np.sin(th)
        u = ((xx - cx) * c + (yy - cy) * s) / a
        v = (-(xx - cx) * s + (yy - cy) * c) / b
        m |= u * u + v * v <= 1
        if holes and a > 6 and b > 6:
            m &= ~((xx - cx) ** 2 + (yy - cy) ** 2 <= 4)  # a hole ...
            m[int(np.clip(cy, 0, h - 1)), int(np.clip(cx, 0, w - 1))] = True  # ... with an island
    return m


def analysis_cases(tmp: Path) -> list[dict]:
    """Each case: the file ImageJ opens, the macro's options, and what the native route gets."""
    cases = []
    for _i, mask_path in enumerate(sorted((EXAMPLES / "masks").glob("*_m.tif"))):
        sem = read_sem(EXAMPLES / "SEM" / mask_path.name.replace("_m.tif", ".tif"))
        assert sem.data_bar_rows == 64 and sem.pixel_size_m == PIXEL
        full = read_mask(mask_path)
        cases.append(dict(name=mask_path.stem, file=mask_path, set_scale=True, pixel_size_m=PIXEL,
                          mask=full[:-sem.data_bar_rows], data_bar=sem.data_bar_rows,
                          include=0, exclude=0, statistic="median", alpha=0.05, bug=1))
    # the first example again with include holes and exclude on edges
    cases.append(dict(cases[0], name="example-include-exclude", include=1, exclude=1))
    rng = np.random.default_rng(8)
    specs = [  # (h, w, k, holes, pixel size, include, exclude, statistic, alpha, bug)
        (120, 160, 30, True, None, 0, 0, "median", 0.05, 1),
        (120, 160, 30, True, 5e-9, 1, 0, "mean", 0.01, 1),
        (90, 200, 45, False, None, 0, 1, "median", 0.001, 0),
        (150, 110, 20, True, PIXEL, 1, 1, "mean", 0.05, 0),
        (40, 60, 6, False, None, 0, 0, "median", 0.05, 0),   # n < 11: Student branch
        (40, 60, 6, False, None, 0, 0, "median", 0.05, 1),   # ... with the Java bug: T = inf
    ]
    for j, (h, w, k, holes, ps, inc, exc, stat, alpha, bug) in enumerate(specs):
        m = random_mask(rng, h, w, k, holes)
        path = write_mask(tmp / f"generated{j}.tif", m, pixel_size_m=ps)
        cases.append(dict(name=f"generated{j}", file=path, set_scale=False, pixel_size_m=ps, mask=m,
                          data_bar=0, include=inc, exclude=exc, statistic=stat, alpha=alpha, bug=bug))
    # the dialog path: the same options given to the macro's dialog (ImageJ macro options)
    cases.append(dict(cases[-5], name="generated1-dialog",
                      dialog="data=0 include distribution statistic=mean confidence=99% student"))
    one = np.zeros((30, 40), bool)
    one[10:16, 12:20] = True  # one particle, one ultimate point: no test
    cases.append(dict(name="one-particle", file=write_mask(tmp / "one.tif", one), set_scale=False,
                      pixel_size_m=None, mask=one, data_bar=0, include=0, exclude=0,
                      statistic="median", alpha=0.05, bug=1))
    empty = np.zeros((20, 30), bool)
    cases.append(dict(name="empty", file=write_mask(tmp / "empty.tif", empty), set_scale=False,
                      pixel_size_m=None, mask=empty, data_bar=0, include=0, exclude=0,
                      statistic="median", alpha=0.05, bug=1))
    return cases


@pytest.fixture(scope="module")
def analysis_runs(tmp_path_factory):
    """All cases in one ImageJ process (a JVM start is ~1 s; the macro runs take under 1 s each)."""
    tmp = tmp_path_factory.mktemp("analysis")
    cases = analysis_cases(tmp)
    lines = [DUMP_RESULTS]
    for i, c in enumerate(cases):
        args = (f"data_bar={c['data_bar']} include={c['include']} exclude={c['exclude']} "
                f"distribution=1 statistic={c['statistic']} alpha={c['alpha']} "
                f"java_student_bug={c['bug']}")
        lines.append(f'print("=== case {i}");')
        lines.append(f"open({ijm(c['file'])});")
        if c["set_scale"]:  # as the SEM image's calibration (Image > Properties)
            lines.append(f'run("Properties...", "unit=nm pixel_width={pixel_size_nm(c["pixel_size_m"])!r} '
                         f'pixel_height={pixel_size_nm(c["pixel_size_m"])!r}");')
        if c.get("dialog"):  # GenericDialog reads its fields from the thread's macro options
            lines.append(f'call("ij.Macro.setOptions", {ijm(c["dialog"])});')
            lines.append(f'r = runMacro({ijm(ANALYSIS)}, "");')
            lines.append('call("ij.Macro.setOptions", "");')
        else:
            lines.append(f"r = runMacro({ijm(ANALYSIS)}, {ijm(args)});")
        lines.append(f"File.saveString(r, {ijm(tmp / f'case{i}.ret')});")
        lines.append(f"dumpResults({ijm(tmp / f'case{i}.csv')});")
        lines.append('print("open images " + nImages);')
        lines.append('close("*");')
    lines.append('print("=== end");')
    log = run_imagej("\n".join(lines), tmp)
    assert "=== end" in log, log
    runs = []
    for i, c in enumerate(cases):
        text = (tmp / f"case{i}.csv").read_text()
        table = pd.read_csv(tmp / f"case{i}.csv") if text.strip() else pd.DataFrame()
        section = log.split(f"=== case {i}\n", 1)[1].split("=== ", 1)[0]
        runs.append(dict(c, table=table, ret=parse_return((tmp / f"case{i}.ret").read_text()),
                         log=section))
    return runs


def assert_same_particles(ij: pd.DataFrame, native: pd.DataFrame, name: str):
    assert len(ij) == len(native), name
    if len(native) == 0:
        return
    for col in IMAGEJ_COLUMNS + BIOVOXXEL_COLUMNS:
        a = ij[col].to_numpy(float)
        b = native[col].to_numpy(float)
        if col in ANGLE_COLUMNS:
            diff = np.abs(a - b)
            diff = np.minimum(diff, 180 - diff)
            assert diff.max() <= 1e-9, (name, col, diff.max())
        else:
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12, err_msg=f"{name} {col}")


# --------------------------------------------------------------------------------------------
# TiO2_Particle_Analysis.ijm
# --------------------------------------------------------------------------------------------

def test_particle_analysis_macro_equals_native_measure(analysis_runs):
    for run in analysis_runs:
        native = measure(run["mask"], pixel_size_m=run["pixel_size_m"], include_holes=bool(run["include"]),
                         exclude_edges=bool(run["exclude"]))
        ij = run["table"]
        if len(native):
            assert list(ij.columns) == [  # ImageJ's order, then BioVoxxel's three
                "Area", "X", "Y", "Perim.", "BX", "BY", "Width", "Height", "Major", "Minor", "Angle",
                "Circ.", "Feret", "FeretX", "FeretY", "FeretAngle", "MinFeret", "AR", "Round",
                "Solidity", "FeretAR", "Compact", "Extent"], run["name"]
        assert_same_particles(ij, native, run["name"])
        assert run["ret"]["particles"] == len(native)
        h, w = run["mask"].shape
        assert (run["ret"]["width"], run["ret"]["height"]) == (w, h)  # data bar left out
        assert run["ret"]["unit"] == ("nm" if run["pixel_size_m"] else "pixels")
        assert f"{len(native)} particles" in run["log"]
        assert "open images 1" in run["log"]  # its working copies are closed again


def test_particle_analysis_examples_have_particles(analysis_runs):
    counts = [len(r["table"]) for r in analysis_runs[:3]]
    assert all(n > 50 for n in counts), counts  # sanity: the comparison above is not vacuous


def test_particle_analysis_macro_distribution_equals_native(analysis_runs):
    for run in analysis_runs:
        mask = run["mask"]
        coords, _ = D.ultimate_points(mask)
        pts = D.biovoxxel_points(coords, run["pixel_size_m"])
        ret = run["ret"]
        if len(pts) < 2:
            assert ret["n"] == len(pts) and ret["classification"] == "too few points", run["name"]
            assert "not tested" in run["log"]
            continue
        native = D.biovoxxel_test(pts, mask.size, alpha=run["alpha"], statistic=run["statistic"],
                                  java_student_bug=bool(run["bug"]))
        assert ret["n"] == native["n"], run["name"]
        for key in ("test", "df", "classification"):
            assert ret[key] == native[key], (run["name"], key)
        assert bool(ret["significant"]) == native["significant"]
        for key in ("area", "expected_nnd", "observed_nnd", "mean_nnd", "median_nnd", "variance", "F",
                    "statistic", "critical_value"):
            a, b = ret[key], native[key]
            if math.isinf(b) or math.isnan(b):
                assert str(a) == str(b) or (math.isinf(b) and math.isinf(a)), (run["name"], key)
            else:
                assert a == pytest.approx(b, rel=1e-12), (run["name"], key)
        # the same number as the library's whole-image BioVoxxel row (as `tio2fiji distribution`)
        row = D.test_distribution(mask, method="biovoxxel", pixel_size_m=run["pixel_size_m"],
                                  statistic=run["statistic"], alpha=run["alpha"],
                                  java_student_bug=bool(run["bug"]))
        assert row["statistic"] == pytest.approx(ret["statistic"], rel=1e-12) or (
            math.isinf(row["statistic"]) and math.isinf(ret["statistic"]))
        assert f"Sample size n = {native['n']}" in run["log"]


def test_particle_analysis_covers_both_branches(analysis_runs):
    tests = {r["ret"].get("test") for r in analysis_runs}
    assert {"Welch's t-test", "Student's t-test"} <= tests
    assert any(math.isinf(r["ret"].get("statistic", 0.0)) for r in analysis_runs)


def _code_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _between(text: str, first: str, last: str) -> list[str]:
    lines = _code_lines(text)
    i = lines.index(first)
    j = lines.index(last, i)
    return lines[i:j + 1]


@pytest.mark.parametrize("first, last", [
    ("if (abs(alpha - 0.05) < 1e-12) {",
     "bins = newArray(10, 30, 60, 100, 500, 1000, 2000, 3000, 4000, 5000);"),
    ("E = 0.5 * sqrt(imageArea / n);",
     'print("according to " + statistic + " of the centroid NND distance");'),
])
def test_distribution_code_is_shared_with_biovoxxel_macro(first, last):
    """The analysis macro carries a copy of BioVoxxel_Particle_Distribution.ijm's statistics."""
    ours = _between(ANALYSIS.read_text(encoding="utf-8"), first, last)
    theirs = _between(BIOVOXXEL.read_text(encoding="utf-8"), first, last)
    assert ours == theirs
    assert len(ours) > 10


def test_library_finds_the_biovoxxel_macro():
    # biovoxxel_test_imagej runs this file (package data)
    assert D.macro_path().read_bytes() == BIOVOXXEL.read_bytes()


# --------------------------------------------------------------------------------------------
# TiO2_Segment.ijm
# --------------------------------------------------------------------------------------------

STAND_IN = '''#!{python}
"""Stand-in for `tio2fiji segment` (no network): the manual mask is the "segmentation"."""
import json, sys
from pathlib import Path
import numpy as np
from tio2fiji.io import read_mask, read_sem, write_labels, write_mask
from tio2fiji.particles import label_particles
from tio2fiji.particles import write_roi_zip

argv = sys.argv[1:]
with open({log!r}, "a") as fh:
    fh.write(json.dumps(argv) + "\\n")
assert argv[0] == "segment", argv
image = Path(argv[1])
out = Path(argv[argv.index("--out") + 1])
sem = read_sem(image)
mask = read_mask({mask!r})[: sem.analysed.shape[0]]
labels, n = label_particles(mask, connectivity=4)
stem = image.stem
write_mask(out / f"{{stem}}_mask.tif", mask, sem.pixel_size_m)
write_labels(out / f"{{stem}}_labels.tif", labels, sem.pixel_size_m)
if "--rois" in argv:
    write_roi_zip(labels, out / f"{{stem}}_rois.zip")
if "--probability" in argv:
    write_mask(out / f"{{stem}}_prob.tif", mask)
(out / f"{{stem}}_scores.csv").write_text("label,score\\n")
print(f"{{image}}: {{n}} particles")
'''


def segment_driver(image: Path, args: str, tmp: Path, dialog: str = "") -> str:
    """Open ``image``, run the Segment macro with ``args``, then (if given) again through its dialog,
    and measure what ends up in the ROI Manager on the label image."""
    again = "" if not dialog else f"""
        close("*");
        open({ijm(image)});
        call("ij.Macro.setOptions", {ijm(dialog)});
        r = runMacro({ijm(SEGMENT)}, "");
        call("ij.Macro.setOptions", "");"""
    return DUMP_RESULTS + textwrap.dedent(f"""
        open({ijm(image)});
        sem = getImageID();
        r = runMacro({ijm(SEGMENT)}, {ijm(args)});{again}
        File.saveString(r, {ijm(tmp / "segment.ret")});
        labelsTitle = substring(r, indexOf(r, "labels_title=") + 13);
        selectImage(labelsTitle);
        getPixelSize(unit, pw, ph);
        print("labels " + getWidth() + "x" + getHeight() + " bits " + bitDepth() + " unit " + unit
            + " pw " + String.format("%.17g", pw) + " max " + getValue("Max"));
        run("Set Measurements...", "area redirect=None decimal=9");
        run("Clear Results");
        n = roiManager("count");
        for (i = 0; i < n; i++) {{
            roiManager("select", i);
            run("Measure");
            setResult("Max", nResults - 1, getValue("Max"));
            setResult("Min", nResults - 1, getValue("Min"));
        }}
        dumpResults({ijm(tmp / "roi_areas.csv")});
        names = "";
        for (i = 0; i < n; i++) names = names + call("ij.plugin.frame.RoiManager.getName", i) + ",";
        print("names " + names);
        print("=== end");
    """)


def check_rois_against_labels(tmp: Path, labels_path: Path, pixel_size_m: float, log: str):
    from tio2fiji.io import read_labels

    labels = read_labels(labels_path)
    native = measure(labels, pixel_size_m=pixel_size_m).sort_values("label")
    areas = pd.read_csv(tmp / "roi_areas.csv")
    assert len(areas) == len(native) > 0
    # each ROI covers exactly its particle: same area, and only its label value under it
    np.testing.assert_allclose(areas["Area"], native["Area"], rtol=1e-12)
    np.testing.assert_array_equal(areas["Min"], native["label"])
    np.testing.assert_array_equal(areas["Max"], native["label"])
    h, w = labels.shape
    assert f"labels {w}x{h} bits 16 unit nm pw {pixel_size_m * 1e9:.17g}"[:60] in log
    return labels


def test_segment_macro_with_stand_in_cli(tmp_path):
    image = EXAMPLES / "SEM" / "1908252.tif"
    argv_log = tmp_path / "argv.json"
    exe = tmp_path / "bin" / "tio2fiji"
    exe.parent.mkdir()
    exe.write_text(STAND_IN.format(python=sys.executable, log=str(argv_log),
                                   mask=str(EXAMPLES / "masks" / "1908252_m.tif")))
    exe.chmod(0o755)
    out = tmp_path / "out dir"  # a space: the macro passes arguments without a shell
    out2 = tmp_path / "dialog out"
    dialog = f"tio2fiji=[{exe}] model=default separate=watershed output=[{out2}] load also"
    log = run_imagej(segment_driver(image, f"exe=[{exe}] model=default separate=none out=[{out}] "
                                    "rois=1 probability=0", tmp_path, dialog), tmp_path)
    assert "=== end" in log, log
    calls = [json.loads(line) for line in argv_log.read_text().splitlines()]
    assert calls == [
        ["segment", str(image), "--out", str(out) + "/", "--model", "default", "--separate", "none",
         "--rois"],
        ["segment", str(image), "--out", str(out2) + "/", "--model", "default", "--separate",
         "watershed", "--rois", "--probability"],  # the dialog's values
    ]
    assert (out / "1908252_labels.tif").is_file() and (out2 / "1908252_prob.tif").is_file()
    ret = parse_return((tmp_path / "segment.ret").read_text())
    assert ret["n_rois"] > 50
    labels = check_rois_against_labels(tmp_path, out / "1908252_labels.tif", PIXEL, log)
    assert labels.shape == (704, 1024)  # the analysed area
    names = re.search(r"names (.*)", log).group(1).strip(",").split(",")
    assert names[:2] == ["0001-label", "0002-label"] and len(names) == ret["n_rois"]
    assert "particles in the ROI Manager" in log


def _has_segment_command() -> bool:
    exe = Path(sys.executable).parent / "tio2fiji"
    if not exe.exists():
        return False
    proc = subprocess.run([str(exe), "segment", "--help"], capture_output=True, text=True)
    return proc.returncode == 0 and "--rois" in proc.stdout


@pytest.mark.slow
def test_segment_macro_with_real_cli(tmp_path):
    assert _has_segment_command(), "the tio2fiji command is not installed next to this Python"
    exe = Path(sys.executable).parent / "tio2fiji"
    image = EXAMPLES / "SEM" / "1908248.tif"
    out = tmp_path / "out"
    log = run_imagej(segment_driver(image, f"exe=[{exe}] model=default separate=auto out=[{out}]",
                                    tmp_path), tmp_path, timeout=420)
    assert "=== end" in log, log
    for suffix in ("_mask.tif", "_labels.tif", "_rois.zip", "_scores.csv"):
        assert (out / f"1908248{suffix}").is_file(), suffix
    check_rois_against_labels(tmp_path, out / "1908248_labels.tif", PIXEL, log)


# --------------------------------------------------------------------------------------------
# tio2fiji install-macros: the shipped macros into a Fiji.app / ImageJ folder
# --------------------------------------------------------------------------------------------

def _imagej_folder(tmp_path) -> Path:
    """An ImageJ 1.x folder as a user has one: ij.jar beside plugins/."""
    app = tmp_path / "ImageJ"
    (app / "plugins").mkdir(parents=True)
    (app / "ij.jar").symlink_to(find_ij_jar())
    return app


def test_install_macros_refuses_what_is_not_imagej_and_a_changed_file(tmp_path):
    from click.testing import CliRunner

    from tio2fiji.cli import main

    res = CliRunner().invoke(main, ["install-macros", str(tmp_path)])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert res.output.strip().splitlines() == [
        f"error: {tmp_path}: is not a Fiji or ImageJ installation (no jars/ij-*.jar or ij.jar beside a "
        f"plugins/ folder); give the Fiji.app folder (or an ImageJ 1.x folder)."]
    assert list(tmp_path.iterdir()) == []  # nothing written
    fiji = tmp_path / "Fiji.app"  # a Fiji.app: jars/ij-<version>.jar
    (fiji / "jars").mkdir(parents=True)
    (fiji / "plugins").mkdir()
    (fiji / "jars" / "ij-1.54f.jar").write_bytes(b"")
    res = CliRunner().invoke(main, ["install-macros", str(fiji)])
    assert res.exit_code == 0, res.output
    for name in ("TiO2_Particle_Analysis.ijm", "TiO2_Segment.ijm", "BioVoxxel_Particle_Distribution.ijm"):
        assert f"written: {fiji / 'plugins' / 'Macros' / name}" in res.output
        assert (fiji / "plugins" / "Macros" / name).read_bytes() == (MACROS / name).read_bytes()
    mine = fiji / "plugins" / "Macros" / "TiO2_Segment.ijm"
    mine.write_text("// my own edit\n")
    res = CliRunner().invoke(main, ["install-macros", str(fiji)])
    assert res.exit_code == 1 and "--overwrite" in res.output and len(res.output.strip().splitlines()) == 1
    assert mine.read_text() == "// my own edit\n"  # a user's edit is not replaced unasked
    res = CliRunner().invoke(main, ["install-macros", str(fiji), "--overwrite"])
    assert res.exit_code == 0 and f"replaced: {mine}" in res.output and "unchanged: " in res.output
    assert mine.read_bytes() == (MACROS / "TiO2_Segment.ijm").read_bytes()


def test_installed_macros_are_imagej_menu_commands(tmp_path):
    """After ``tio2fiji install-macros``, a fresh ImageJ lists the macros as commands and runs the
    particle analysis from its menu entry: 2 particles of 24 and 9 pixels on a drawn mask."""
    from click.testing import CliRunner

    from tio2fiji.cli import main

    app = _imagej_folder(tmp_path)
    res = CliRunner().invoke(main, ["install-macros", str(app)])
    assert res.exit_code == 0, res.output
    work = tmp_path / "work"
    work.mkdir()
    log = run_imagej("""
List.setCommands;
print("analysis=" + List.get("TiO2 Particle Analysis"));
print("biovoxxel=" + List.get("BioVoxxel Particle Distribution"));
print("segment=" + List.get("TiO2 Segment"));
newImage("m", "8-bit black", 40, 30, 1);
makeRectangle(5, 5, 6, 4); run("Set...", "value=255");
makeRectangle(20, 10, 3, 3); run("Set...", "value=255");
run("Select None");
run("TiO2 Particle Analysis", "data_bar=0 include=0 exclude=0 distribution=0");
print("areas=" + getResult("Area", 0) + "," + getResult("Area", 1));
""", work, imagej_dir=app)
    for key, name in (("analysis", "TiO2_Particle_Analysis"), ("biovoxxel", "BioVoxxel_Particle_Distribution"),
                      ("segment", "TiO2_Segment")):
        assert f'{key}=ij.plugin.Macro_Runner("Macros/{name}.ijm")' in log, log
    assert "areas=24,9" in log, log
