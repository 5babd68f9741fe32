"""The ``tio2fiji`` command line. It parses arguments, calls library functions and prints.

``main`` and its subgroups live in :mod:`._groups`; each command module registers its commands on
them when it is imported, here. Library functions are imported by the commands that use them, so
that ``tio2fiji info`` does not load torch.
"""

from __future__ import annotations

from . import _analyze, _dataset, _inspect, _measure, _segment, _train  # noqa: F401  (register the commands)
from ._groups import main

__all__ = ["main"]
