"""Particle measurements by a real ImageJ 1.x running in a JVM inside this process.

The native :mod:`tio2fiji.particles` reproduces ImageJ's *Analyze Particles*; this module runs the
original, so both can be compared and users can get numbers from "the ImageJ they trust".

Two backends start the JVM (once per process, lazily):

``"ij1"`` (default)
    JPype with ImageJ 1.x's ``ij.jar`` alone on the classpath. The jar is found by
    :func:`find_ij_jar`: explicit path → ``$TIO2FIJI_IJ_JAR`` (a jar or a Fiji.app directory) →
    the system's ``/usr/share/java/ij.jar`` (Debian/Ubuntu package ``imagej``). Nothing is
    downloaded and nothing is written to ``$HOME``.
``"pyimagej"``
    ``imagej.init(fiji_dir, mode="headless")`` on a local Fiji.app (ImageJ2 + ImageJ 1.x + the
    user's plugins, e.g. BioVoxxel). Selected by ``fiji_dir=`` or ``backend="pyimagej"``. The
    JVM is started by scyjava with Fiji's jars before ``imagej.init`` (see :func:`start_pyimagej`).

Both run the same direct Java calls (``ParticleAnalyzer(...).analyze(imp)``): ImageJ's menu
commands (``IJ.run("Analyze Particles...")``) do not work with ``java.awt.headless=true``.

A process holds at most one JVM and JPype cannot restart it, so the first backend (and jar) used
wins: asking for another jar, or for pyimagej after the plain backend, raises
:class:`Tio2FijiError` (the plain backend after pyimagej uses Fiji's own ImageJ 1.x).

ImageJ 1.53t quirk (Debian's ``ij.jar``): ``FOUR_CONNECTED`` without ``INCLUDE_HOLES`` returns
nonsense (thousands of zero-area "particles" on a real mask). Later ImageJ versions force
include-holes for 4-connectivity, so :func:`measure_imagej` always does too and records it in
``df.attrs["include_holes"]``.
"""

from __future__ import annotations

import logging
import math
import os
import re
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .columns import ANGLE_COLUMNS, COLUMNS, IMAGEJ_COLUMNS, derived_columns
from .errors import InputError, JavaNotFoundError, Tio2FijiError
from .io import as_binary_mask, pixel_size_nm

__all__ = [
    "ANGLE_COLUMNS",
    "COLUMNS",
    "IMAGEJ_COLUMNS",
    "MacroResult",
    "compare_tables",
    "find_ij_jar",
    "from_imageplus",
    "imagej_version",
    "jvm_info",
    "measure_imagej",
    "run_macro",
    "start_imagej",
    "start_pyimagej",
    "to_imageplus",
]

logger = logging.getLogger(__name__)

ENV_IJ_JAR = "TIO2FIJI_IJ_JAR"
SYSTEM_IJ_JAR = Path("/usr/share/java/ij.jar")

_INSTALL_HINT = ("Install ImageJ 1.x (Debian/Ubuntu: `sudo apt-get install imagej`), or set "
                 f"{ENV_IJ_JAR} to an ij.jar or a Fiji.app directory, or pass ij_jar=PATH.")
_JAVA_HINT = ("Install a Java runtime >= 8 (Debian/Ubuntu: `sudo apt-get install default-jre`) or "
              "set JAVA_HOME to a JDK/JRE directory.")

# Where libjvm lives below JAVA_HOME on Linux, macOS and Windows (JDK 9+ first, then JDK 8 JREs).
_LIBJVM_PATHS = ("lib/server/libjvm.so", "jre/lib/server/libjvm.so", "jre/lib/amd64/server/libjvm.so",
                 "lib/client/libjvm.so", "lib/server/libjvm.dylib", "lib/libjli.dylib",
                 "jre/lib/server/libjvm.dylib", "bin/server/jvm.dll", "jre/bin/server/jvm.dll")

_lock = threading.RLock()


@dataclass
class _JvmState:
    backend: str | None = None  # "ij1", "pyimagej" or "foreign" (JVM started by other code)
    jar: Path | None = None  # the ij.jar we put on the classpath (ij1)
    fiji_dir: Path | None = None
    version: str | None = None
    start_seconds: float | None = None
    gateway: object = None  # pyimagej's ImageJ2 gateway


_state = _JvmState()


# --------------------------------------------------------------------------------------------
# Finding Java and ImageJ
# --------------------------------------------------------------------------------------------

def _version_key(path: Path) -> tuple:
    """Sort key for ``ij-1.54f.jar``-style names: numbers numerically, letters after them."""
    parts = re.findall(r"\d+|[a-z]+", path.stem.lower())
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts)


def _jar_in(path: Path, source: str) -> Path:
    """The ij.jar designated by ``path`` (a jar, a Fiji.app or an ImageJ 1.x directory)."""
    path = Path(os.path.expanduser(str(path))).absolute()
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise JavaNotFoundError(f"{path} ({source}) is not a jar file. {_INSTALL_HINT}")
        return path
    if path.is_dir():
        candidates = sorted((path / "jars").glob("ij-*.jar"), key=_version_key)  # Fiji.app
        candidates += [p for p in (path / "ij.jar",) if p.is_file()]  # ImageJ 1.x app directory
        if candidates:
            return candidates[-1]
        raise JavaNotFoundError(
            f"{path} ({source}) is a directory without ImageJ: expected a Fiji.app (jars/ij-*.jar) "
            f"or an ImageJ directory (ij.jar). {_INSTALL_HINT}")
    raise JavaNotFoundError(f"ImageJ jar not found: {path} ({source}) does not exist. {_INSTALL_HINT}")


def find_ij_jar(path=None) -> Path:
    """Locate ImageJ 1.x's ``ij.jar``.

    Parameters
    ----------
    path : str or Path, optional
        An ``ij.jar`` (any name), a Fiji.app directory (its ``jars/ij-*.jar``, newest first) or an
        ImageJ 1.x directory holding ``ij.jar``.

    Returns
    -------
    Path
        Absolute path of the jar (symbolic links are kept, e.g. Debian's ``ij.jar``).

    Raises
    ------
    JavaNotFoundError
        If the designated place holds no ImageJ, or nothing is found at all.

    Notes
    -----
    Resolution order: ``path`` → environment variable ``TIO2FIJI_IJ_JAR`` (jar or Fiji.app
    directory) → ``/usr/share/java/ij.jar``. A given but wrong path is an error, never silently
    replaced by the next candidate.
    """
    if path is not None:
        return _jar_in(Path(path), "ij_jar argument")
    env = os.environ.get(ENV_IJ_JAR)
    if env:
        return _jar_in(Path(env), f"${ENV_IJ_JAR}")
    if SYSTEM_IJ_JAR.is_file():
        return SYSTEM_IJ_JAR
    raise JavaNotFoundError(f"ImageJ 1.x (ij.jar) not found: no {SYSTEM_IJ_JAR} and ${ENV_IJ_JAR} "
                            f"is not set. {_INSTALL_HINT}")


def _check_jar_has_imagej(jar: Path) -> None:
    # A JVM cannot be restarted: check the jar before it goes on the classpath.
    try:
        with zipfile.ZipFile(jar) as zf:
            has_ij = "ij/IJ.class" in zf.namelist()
    except (OSError, zipfile.BadZipFile) as err:
        raise JavaNotFoundError(f"{jar} cannot be read as a jar: {err}. {_INSTALL_HINT}") from err
    if not has_ij:
        raise JavaNotFoundError(f"{jar} does not contain ImageJ 1.x (no ij/IJ.class). {_INSTALL_HINT}")


def _find_libjvm() -> str:
    """Path of the JVM library: from ``$JAVA_HOME`` if set (strictly), else JPype's search."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        # JPype would silently fall back to another Java; a user who sets JAVA_HOME means it.
        for rel in _LIBJVM_PATHS:
            cand = Path(java_home) / rel
            if cand.is_file():
                return str(cand)
        raise JavaNotFoundError(f"No Java virtual machine (libjvm) found in JAVA_HOME={java_home}. "
                                f"{_JAVA_HINT}")
    jpype = _import_jpype()
    try:
        return jpype.getDefaultJVMPath()
    except (jpype.JVMNotFoundException, jpype.JVMNotSupportedException) as err:
        raise JavaNotFoundError(f"No Java runtime found ({err}). {_JAVA_HINT}") from err


def _import_jpype():
    try:
        import jpype
    except ImportError as err:
        raise JavaNotFoundError("The ImageJ backend needs JPype: `pip install JPype1`.") from err
    return jpype


# --------------------------------------------------------------------------------------------
# Starting the JVM
# --------------------------------------------------------------------------------------------

def _classpath(jpype) -> str:
    # The running JVM's classpath (jpype.getClassPath() is the one for a future start).
    return str(jpype.JClass("java.lang.System").getProperty("java.class.path"))


def _classpath_jars(jpype) -> list[Path]:
    return [Path(p).resolve() for p in _classpath(jpype).split(os.pathsep) if p]


def _imagej_in_jvm(jpype) -> str:
    """ImageJ version in the running JVM; error if ImageJ 1.x is not on its classpath."""
    try:
        return str(jpype.JClass("ij.IJ").getVersion())
    except Exception as err:  # java.lang.NoClassDefFoundError etc. come as various types
        raise Tio2FijiError(
            "A JVM is already running in this process without ImageJ 1.x on its classpath "
            "(started by other code, e.g. scyjava). A JVM cannot be restarted: start the ImageJ "
            "bridge before other Java code, or use a new Python process.") from err


def _attach(jpype, ij_jar) -> str:
    """Reuse the running JVM; an explicitly requested, different jar is an error."""
    if ij_jar is not None:
        want = find_ij_jar(ij_jar).resolve()
        if want not in _classpath_jars(jpype):
            have = _state.jar or _state.fiji_dir or _classpath(jpype)
            raise Tio2FijiError(
                f"The JVM in this process already runs ImageJ from {have}; it cannot be restarted "
                f"with {want}. Use the same ij_jar (or none), or a new Python process.")
    if _state.backend is None:
        _state.backend = "foreign"
        logger.info("Using the JVM started elsewhere in this process (classpath %s)",
                    _classpath(jpype))
    if _state.version is None:
        _state.version = _imagej_in_jvm(jpype)
    return _state.version


def start_imagej(ij_jar=None, jvm_options=()) -> str:
    """Start ImageJ 1.x in a headless JVM in this process (once; later calls reuse it).

    Parameters
    ----------
    ij_jar : str or Path, optional
        Where ImageJ is, see :func:`find_ij_jar`. If the JVM is already running, ``None`` reuses
        whatever ImageJ it has; an explicit jar must be the one on its classpath.
    jvm_options : sequence of str
        Extra JVM options for the first start (e.g. ``["-Xmx8g"]``).

    Returns
    -------
    str
        ImageJ's version, e.g. ``"1.53t"``.

    Raises
    ------
    JavaNotFoundError
        No Java runtime or no ImageJ.
    Tio2FijiError
        The JVM already runs with another ImageJ (JPype cannot restart a JVM).
    """
    with _lock:
        jpype = _import_jpype()
        if jpype.isJVMStarted():
            return _attach(jpype, ij_jar)
        jar = find_ij_jar(ij_jar)
        _check_jar_has_imagej(jar)
        libjvm = _find_libjvm()
        t0 = time.perf_counter()
        try:
            jpype.startJVM(libjvm, "-Djava.awt.headless=true", *jvm_options,
                           classpath=[str(jar)], convertStrings=False)
        except (OSError, RuntimeError) as err:
            raise JavaNotFoundError(f"Could not start the Java VM {libjvm}: {err}. {_JAVA_HINT}") from err
        _state.backend, _state.jar = "ij1", jar
        _state.version = _imagej_in_jvm(jpype)
        _state.start_seconds = time.perf_counter() - t0
        logger.info("Started ImageJ %s from %s in a JVM (%s) in %.2f s", _state.version, jar,
                    libjvm, _state.start_seconds)
        return _state.version


def _check_fiji_dir(fiji_dir) -> Path:
    if fiji_dir is None:
        raise JavaNotFoundError("The pyimagej backend needs a local Fiji.app: pass fiji_dir=PATH "
                                "(download Fiji from https://fiji.sc).")
    path = Path(os.path.expanduser(str(fiji_dir))).absolute()
    if not path.is_dir():
        raise JavaNotFoundError(f"Fiji directory {path} does not exist. Pass the Fiji.app directory "
                                f"(download Fiji from https://fiji.sc), or use backend='ij1'.")
    jars = path / "jars"
    if not any(jars.glob("ij-*.jar")) or not any(jars.glob("imagej-*.jar")):
        # pyimagej needs ImageJ2 (jars/imagej-*.jar) and would otherwise try Maven for a name
        raise JavaNotFoundError(
            f"{path} is not a Fiji.app: expected jars/ij-*.jar and jars/imagej-*.jar (ImageJ2). "
            f"For a plain ImageJ 1.x use backend='ij1' with ij_jar={path}.")
    return path


def start_pyimagej(fiji_dir) -> str:
    """Start ImageJ2 + ImageJ 1.x from a local Fiji.app with pyimagej, headless.

    Parameters
    ----------
    fiji_dir : str or Path
        The Fiji.app directory.

    Returns
    -------
    str
        ImageJ 1.x version inside Fiji.

    Raises
    ------
    JavaNotFoundError
        ``fiji_dir`` missing or not a Fiji.app, or pyimagej/Java missing.
    Tio2FijiError
        A JVM already runs in this process (e.g. the ``"ij1"`` backend): pyimagej and a plain JPype
        JVM cannot share one process.
    """
    with _lock:
        path = _check_fiji_dir(fiji_dir)
        jpype = _import_jpype()
        if jpype.isJVMStarted():
            if _state.backend == "pyimagej" and _state.fiji_dir == path:
                return _state.version
            raise Tio2FijiError(
                f"Cannot start pyimagej on {path}: a JVM already runs in this process "
                f"({_state.backend or 'other'} backend, {_state.jar or _state.fiji_dir or ''}). "
                f"pyimagej and the plain ImageJ 1.x backend cannot share a process; use a new one.")
        try:
            import imagej
            import scyjava
        except ImportError as err:
            raise JavaNotFoundError("The pyimagej backend needs `pip install pyimagej`.") from err
        _find_libjvm()  # a clear error before scyjava's own
        t0 = time.perf_counter()
        # Start the JVM ourselves as pyimagej would for a local Fiji (its jars + plugins on the
        # classpath): pyimagej 1.8.0's imagej.init() crashes with scyjava's fetch="never"
        # (UnboundLocalError in _guess_java_version), and fetch="auto" could download a JDK.
        # With a running JVM, imagej.init() only creates the ImageJ2 gateway.
        scyjava.config.set_java_constraints(fetch="never")
        # No Maven: pyimagej's import adds an imglyb endpoint (jgo would resolve it online into
        # ~/.jgo); pyimagej itself drops endpoints for a local Fiji. Caches stay in a temp dir.
        scyjava.config.endpoints.clear()
        cache = Path(tempfile.gettempdir()) / "tio2fiji-scyjava"
        scyjava.config.set_cache_dir(cache / "jgo")
        scyjava.config.set_m2_repo(cache / "m2")
        for jar in scyjava.config.find_jars(str(path / "jars")) + \
                scyjava.config.find_jars(str(path / "plugins")):
            scyjava.config.add_classpath(jar)
        scyjava.config.add_option("-Djava.awt.headless=true")
        scyjava.config.add_option(f"-Dplugins.dir={path / 'plugins'}")
        scyjava.config.add_option("--add-opens=java.base/java.lang=ALL-UNNAMED")  # ImageJ legacy
        try:
            scyjava.start_jvm()
            gateway = imagej.init(str(path), mode="headless")
        except Exception as err:  # pyimagej raises RuntimeError, jgo/JPype their own types
            raise Tio2FijiError(f"pyimagej could not start Fiji from {path}: {err}") from err
        if not gateway:  # pyimagej logs and returns False when ImageJ2 is missing
            raise Tio2FijiError(f"pyimagej found no ImageJ2 in {path} (net.imagej.ImageJ): is it a "
                                f"complete Fiji.app? This Python process must be restarted.")
        _state.backend, _state.fiji_dir, _state.gateway = "pyimagej", path, gateway
        _state.version = _imagej_in_jvm(jpype)
        _state.start_seconds = time.perf_counter() - t0
        logger.info("Started Fiji %s (ImageJ %s) with pyimagej in %.2f s", path, _state.version,
                    _state.start_seconds)
        return _state.version


def imagej_version(ij_jar=None) -> str:
    """Version string of the ImageJ 1.x running in this process (starts it if needed)."""
    return start_imagej(ij_jar)


def jvm_info() -> dict:
    """What this module started: backend, jar or Fiji dir, ImageJ version, JVM start seconds."""
    return {"backend": _state.backend, "jar": _state.jar, "fiji_dir": _state.fiji_dir,
            "version": _state.version, "start_seconds": _state.start_seconds}


# --------------------------------------------------------------------------------------------
# numpy <-> ImagePlus
# --------------------------------------------------------------------------------------------

def _as_binary_mask(array, name="mask") -> np.ndarray:
    return as_binary_mask(array, name, hint="The ImageJ backend measures binary masks only; for a "
                          "label image use the native backend (tio2fiji.particles.measure) or "
                          "`labels > 0`.")


def to_imageplus(array, title="mask", pixel_size=None):
    """Push a binary mask into ImageJ as an 8-bit ``ImagePlus`` (0 background, 255 particles).

    Parameters
    ----------
    array : (H, W) array_like
        bool, or numeric with zeros and one foreground value (e.g. 0/255, 0/1).
    title : str
        ImagePlus title.
    pixel_size : float, optional
        Pixel size in metres; sets the Calibration to pixelWidth = pixelHeight in nm, unit "nm".

    Returns
    -------
    ij.ImagePlus

    Raises
    ------
    InputError
        Not a 2-D binary mask, or a bad pixel size.
    """
    mask = _as_binary_mask(array, title)
    pw = pixel_size_nm(pixel_size)
    start_imagej()
    import jpype

    height, width = mask.shape
    data = mask.astype(np.uint8) * np.uint8(255)
    # One buffer copy into a Java byte[] (per-pixel calls would take seconds).
    pixels = jpype.JArray(jpype.JByte)(data.view(np.int8).ravel())
    ip = jpype.JClass("ij.process.ByteProcessor")(width, height, pixels)
    imp = jpype.JClass("ij.ImagePlus")(str(title), ip)
    if pw is not None:
        cal = imp.getCalibration()
        cal.pixelWidth = pw
        cal.pixelHeight = pw
        cal.setUnit("nm")
    return imp


def from_imageplus(imp) -> np.ndarray:
    """Pixels of an ImagePlus's current slice as a numpy array (uint8, uint16, float32 or RGB)."""
    start_imagej()
    ip = imp.getProcessor()
    shape = (int(ip.getHeight()), int(ip.getWidth()))
    bits = int(imp.getBitDepth())
    dtype = {8: np.int8, 16: np.int16, 32: np.float32, 24: np.int32}[bits]
    arr = np.array(ip.getPixels(), dtype=dtype).reshape(shape)
    if bits == 8:
        return arr.view(np.uint8)
    if bits == 16:
        return arr.view(np.uint16)
    if bits == 24:  # packed 0xRRGGBB
        packed = arr.view(np.uint32)
        return np.stack([(packed >> s) & 0xFF for s in (16, 8, 0)], axis=-1).astype(np.uint8)
    return arr


# --------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------

def _select_backend(backend: str, fiji_dir) -> str:
    if backend not in ("auto", "ij1", "pyimagej"):
        raise InputError(f"backend must be 'auto', 'ij1' or 'pyimagej', not {backend!r}.")
    if backend == "auto":
        return "pyimagej" if fiji_dir is not None else "ij1"
    return backend


def _analyzer_options(pa_class, connectivity: int, include_holes: bool, exclude_edges: bool) -> int:
    options = pa_class.SHOW_NONE
    if include_holes:
        options |= pa_class.INCLUDE_HOLES
    if exclude_edges:
        options |= pa_class.EXCLUDE_EDGE_PARTICLES
    if connectivity == 4:
        options |= pa_class.FOUR_CONNECTED
    return int(options)


def _measurements(m_class) -> int:
    return int(m_class.AREA | m_class.CENTROID | m_class.PERIMETER | m_class.RECT | m_class.ELLIPSE
               | m_class.SHAPE_DESCRIPTORS | m_class.FERET)


def _run_particle_analyzer(imp, options: int) -> dict:
    """Run ParticleAnalyzer on ``imp``; return the ResultsTable's columns as float64 arrays."""
    import jpype

    pa_class = jpype.JClass("ij.plugin.filter.ParticleAnalyzer")
    prefs = jpype.JClass("ij.Prefs")
    rt = jpype.JClass("ij.measure.ResultsTable")()
    # Size 0..inf pixels, circularity 0..1: every particle.
    pa = pa_class(options, _measurements(jpype.JClass("ij.measure.Measurements")), rt,
                  0.0, math.inf, 0.0, 1.0)
    pa.setHideOutputImage(True)
    old_black = bool(prefs.blackBackground)
    prefs.blackBackground = True  # 255 = particle
    try:
        ok = pa.analyze(imp)
    finally:
        prefs.blackBackground = old_black
    if not ok:
        raise Tio2FijiError(f"ImageJ's ParticleAnalyzer failed on {imp.getTitle()}.")
    n = int(rt.size())
    columns = {}
    for name in IMAGEJ_COLUMNS:
        if n == 0:
            columns[name] = np.zeros(0)
            continue
        idx = int(rt.getColumnIndex(name))
        if idx < 0:
            raise Tio2FijiError(f"ImageJ {_state.version} produced no {name!r} column.")
        # Full doubles, not the 3-decimal text of the Results window.
        columns[name] = np.array(rt.getColumnAsDoubles(idx), dtype=np.float64)
    return columns


def _assemble(columns: dict, shape, pw_nm, image_name: str) -> pd.DataFrame:
    df = pd.DataFrame({name: columns[name] for name in IMAGEJ_COLUMNS})
    n = len(df)
    extra = derived_columns(df["Area"].to_numpy(), df["Feret"].to_numpy(), df["MinFeret"].to_numpy(),
                            df["Major"].to_numpy(), df["Width"].to_numpy(), df["Height"].to_numpy())
    for name in ("FeretAR", "Compact", "Extent"):
        df[name] = extra[name]
    df["image"] = pd.Series([image_name] * n, dtype=object)
    df["label"] = np.arange(1, n + 1, dtype=np.int64)
    df["ECD"] = extra["ECD"]
    scale = 1.0 if pw_nm is None else pw_nm
    bx, by = np.rint(df["BX"] / scale), np.rint(df["BY"] / scale)
    bw, bh = np.rint(df["Width"] / scale), np.rint(df["Height"] / scale)
    height, width = shape
    df["touches_edge"] = ((bx <= 0) | (by <= 0) | (bx + bw >= width) | (by + bh >= height)).astype(bool)
    return df[list(COLUMNS)]


def measure_imagej(mask, pixel_size=None, connectivity=8, include_holes=False, exclude_edges=False,
                   image_name="", ij_jar=None, backend="auto", fiji_dir=None) -> pd.DataFrame:
    """Measure the particles of a binary mask with ImageJ's ParticleAnalyzer.

    Parameters
    ----------
    mask : (H, W) array_like
        Binary mask (bool, or zeros and one foreground value such as 255).
    pixel_size : float, optional
        Pixel size in metres. Lengths are then in nm and areas in nm², else in pixels.
    connectivity : {8, 4}
        Particle connectivity. 4 always includes holes (see Notes).
    include_holes : bool
        ImageJ's "Include holes": a particle is everything inside its outer outline.
    exclude_edges : bool
        ImageJ's "Exclude on edges": drop particles whose bounding box touches the image border.
    image_name : str
        Written to the ``image`` column.
    ij_jar : str or Path, optional
        ImageJ 1.x for the ``"ij1"`` backend, see :func:`find_ij_jar`.
    backend : {"auto", "ij1", "pyimagej"}
        ``"auto"`` is ``"pyimagej"`` if ``fiji_dir`` is given, else ``"ij1"``.
    fiji_dir : str or Path, optional
        Local Fiji.app for the ``"pyimagej"`` backend.

    Returns
    -------
    DataFrame
        One row per particle in ImageJ's order, columns :data:`COLUMNS`. ``FeretX``/``FeretY`` are
        pixel-corner coordinates even when calibrated (as in ImageJ). ``df.attrs`` records
        ``unit``, ``pixel_size_m``, ``connectivity``, ``include_holes`` (as applied),
        ``exclude_edges``, ``backend``, ``imagej_version``, ``imagej_source`` (jar or Fiji
        directory) and ``seconds`` (ParticleAnalyzer time).

    Raises
    ------
    InputError
        Not a 2-D binary mask, bad options or pixel size.
    JavaNotFoundError
        No Java or no ImageJ.

    Notes
    -----
    ImageJ 1.53t's ParticleAnalyzer with ``FOUR_CONNECTED`` but without ``INCLUDE_HOLES`` returns
    thousands of zero-area particles; later versions force include-holes for 4-connectivity. This
    function therefore always adds ``INCLUDE_HOLES`` when ``connectivity == 4``.
    """
    if connectivity not in (4, 8):
        raise InputError(f"connectivity must be 4 or 8, not {connectivity!r}.")
    which = _select_backend(backend, fiji_dir)
    binary = _as_binary_mask(mask, image_name or "mask")
    pw_nm = pixel_size_nm(pixel_size)
    holes = bool(include_holes) or connectivity == 4
    if holes and not include_holes:
        logger.info("connectivity=4: include_holes forced on (as in ImageJ >= 1.54; "
                    "ImageJ 1.53t returns nonsense without it)")
    version = start_pyimagej(fiji_dir) if which == "pyimagej" else start_imagej(ij_jar)
    import jpype

    with _lock:
        imp = to_imageplus(binary, title=image_name or "mask", pixel_size=pixel_size)
        options = _analyzer_options(jpype.JClass("ij.plugin.filter.ParticleAnalyzer"),
                                    connectivity, holes, exclude_edges)
        t0 = time.perf_counter()
        columns = _run_particle_analyzer(imp, options)
        seconds = time.perf_counter() - t0
    df = _assemble(columns, binary.shape, pw_nm, image_name)
    logger.debug("ImageJ measured %d particles in %s in %.3f s", len(df), image_name or "mask", seconds)
    df.attrs.update({
        "unit": "pixel" if pw_nm is None else "nm",
        "pixel_size_m": None if pixel_size is None else float(pixel_size),
        "connectivity": int(connectivity),
        "include_holes": holes,
        "include_holes_forced": holes and not include_holes,
        "exclude_edges": bool(exclude_edges),
        "backend": f"imagej-{_state.backend}",  # the JVM's, which may predate this call
        "imagej_source": str(_state.jar or _state.fiji_dir or ""),
        "imagej_version": version,
        "seconds": seconds,
    })
    return df


def compare_tables(reference, other, rtol=1e-6, atol=1e-9, angle_atol=1e-4) -> pd.DataFrame:
    """Column-by-column deviations between two particle tables (e.g. ImageJ vs native).

    Parameters
    ----------
    reference, other : DataFrame
        Tables with :data:`COLUMNS`, rows in the same (ImageJ's raster) order.
    rtol, atol : float
        A value agrees if ``|a - b| <= atol + rtol * max(|a|, |b|)``.
    angle_atol : float
        Degrees allowed for :data:`ANGLE_COLUMNS`, compared modulo 180 (179.99999 ~ 0).

    Returns
    -------
    DataFrame
        Indexed by column: ``max_abs``, ``max_rel`` (relative to ``max(|a|, |b|)``) and
        ``n_outside`` (values out of tolerance). The ``image`` column counts mismatching strings.

    Raises
    ------
    InputError
        If the row counts differ (the particles do not correspond).
    """
    if len(reference) != len(other):
        raise InputError(f"particle counts differ: {len(reference)} vs {len(other)}")
    rows = {}
    for col in COLUMNS:
        if col == "image":
            bad = int((reference[col].astype(str).to_numpy() != other[col].astype(str).to_numpy()).sum())
            rows[col] = (float(bad > 0), float(bad > 0), bad)
            continue
        a = reference[col].to_numpy(dtype=np.float64)
        b = other[col].to_numpy(dtype=np.float64)
        with np.errstate(invalid="ignore"):
            diff = np.abs(a - b)
            # equal (also both inf) or both NaN agree; NaN against a number does not
            same = (a == b) | (np.isnan(a) & np.isnan(b))
            diff = np.where(same, 0.0, np.where(np.isnan(diff), np.inf, diff))
            if col in ANGLE_COLUMNS:
                diff = np.minimum(diff, np.abs(180.0 - diff))
                allowed = np.full_like(diff, angle_atol)
            else:
                allowed = atol + rtol * np.fmax(np.abs(a), np.abs(b))
            scale = np.fmax(np.abs(a), np.abs(b))
            rel = np.where(diff == 0, 0.0, diff / np.where(scale > 0, scale, 1.0))
        rows[col] = (float(diff.max(initial=0.0)), float(rel.max(initial=0.0)),
                     int((diff > allowed).sum()))
    return pd.DataFrame.from_dict(rows, orient="index", columns=["max_abs", "max_rel", "n_outside"])


# --------------------------------------------------------------------------------------------
# Macros
# --------------------------------------------------------------------------------------------

@dataclass
class MacroResult:
    """What an ImageJ macro produced.

    Attributes
    ----------
    value : str or None
        The macro's ``return`` value.
    output : str
        Text the macro printed with ``print()`` (headless ImageJ sends it to stdout; captured).
    """

    value: str | None
    output: str


def run_macro(code: str, image=None, args: str = "", ij_jar=None) -> MacroResult:
    """Run ImageJ 1.x macro code headless.

    Only pure macro code works headless: built-in functions (``getPixel``, ``setPixel``, math,
    strings, ``getArgument()``...) but not menu commands (``run("...")``), which need a display.

    Parameters
    ----------
    code : str
        Macro source.
    image : array_like or ij.ImagePlus, optional
        The macro's current image; an array must be a binary mask (see :func:`to_imageplus`).
        Pass an ImagePlus to read changes back with :func:`from_imageplus`.
    args : str
        Returned by ``getArgument()`` inside the macro.
    ij_jar : str or Path, optional
        See :func:`start_imagej`.

    Returns
    -------
    MacroResult

    Raises
    ------
    Tio2FijiError
        The macro failed (syntax error, undefined variable, ``exit``, a menu command...).
    """
    start_imagej(ij_jar)
    import jpype

    with _lock:
        if image is not None and not isinstance(image, jpype.JObject):
            image = to_imageplus(image, title="macro-image")
        interp = jpype.JClass("ij.macro.Interpreter")()
        interp.setIgnoreErrors(True)  # report errors to us instead of opening a dialog
        system = jpype.JClass("java.lang.System")
        buffer = jpype.JClass("java.io.ByteArrayOutputStream")()
        old_out = system.out
        system.setOut(jpype.JClass("java.io.PrintStream")(buffer, True, "UTF-8"))
        wm = jpype.JClass("ij.WindowManager")
        if image is not None:
            wm.setTempCurrentImage(image)
        try:
            value = interp.run(str(code), str(args))
        except Exception as err:  # java.lang.RuntimeException("Macro canceled"), HeadlessException
            message = str(err)
            if "Headless" in type(err).__name__ or "Headless" in message:
                message = ("a menu command (run(...)) needs a display; headless ImageJ 1.x runs "
                           "only pure macro code")
            raise Tio2FijiError(f"ImageJ macro failed: {message}") from err
        finally:
            system.setOut(old_out)
            if image is not None:
                wm.setTempCurrentImage(None)
        output = str(buffer.toString("UTF-8"))
        if interp.wasError() or interp.getErrorMessage() is not None:
            raise Tio2FijiError(f"ImageJ macro error: {interp.getErrorMessage()}")
    return MacroResult(value=None if value is None else str(value), output=output)
