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

Other modules that call ImageJ directly use :func:`session` (a context manager that starts ImageJ
if needed, holds the bridge's lock and yields a :class:`Session` for Java classes, image
conversion, plugins and macros) instead of JPype and the lock.

Layout: ``_jvm`` (finding Java and ImageJ, starting the JVM, pyimagej), ``_convert``
(:func:`to_imageplus`, :func:`from_imageplus`), ``_measure`` (:func:`measure_imagej`,
:func:`compare_tables`), ``_macro`` (:func:`run_macro`, :class:`MacroResult`; the shipped macros
:data:`MACRO_FILES`, :func:`macro_file`, :func:`install_macros`) and ``_session``
(:func:`session`, :class:`Session`).
"""

from ..particles import ANGLE_COLUMNS, COLUMNS, IMAGEJ_COLUMNS
from ._convert import from_imageplus, to_imageplus
from ._jvm import (
    ENV_IJ_JAR,
    SYSTEM_IJ_JAR,
    find_ij_jar,
    imagej_version,
    jvm_info,
    start_imagej,
    start_pyimagej,
)
from ._macro import INSTALL_DIR, MACRO_FILES, MacroResult, install_macros, macro_file, run_macro
from ._measure import compare_tables, measure_imagej
from ._session import Session, session

#: Who measures particles and finds UEPs: tio2fiji's own ports ("native") or this real ImageJ.
BACKENDS = ("native", "imagej")

__all__ = [
    "BACKENDS",
    "ANGLE_COLUMNS",
    "COLUMNS",
    "ENV_IJ_JAR",
    "IMAGEJ_COLUMNS",
    "INSTALL_DIR",
    "MACRO_FILES",
    "MacroResult",
    "SYSTEM_IJ_JAR",
    "Session",
    "compare_tables",
    "find_ij_jar",
    "from_imageplus",
    "imagej_version",
    "install_macros",
    "jvm_info",
    "macro_file",
    "measure_imagej",
    "run_macro",
    "session",
    "start_imagej",
    "start_pyimagej",
    "to_imageplus",
]
