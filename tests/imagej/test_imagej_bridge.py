"""The ImageJ bridge runs the real ImageJ 1.x in a real JVM: no mocking.

Expected values are computed by hand from ImageJ's definitions (docs/imagej-spec.md): a traced
perimeter with corner counting, an ellipse with ImageJ's 1/12 pixel term, centroids at pixel
centres (+0.5).
"""

import json
import math
import os
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from tio2fiji import imagej
from tio2fiji.errors import InputError, JavaNotFoundError, Tio2FijiError
from tio2fiji.imagej import COLUMNS, find_ij_jar, measure_imagej, run_macro, session
from tio2fiji.imagej._measure import _run_particle_analyzer, _select_backend

CORNER = 2 - math.sqrt(2)  # what each counted corner takes off a unit-square outline


@pytest.fixture(scope="module", autouse=True)
def ij_version():
    """One JVM for the whole module (and process): started once, here."""
    return imagej.start_imagej()


def canvas(h=20, w=20):
    return np.zeros((h, w), np.uint8)


def run_python(code, **env):
    """Run ``code`` in a fresh interpreter (a JVM cannot be restarted in this one)."""
    full_env = {**os.environ, **env}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=full_env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------- JVM and version

def test_version_is_imagej1(ij_version):
    assert re.match(r"^1\.\d\d[a-z]?\d*$", ij_version)
    assert imagej.imagej_version() == ij_version
    info = imagej.jvm_info()
    assert info["backend"] == "ij1" and info["version"] == ij_version


def test_start_is_idempotent_with_same_jar(ij_version):
    assert imagej.start_imagej() == ij_version
    assert imagej.start_imagej(imagej.jvm_info()["jar"]) == ij_version


def test_other_jar_while_running_is_a_clear_error(tmp_path):
    other = tmp_path / "ij-copy.jar"
    shutil.copy(find_ij_jar(), other)
    with pytest.raises(Tio2FijiError, match="cannot be restarted"):
        imagej.start_imagej(other)


def test_pyimagej_cannot_join_a_running_jvm(tmp_path):
    fiji = tmp_path / "Fiji.app"
    (fiji / "jars").mkdir(parents=True)
    (fiji / "jars" / "ij-1.54f.jar").touch()
    (fiji / "jars" / "imagej-2.14.0.jar").touch()
    with pytest.raises(Tio2FijiError, match="cannot share a process"):
        measure_imagej(canvas(), fiji_dir=fiji)


# ---------------------------------------------------------------------------- session

def test_session_gives_classes_images_plugins_and_macros(ij_version):
    m = canvas(9, 11)
    m[2:7, 3:8] = 255
    with session() as s:
        assert s.version == ij_version and ij_version in repr(s)
        assert str(s.jclass("ij.IJ").getVersion()) == ij_version
        imp = s.to_imageplus(m, title="s", pixel_size_m=2e-9)
        assert isinstance(imp, s.jclass("ij.ImagePlus"))
        np.testing.assert_array_equal(s.from_imageplus(imp), m)
        s.run_plugin(imp, "ij.plugin.filter.Filters", "invert")
        np.testing.assert_array_equal(s.from_imageplus(imp), 255 - m)
        res = s.run_macro("return '' + getWidth() + ' ' + getPixel(0, 0);", image=imp)
        assert res.value == "11 255"
        with session() as inner:  # the lock is re-entrant; the bridge's own calls work inside
            assert inner.version == ij_version
            assert len(measure_imagej(m)) == 1


def test_session_ends_with_its_block():
    with session() as s:
        pass
    with pytest.raises(Tio2FijiError, match="session has ended"):
        s.jclass("ij.IJ")
    with pytest.raises(Tio2FijiError, match="session has ended"):
        s.to_imageplus(canvas())
    assert "ended" in repr(s)


def test_session_with_another_jar_is_a_clear_error(tmp_path):
    other = tmp_path / "ij-copy.jar"
    shutil.copy(find_ij_jar(), other)
    with pytest.raises(Tio2FijiError, match="cannot be restarted"):
        with session(other):
            pass


# ---------------------------------------------------------------------------- hand-computed cases

def test_single_pixel():
    m = canvas()
    m[5, 7] = 255
    df = measure_imagej(m)
    assert len(df) == 1
    r = df.iloc[0]
    assert r["Area"] == 1
    assert r["Perim."] == pytest.approx(2 * math.sqrt(2), rel=1e-12)
    assert (r["X"], r["Y"]) == (7.5, 5.5)
    assert (r["BX"], r["BY"], r["Width"], r["Height"]) == (7, 5, 1, 1)
    assert r["Feret"] == pytest.approx(math.sqrt(2), rel=1e-12)
    assert r["FeretAngle"] == pytest.approx(135)
    assert r["MinFeret"] == pytest.approx(1)
    assert r["Major"] == pytest.approx(2 / math.sqrt(math.pi), rel=1e-9)
    assert r["Circ."] == 1 and r["Solidity"] == 1
    assert r["ECD"] == pytest.approx(2 / math.sqrt(math.pi), rel=1e-12)


@pytest.mark.parametrize("w,h", [(5, 4), (2, 2), (3, 9), (10, 2)])
def test_rectangle(w, h):
    m = canvas(30, 30)
    m[6:6 + h, 4:4 + w] = 255
    r = measure_imagej(m).iloc[0]
    assert r["Area"] == w * h
    # full double precision, not the 3-decimal text of the Results window
    assert r["Perim."] == pytest.approx(2 * (w + h) - 4 * CORNER, rel=1e-12)
    assert (r["BX"], r["BY"], r["Width"], r["Height"]) == (4, 6, w, h)
    assert (r["X"], r["Y"]) == (4 + w / 2, 6 + h / 2)
    assert r["Feret"] == pytest.approx(math.hypot(w, h), rel=1e-12)
    assert r["MinFeret"] == pytest.approx(min(w, h), rel=1e-12)
    assert r["AR"] == pytest.approx(max(w, h) / min(w, h), rel=1e-6)
    assert r["Round"] == pytest.approx(min(w, h) / max(w, h), rel=1e-6)
    if w != h:
        assert r["Angle"] == pytest.approx(0 if w > h else 90, abs=1e-9)
    assert r["Solidity"] == pytest.approx(1) and r["Extent"] == pytest.approx(1)
    assert r["FeretAR"] == pytest.approx(math.hypot(w, h) / min(w, h), rel=1e-12)
    assert r["Compact"] == pytest.approx(math.sqrt(4 * w * h / math.pi) / r["Major"], rel=1e-12)


@pytest.mark.parametrize("n", [2, 5, 11])
def test_line(n):
    m = canvas(20, 20)
    m[3, 2:2 + n] = 255
    r = measure_imagej(m).iloc[0]
    assert r["Perim."] == pytest.approx(2 * n + 2 - 3 * CORNER, rel=1e-12)
    assert r["Area"] == n and r["Angle"] == 0


def test_ring_include_holes():
    m = canvas()
    m[4:9, 4:9] = 255
    m[5:8, 5:8] = 0  # 3x3 hole
    without = measure_imagej(m).iloc[0]
    with_holes = measure_imagej(m, include_holes=True).iloc[0]
    assert without["Area"] == 16 and with_holes["Area"] == 25
    assert without["Solidity"] == pytest.approx(16 / 25)
    # outline, hull and Feret come from the outer outline either way
    for col in ("Perim.", "Feret", "MinFeret", "BX", "Width"):
        assert without[col] == with_holes[col]


def test_particle_inside_hole_is_erased_with_include_holes():
    m = canvas()
    m[4:11, 4:11] = 255
    m[5:10, 5:10] = 0
    m[7, 7] = 255  # island in the hole
    assert len(measure_imagej(m)) == 2
    df = measure_imagej(m, include_holes=True)
    assert len(df) == 1 and df["Area"].iloc[0] == 49


def test_exclude_edges_and_touches_edge():
    m = canvas(20, 30)
    m[0, 10:13] = 255  # top
    m[19, 3] = 255  # bottom
    m[8:10, 0] = 255  # left
    m[12, 27:30] = 255  # right
    m[8:11, 12:15] = 255  # inside
    df = measure_imagej(m)
    assert len(df) == 5 and df["touches_edge"].sum() == 4
    inner = measure_imagej(m, exclude_edges=True)
    assert len(inner) == 1 and not inner["touches_edge"].any()
    assert inner["Area"].iloc[0] == 9 and inner["label"].tolist() == [1]


def test_diagonal_chain_connectivity():
    m = canvas()
    for i in range(6):
        m[3 + i, 2 + i] = 255
    eight = measure_imagej(m, connectivity=8)
    four = measure_imagej(m, connectivity=4)
    assert len(eight) == 1 and eight["Area"].iloc[0] == 6
    assert len(four) == 6 and (four["Area"] == 1).all()
    assert four["label"].tolist() == [1, 2, 3, 4, 5, 6]
    assert four["Y"].is_monotonic_increasing  # raster order of the start pixels


def test_four_connected_quirk_is_handled(ij_version):
    # Two 2x2 blocks touching at a corner: 2 particles with 4-connectivity.
    m = canvas(8, 8)
    m[1:3, 1:3] = 255
    m[3:5, 3:5] = 255
    df = measure_imagej(m, connectivity=4, include_holes=False)
    assert df["Area"].tolist() == [4, 4]
    assert df.attrs["include_holes"] is True and df.attrs["include_holes_forced"] is True
    # Why: the raw ParticleAnalyzer of ImageJ 1.53t with FOUR_CONNECTED alone reports the second
    # block as four zero-area particles (later versions force include-holes themselves).
    with session() as s:
        pa = s.jclass("ij.plugin.filter.ParticleAnalyzer")
        raw = _run_particle_analyzer(s.to_imageplus(m), int(pa.SHOW_NONE | pa.FOUR_CONNECTED))
    if ij_version == "1.53t":
        assert (raw["Area"] == 0).sum() == 4
    else:
        assert raw["Area"].tolist() in ([4, 4], [4, 0, 0, 0, 0])


def test_four_connected_on_a_real_mask(example_masks):
    m = tifffile.imread(example_masks[0]) > 0
    df = measure_imagej(m, connectivity=4)
    cross = ndi.generate_binary_structure(2, 1)
    assert len(df) == ndi.label(m, cross)[1]
    assert (df["Area"] > 0).all()
    assert df["Area"].sum() == m.sum()  # no 4-connected holes in the BAM masks
    assert len(measure_imagej(m, connectivity=8)) == ndi.label(m, np.ones((3, 3)))[1]


def test_calibration_in_nm():
    m = canvas(20, 20)
    m[6:10, 4:9] = 255  # 5 x 4
    m[19, 0] = 255
    px = measure_imagej(m)
    nm = measure_imagej(m, pixel_size_m=2.5e-9)
    assert nm.attrs["unit"] == "nm" and px.attrs["unit"] == "pixel"
    assert nm.attrs["pixel_size_m"] == 2.5e-9
    np.testing.assert_allclose(nm["Area"], px["Area"] * 6.25, rtol=1e-12)
    for col in ("Perim.", "Feret", "MinFeret", "Major", "Minor", "X", "Y", "BX", "BY", "Width",
                "Height", "ECD"):
        np.testing.assert_allclose(nm[col], px[col] * 2.5, rtol=1e-12, err_msg=col)
    for col in ("Circ.", "AR", "Round", "Solidity", "FeretAngle", "Angle", "FeretAR", "Compact",
                "Extent", "touches_edge"):
        np.testing.assert_allclose(nm[col], px[col], rtol=1e-12, err_msg=col)
    # ImageJ reports FeretX/FeretY as pixel corners even when calibrated
    np.testing.assert_array_equal(nm[["FeretX", "FeretY"]], px[["FeretX", "FeretY"]])
    assert nm["touches_edge"].tolist() == [False, True]


def test_imageplus_round_trip_and_calibration():
    m = canvas(7, 9)
    m[2:4, 1:6] = 255
    imp = imagej.to_imageplus(m, title="t", pixel_size_m=3e-9)
    assert (imp.getWidth(), imp.getHeight(), imp.getBitDepth()) == (9, 7, 8)
    cal = imp.getCalibration()
    assert str(cal.getUnit()) == "nm" and cal.pixelWidth == pytest.approx(3.0)
    np.testing.assert_array_equal(imagej.from_imageplus(imp), m)


# ---------------------------------------------------------------------------- masks ImageJ saved


def _imagej_particles(path, black_background):
    """Particle count and total area of Analyze Particles on ``path`` as ImageJ opens it (no
    threshold set: ImageJ decides which value is particle), 8-connected, every size."""
    import jpype

    prefs = jpype.JClass("ij.Prefs")
    pa_class = jpype.JClass("ij.plugin.filter.ParticleAnalyzer")
    rt = jpype.JClass("ij.measure.ResultsTable")()
    imp = jpype.JClass("ij.io.Opener")().openImage(str(path))
    old = bool(prefs.blackBackground)
    prefs.blackBackground = black_background
    try:
        pa = pa_class(pa_class.SHOW_NONE, jpype.JClass("ij.measure.Measurements").AREA, rt,
                      0.0, math.inf, 0.0, 1.0)
        pa.setHideOutputImage(True)
        assert pa.analyze(imp)
    finally:
        prefs.blackBackground = old
    areas = np.array(rt.getColumnAsDoubles(rt.getColumnIndex("Area"))) if rt.size() else np.zeros(0)
    return len(areas), float(areas.sum())


def test_masks_imagej_saved_with_an_inverting_lut_read_as_imagej_reads_them(example_masks, tmp_path):
    """Issue 31 round two: ImageJ 1.53t itself saves a bundled mask after "Invert LUT", and after
    "Convert to Mask" with black background off (both: a palette TIFF, 255 shown black). tio2fiji
    read them through the colour map, inverted: 1 particle (the background). Now read_mask finds
    the particles ImageJ's Analyze Particles finds on the same file, with either black-background
    setting (ImageJ takes the 255 pixels of an inverting-LUT file as particles)."""
    import jpype

    from tio2fiji.io import read_mask
    from tio2fiji.particles import measure

    source = tmp_path / "source.tif"
    tifffile.imwrite(source, (tifffile.imread(example_masks[0]) > 0).astype(np.uint8) * 255)
    saver, opener = jpype.JClass("ij.io.FileSaver"), jpype.JClass("ij.io.Opener")
    prefs, interp = jpype.JClass("ij.Prefs"), jpype.JClass("ij.macro.Interpreter")
    with session():
        imp = opener().openImage(str(source))
        imp.getProcessor().invertLut()  # what Image > Lookup Tables > Invert LUT does
        assert saver(imp).saveAsTiff(str(tmp_path / "invert_lut.tif"))
        old_black, old_batch = bool(prefs.blackBackground), bool(interp.batchMode)
        prefs.blackBackground, interp.batchMode = False, True
        try:
            imp = opener().openImage(str(source))
            imp.getProcessor().setThreshold(255, 255, 2)  # the particles, then Convert to Mask
            jpype.JClass("ij.IJ").runPlugIn(imp, "ij.plugin.Thresholder", "mask")
            assert imp.isInvertedLut()
            assert saver(imp).saveAsTiff(str(tmp_path / "make_binary.tif"))
        finally:
            prefs.blackBackground, interp.batchMode = old_black, old_batch
        for name in ("invert_lut.tif", "make_binary.tif"):
            with tifffile.TiffFile(tmp_path / name) as tif:  # what ImageJ wrote: a white-to-black map
                page = tif.pages[0]
                assert int(page.photometric) == 3 and page.colormap[0][0] > page.colormap[0][255]
            expected = _imagej_particles(tmp_path / name, black_background=False)
            assert expected == _imagej_particles(tmp_path / name, black_background=True)
            assert expected[0] > 50  # 97 particles (8-connected) in 1908248_m
            df = measure(read_mask(tmp_path / name))  # ImageJ's 8-connectivity
            assert (len(df), float(df["Area"].sum())) == expected, name


def test_palette_sem_image_imagej_saved_reads_as_the_original(example_images, tmp_path):
    """ImageJ writes its 8-bit LUTs as value << 8 (255 -> 65280), not value * 257: a bundled Zeiss
    image re-saved by ImageJ was refused ("neither a gray ramp nor gray"); a gray ramp so scaled is
    the identity, and the data are the original's, overlay entries and data bar included."""
    import jpype

    from tio2fiji.io import read_sem

    out = tmp_path / "resaved.tif"
    with session():
        imp = jpype.JClass("ij.io.Opener")().openImage(str(example_images[0]))
        assert jpype.JClass("ij.io.FileSaver")(imp).saveAsTiff(str(out))
    with tifffile.TiffFile(out) as tif:
        assert tif.pages[0].colormap[0][255] == 65280
    original, resaved = read_sem(example_images[0]), read_sem(out)
    np.testing.assert_array_equal(resaved.data, original.data)
    assert resaved.data_bar_rows == original.data_bar_rows == 64


# ---------------------------------------------------------------------------- table shape

def test_columns_labels_and_image_name():
    m = canvas()
    m[2:4, 2:4] = 255
    m[10:15, 5:7] = 255
    df = measure_imagej(m, image_name="a.tif")
    assert list(df.columns) == list(COLUMNS)
    assert df["label"].tolist() == [1, 2] and (df["image"] == "a.tif").all()
    assert df["touches_edge"].dtype == bool
    assert df.attrs["backend"] == "imagej-ij1" and df.attrs["imagej_version"].startswith("1.")


def test_empty_mask_gives_empty_table():
    df = measure_imagej(canvas())
    assert len(df) == 0 and list(df.columns) == list(COLUMNS)


@pytest.mark.parametrize("fg", [True, 1, 255, 7.0])
def test_binary_encodings_agree(fg):
    m = canvas()
    m[3:8, 4:6] = 255
    m[12, 12] = 255
    arr = np.where(m > 0, fg, 0).astype(type(fg) if not isinstance(fg, bool) else bool)
    ref = measure_imagej(m)
    np.testing.assert_array_equal(measure_imagej(arr)["Perim."], ref["Perim."])


# ---------------------------------------------------------------------------- errors

@pytest.mark.parametrize("bad", [
    np.array([[0, 1], [2, 0]], np.uint8),  # three values: a label image
    np.arange(12, dtype=np.int32).reshape(3, 4),
    np.zeros((3, 4, 2), np.uint8),
    np.zeros((0, 5), np.uint8),
    np.array([[0.0, np.nan]]),
])
def test_non_binary_input_is_rejected(bad):
    with pytest.raises(InputError):
        measure_imagej(bad)


def test_bad_options_are_rejected():
    with pytest.raises(InputError, match="connectivity"):
        measure_imagej(canvas(), connectivity=6)
    with pytest.raises(InputError, match="pixel_size_m"):
        measure_imagej(canvas(), pixel_size_m=-1)
    with pytest.raises(InputError, match="backend"):
        measure_imagej(canvas(), backend="fiji")


def test_missing_jar_names_what_to_install(tmp_path):
    with pytest.raises(JavaNotFoundError, match="apt-get install imagej"):
        find_ij_jar(tmp_path / "nope" / "ij.jar")
    with pytest.raises(JavaNotFoundError, match="Fiji.app"):
        find_ij_jar(tmp_path)  # a directory without ImageJ


def test_jar_resolution_order(tmp_path, monkeypatch):
    fiji = tmp_path / "Fiji.app"
    (fiji / "jars").mkdir(parents=True)
    for name in ("ij-1.53t.jar", "ij-1.54f.jar", "ij-1.9a.jar"):
        (fiji / "jars" / name).touch()
    monkeypatch.delenv(imagej.ENV_IJ_JAR, raising=False)
    assert find_ij_jar() == imagej.SYSTEM_IJ_JAR
    monkeypatch.setenv(imagej.ENV_IJ_JAR, str(fiji))
    assert find_ij_jar().name == "ij-1.54f.jar"  # newest by version, not by string
    explicit = tmp_path / "my-ij.jar"
    shutil.copy(imagej.SYSTEM_IJ_JAR, explicit)
    assert find_ij_jar(explicit) == explicit  # explicit beats the environment
    monkeypatch.setenv(imagej.ENV_IJ_JAR, str(tmp_path / "missing"))
    with pytest.raises(JavaNotFoundError, match="TIO2FIJI_IJ_JAR"):
        find_ij_jar()


def test_no_java_is_a_clear_error(tmp_path):
    out = run_python("""
        import json
        from tio2fiji.imagej import measure_imagej
        from tio2fiji.errors import JavaNotFoundError
        import numpy as np, jpype
        try:
            measure_imagej(np.ones((3, 3), bool))
        except JavaNotFoundError as err:
            print(json.dumps([str(err), jpype.isJVMStarted()]))
        """, JAVA_HOME=str(tmp_path))
    message, started = out
    assert "default-jre" in message and str(tmp_path) in message
    assert not started


def test_jar_without_imagej_does_not_start_the_jvm(tmp_path):
    fake = tmp_path / "ij.jar"
    with zipfile.ZipFile(fake, "w") as zf:
        zf.writestr("README", "not ImageJ")
    out = run_python("""
        import json, jpype
        from tio2fiji.imagej import start_imagej
        from tio2fiji.errors import JavaNotFoundError
        try:
            start_imagej()
        except JavaNotFoundError as err:
            print(json.dumps([str(err), jpype.isJVMStarted()]))
        """, TIO2FIJI_IJ_JAR=str(fake))
    assert "no ij/IJ.class" in out[0] and not out[1]


def test_nothing_is_written_to_home(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    out = run_python("""
        import json, numpy as np
        from tio2fiji.imagej import measure_imagej, run_macro
        m = np.zeros((9, 9), bool); m[2:5, 2:6] = True
        df = measure_imagej(m, connectivity=4)
        run_macro("print(1);")
        print(json.dumps(len(df)))
        """, HOME=str(home))
    assert out == 1
    assert list(home.iterdir()) == []


def test_missing_fiji_dir_selects_pyimagej_and_fails_clearly(tmp_path):
    assert _select_backend("auto", tmp_path) == "pyimagej"
    assert _select_backend("auto", None) == "ij1"
    with pytest.raises(Tio2FijiError, match="does not exist"):
        measure_imagej(canvas(), fiji_dir=tmp_path / "Fiji.app")
    with pytest.raises(Tio2FijiError, match="fiji_dir"):
        measure_imagej(canvas(), backend="pyimagej")
    ij1_only = tmp_path / "ImageJ"
    (ij1_only / "jars").mkdir(parents=True)
    (ij1_only / "jars" / "ij-1.53t.jar").touch()
    with pytest.raises(Tio2FijiError, match="not a Fiji.app"):
        measure_imagej(canvas(), fiji_dir=ij1_only)


def test_pyimagej_backend_really_runs_and_fails_clearly(tmp_path):
    # A Fiji-shaped directory without ImageJ2's classes: the pyimagej route starts a JVM on its
    # jars (offline: no Maven, nothing in $HOME) and reports that Fiji is incomplete.
    fiji = tmp_path / "Fiji.app"
    (fiji / "jars").mkdir(parents=True)
    shutil.copy(find_ij_jar(), fiji / "jars" / "ij-1.53t.jar")
    with zipfile.ZipFile(fiji / "jars" / "imagej-2.14.0.jar", "w") as zf:
        zf.writestr("README", "not ImageJ2")
    home = tmp_path / "home"
    home.mkdir()
    out = run_python(f"""
        import json, numpy as np
        from tio2fiji.imagej import measure_imagej, jvm_info
        from tio2fiji.errors import Tio2FijiError
        try:
            measure_imagej(np.ones((3, 3), bool), fiji_dir={str(fiji)!r})
        except Tio2FijiError as err:
            print(json.dumps(str(err)))
        """, HOME=str(home))
    assert "pyimagej" in out and str(fiji) in out
    assert "maven" not in out.lower()
    assert list(home.iterdir()) == []


# ---------------------------------------------------------------------------- macros

def test_run_macro_headless():
    m = canvas(4, 6)
    res = run_macro("print('hello ' + getArgument()); return '' + getWidth() + 'x' + getHeight();",
                    image=m, args="world")
    assert res.value == "6x4" and res.output.strip() == "hello world"
    imp = imagej.to_imageplus(m)
    run_macro("setPixel(1, 2, 255);", image=imp)
    assert imagej.from_imageplus(imp)[2, 1] == 255


@pytest.mark.parametrize("code,match", [
    ("x = ;", "macro error"),
    ("y = undefined_variable + 1;", "Undefined variable"),
    ("run('Invert');", "needs a display"),
])
def test_run_macro_errors(code, match):
    with pytest.raises(Tio2FijiError, match=match):
        run_macro(code, image=canvas(3, 3))


# ---------------------------------------------------------------------------- comparing tables

def test_compare_tables():
    m = canvas()
    m[2:6, 3:9] = 255
    m[10, 10:15] = 255
    a = measure_imagej(m, image_name="x")
    assert (imagej.compare_tables(a, a.copy())["n_outside"] == 0).all()
    b = a.copy()
    b.loc[0, "Angle"] = 180 - 1e-6 if a.loc[0, "Angle"] == 0 else a.loc[0, "Angle"] + 1e-6
    b.loc[1, "Perim."] *= 1 + 1e-7
    b.loc[1, "Area"] *= 1 + 1e-5
    report = imagej.compare_tables(a, b)
    assert report.loc["Angle", "n_outside"] == 0 and report.loc["Perim.", "n_outside"] == 0
    assert report.loc["Area", "n_outside"] == 1
    assert report.loc["Area", "max_rel"] == pytest.approx(1e-5, rel=1e-3)
    with pytest.raises(InputError, match="counts differ"):
        imagej.compare_tables(a, a.iloc[:1])
