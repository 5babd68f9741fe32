"""ImageJ 1.x macro code, run headless in the bridge's JVM; the macros tio2fiji ships
(``tio2fiji/macros/*.ijm``, package data) and their installation into a Fiji or ImageJ."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, OutputError, Tio2FijiError
from ..io import atomic_write
from ._convert import to_imageplus
from ._jvm import _lock, start_imagej

#: The ImageJ macros tio2fiji ships, in ``tio2fiji/macros/`` (package data: in a wheel too).
MACRO_FILES = ("TiO2_Particle_Analysis.ijm", "TiO2_Segment.ijm", "BioVoxxel_Particle_Distribution.ijm")
#: Where :func:`install_macros` puts them in a Fiji.app or ImageJ folder: ImageJ lists ``.ijm``
#: files with an underscore in a ``plugins/`` subfolder under *Plugins*, across restarts.
INSTALL_DIR = "plugins/Macros"


def macro_file(name: str) -> Path:
    """Path of the shipped macro ``name`` (one of :data:`MACRO_FILES`) inside the installed package."""
    if name not in MACRO_FILES:
        raise InputError(f"{name!r} is not one of tio2fiji's macros ({', '.join(MACRO_FILES)}).")
    path = Path(__file__).resolve().parent.parent / "macros" / name
    if not path.is_file():
        raise Tio2FijiError(f"The ImageJ macro {path} is missing from the installed tio2fiji; "
                            f"reinstall tio2fiji.")
    return path


def _is_imagej_folder(folder: Path) -> bool:
    """A Fiji.app (``jars/ij-*.jar``) or an ImageJ 1.x folder (``ij.jar``) with its ``plugins/``."""
    has_jar = (folder / "ij.jar").is_file() or any((folder / "jars").glob("ij-*.jar")) \
        or (folder / "jars" / "ij.jar").is_file()
    return has_jar and (folder / "plugins").is_dir()


def install_macros(app, overwrite: bool = False) -> list:
    """Copy tio2fiji's macros (:data:`MACRO_FILES`) into a Fiji or ImageJ installation.

    They go to ``app/plugins/Macros/`` (:data:`INSTALL_DIR`, created when missing), where Fiji and
    ImageJ 1.x list them under *Plugins › Macros* after a restart (or *Help › Refresh Menus*).

    Parameters
    ----------
    app : path
        The ``Fiji.app`` folder (``jars/ij-*.jar``) or an ImageJ 1.x folder (``ij.jar``); both
        with a ``plugins/`` folder.
    overwrite : bool
        Replace a file of the same name that differs from tio2fiji's (without it such a file
        makes the call refuse before anything is written: it may be the user's own edit).

    Returns
    -------
    list of (Path, str)
        Each target and what happened: ``"written"``, ``"replaced"`` or ``"unchanged"`` (already
        identical).

    Raises
    ------
    InputError
        ``app`` is not a Fiji/ImageJ installation, or a differing file is there and not
        ``overwrite``.
    OutputError
        The folder cannot be written.
    """
    app = Path(app)
    if not app.is_dir() or not _is_imagej_folder(app):
        what = "does not exist" if not app.exists() else "is not a folder" if not app.is_dir() else \
            "is not a Fiji or ImageJ installation (no jars/ij-*.jar or ij.jar beside a plugins/ folder)"
        raise InputError(f"{app}: {what}; give the Fiji.app folder (or an ImageJ 1.x folder).")
    target = app / INSTALL_DIR
    plan = []
    for name in MACRO_FILES:
        data = macro_file(name).read_bytes()
        dest = target / name
        old = dest.read_bytes() if dest.is_file() else None
        plan.append((dest, data, "written" if old is None else "unchanged" if old == data else "replaced"))
    differ = [str(d) for d, _, how in plan if how == "replaced"]
    if differ and not overwrite:
        raise InputError(f"{', '.join(differ)}: differ from tio2fiji's macros (an older tio2fiji's, or "
                         f"edited); give --overwrite to replace them, or move them away.")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError.from_os_error(target, exc) from exc
    for dest, data, how in plan:
        if how != "unchanged":
            atomic_write(dest, lambda p, data=data: Path(p).write_bytes(data))
    return [(dest, how) for dest, _, how in plan]


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
    with _lock:
        return _run_macro(code, image, args)


def _run_macro(code: str, image, args: str) -> MacroResult:
    """:func:`run_macro` in a started ImageJ; the caller holds the bridge's lock."""
    import jpype

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
