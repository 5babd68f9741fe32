"""A session with the running ImageJ 1.x: Java classes, images, plugins and macros under the lock.

Code outside this package that calls ImageJ directly (e.g. :mod:`tio2fiji.distribution`) goes
through :func:`session`, so it neither imports JPype nor handles the bridge's lock itself.
"""

from __future__ import annotations

from contextlib import contextmanager

from ..errors import Tio2FijiError
from ._convert import from_imageplus, to_imageplus
from ._jvm import _lock, start_imagej
from ._macro import MacroResult, _run_macro


class Session:
    """The ImageJ 1.x of this process, usable inside the ``with`` block of :func:`session`.

    Attributes
    ----------
    version : str
        ImageJ's version, e.g. ``"1.53t"``.

    Notes
    -----
    The methods raise :class:`Tio2FijiError` once the ``with`` block has ended: Java objects are
    used only while the bridge's lock is held. Java objects obtained in the block (classes,
    images) remain valid Python objects afterwards.
    """

    def __init__(self, version: str):
        self.version = version
        self._open = True

    def __repr__(self) -> str:
        state = "open" if self._open else "ended"
        return f"<tio2fiji.imagej.Session ImageJ {self.version} ({state})>"

    def _check_open(self) -> None:
        if not self._open:
            raise Tio2FijiError("This ImageJ session has ended: use it inside its "
                                "`with tio2fiji.imagej.session() as s:` block.")

    def jclass(self, name: str):
        """The Java class ``name``, e.g. ``s.jclass("ij.Prefs")``.

        Parameters
        ----------
        name : str
            Fully qualified class name (``"ij.plugin.filter.EDM"``).

        Returns
        -------
        jpype.JClass
            Call it to construct an instance; its static fields and methods are attributes.
        """
        self._check_open()
        import jpype

        return jpype.JClass(name)

    def to_imageplus(self, array, title="mask", pixel_size_m=None):
        """A binary mask as an 8-bit ``ImagePlus``; see :func:`tio2fiji.imagej.to_imageplus`."""
        self._check_open()
        return to_imageplus(array, title=title, pixel_size_m=pixel_size_m)

    def from_imageplus(self, imp):
        """An ImagePlus as a numpy array; see :func:`tio2fiji.imagej.from_imageplus`."""
        self._check_open()
        return from_imageplus(imp)

    def run_plugin(self, imp, class_name: str, arg: str = ""):
        """Run an ImageJ 1.x plugin or filter on ``imp``: ``IJ.runPlugIn(imp, class_name, arg)``.

        Parameters
        ----------
        imp : ij.ImagePlus
            The image the plugin works on (filters change it in place).
        class_name : str
            The plugin's class, e.g. ``"ij.plugin.filter.EDM"``.
        arg : str
            The plugin's argument, e.g. ``"points"``.

        Returns
        -------
        object
            The plugin instance, or None if ImageJ could not create it.
        """
        return self.jclass("ij.IJ").runPlugIn(imp, class_name, arg)

    def run_macro(self, code: str, image=None, args: str = "") -> MacroResult:
        """Run ImageJ 1.x macro code headless; see :func:`tio2fiji.imagej.run_macro`."""
        self._check_open()
        return _run_macro(code, image, args)


@contextmanager
def session(ij_jar=None):
    """Start ImageJ 1.x if needed and hold the bridge's lock; yield a :class:`Session`.

    Parameters
    ----------
    ij_jar : str or Path, optional
        Where ImageJ is; see :func:`tio2fiji.imagej.start_imagej` (a JVM that already runs,
        e.g. Fiji's through pyimagej, is reused).

    Yields
    ------
    Session
        Java classes, image conversion, plugins and macros; valid until the block ends.

    Raises
    ------
    JavaNotFoundError
        No Java runtime or no ImageJ.
    Tio2FijiError
        The JVM already runs with another ImageJ.

    Examples
    --------
    >>> with session() as s:                                  # doctest: +SKIP
    ...     imp = s.to_imageplus(mask)
    ...     s.run_plugin(imp, "ij.plugin.filter.EDM", "points")
    ...     ueps = s.from_imageplus(imp)

    The lock is re-entrant: sessions may nest, and :func:`tio2fiji.imagej.measure_imagej` or
    :func:`tio2fiji.imagej.run_macro` may be called inside one.
    """
    version = start_imagej(ij_jar)
    with _lock:
        s = Session(version)
        try:
            yield s
        finally:
            s._open = False
