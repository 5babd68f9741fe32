"""Exceptions raised by tio2fiji.

Every error that a user can cause (bad file, bad option, missing Java) is a
:class:`Tio2FijiError`, so the command line can print its message without a traceback.
Messages name the file, say what is wrong, and say what to do.
"""

__all__ = ["Tio2FijiError", "InputError", "CalibrationError", "JavaNotFoundError"]


class Tio2FijiError(Exception):
    """Base class of all errors that tio2fiji reports to the user."""


class InputError(Tio2FijiError, ValueError):
    """An input file or array is unusable (corrupt, wrong type, wrong size, ...)."""


class CalibrationError(Tio2FijiError):
    """A physical pixel size was required but none is known."""


class JavaNotFoundError(Tio2FijiError, RuntimeError):
    """Java or ImageJ (ij.jar) is missing for the ImageJ backend."""
