"""The ``tio2fiji`` command line. It parses arguments, calls library functions and prints.

``main`` and its subgroups live in :mod:`._groups`; each command module registers its commands on
them when one of its commands is run (:data:`._groups.COMMANDS`), so that ``tio2fiji --help`` and
``tio2fiji info`` start without torch. Library functions are imported by the commands that use them.
"""

from __future__ import annotations

from ._groups import main

__all__ = ["main"]
