"""Exceptions raised by tio2fiji.

Every error that a user can cause (bad file, bad option, missing Java) is a
:class:`Tio2FijiError`, so the command line can print its message without a traceback.
Messages name the file, say what is wrong, and say what to do.
"""

import errno
import shutil
from pathlib import Path

__all__ = ["Tio2FijiError", "InputError", "CalibrationError", "JavaNotFoundError", "OutputError"]


class Tio2FijiError(Exception):
    """Base class of all errors that tio2fiji reports to the user."""


class InputError(Tio2FijiError, ValueError):
    """An input file or array is unusable (corrupt, wrong type, wrong size, ...)."""


class CalibrationError(Tio2FijiError):
    """A physical pixel size was required but none is known."""


class JavaNotFoundError(Tio2FijiError, RuntimeError):
    """Java or ImageJ (ij.jar) is missing for the ImageJ backend."""


class OutputError(Tio2FijiError, OSError):
    """An output cannot be written: not a folder, read-only, disk full, or locked by another run.

    The message names the output, not the input that was being processed.
    """

    @classmethod
    def from_os_error(cls, path, exc: OSError) -> "OutputError":
        """The one-line error for an ``OSError`` raised while writing ``path``."""
        if isinstance(exc, Tio2FijiError):
            return exc
        hint = {errno.ENOSPC: "the disk is full: free some space or choose another --out",
                errno.EDQUOT: "the disk quota is exceeded: free some space or choose another --out",
                errno.EROFS: "the file system is read-only: choose another --out",
                errno.EACCES: "permission denied: choose a folder you can write to",
                errno.EPERM: "not permitted: choose a folder you can write to",
                errno.ENOTDIR: "a part of the path is a file, not a folder: choose another --out"}
        reason = exc.strerror or str(exc) or type(exc).__name__
        code = exc.errno
        if code is None and _nearly_full(path):  # short writes (tifffile) carry no errno
            code = errno.ENOSPC
        what = hint.get(code, "check that the folder exists, is writable and has free space")
        return cls(f"{path}: cannot write the output ({reason}); {what}.")


def _nearly_full(path, margin=1 << 20) -> bool:
    """Whether the disk of ``path``'s folder has less than ``margin`` bytes free."""
    try:
        return shutil.disk_usage(Path(path).parent).free < margin
    except OSError:
        return False
