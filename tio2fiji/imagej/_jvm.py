"""Finding Java and ImageJ 1.x, and starting this process's one JVM (plain JPype or pyimagej).

The bridge's state lives here: ``_lock``, held while Java objects are used, and ``_state``, which
records the backend that started the JVM and its jar or Fiji.app.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import JavaNotFoundError, Tio2FijiError

logger = logging.getLogger(__package__)  # "tio2fiji.imagej", as before the split

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
    """What the bridge started: backend, jar or Fiji dir, ImageJ version, JVM start seconds."""
    return {"backend": _state.backend, "jar": _state.jar, "fiji_dir": _state.fiji_dir,
            "version": _state.version, "start_seconds": _state.start_seconds}
