"""ImageJ 1.x macro code, run headless in the bridge's JVM."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import Tio2FijiError
from ._convert import to_imageplus
from ._jvm import _lock, start_imagej


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
