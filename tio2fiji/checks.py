"""The domain of every numeric option, and the plausibility of a segmentation: one place for both.

*Option domains.* :data:`DOMAINS` names, per option (the library's parameter name; the command
line's ``--n-sim`` is ``n_sim``), which values mean something: ``alpha`` in (0, 1), ``n_sim`` an
integer >= 1, thresholds finite and in [0, 1], ... :func:`check_option` and :func:`check_options`
raise :class:`~tio2fiji.errors.InputError` with one message format::

    alpha must be a number in (0, 1), got -1.0 (e.g. 0.05).

The library functions call them, so the Python API is protected too; the command line builds its
option types from the same :data:`DOMAINS`, so both say the same thing.

*Monte Carlo tests.* A rank test with ``n_sim`` simulations cannot give a p below
:func:`smallest_p_value` (``2 / (n_sim + 1)`` two-sided). When that is not below ``alpha``
the test cannot find anything; the tests then say ``"not testable"`` (with that smallest p) rather
than "random" (:func:`significance_note`).

*Plausibility.* :func:`plausibility_warnings` flags segmentations that are almost certainly wrong:
an all-white or inverted mask. The rule comes from the real data: the bundled examples cover 8–16 %
of the analysed area, with no particle above 0.35 % of it; the 30 BAM images cover at most about
35 %. An inverted example mask covers 84–92 %, in one particle; an all-white frame ~96 %.
"""

from __future__ import annotations

import logging
import math
import numbers
import warnings
from dataclasses import dataclass

import numpy as np

from .errors import InputError

__all__ = ["Domain", "DOMAINS", "ResultWarning", "check_option", "check_options",
           "smallest_p_value", "min_n_sim", "significance_note", "MAX_FOREGROUND_FRACTION",
           "MAX_PARTICLE_FRACTION", "plausibility_warnings", "warn_result"]

log = logging.getLogger(__name__)


class ResultWarning(UserWarning):
    """A result is computed but should not be trusted as it is (it is also written to the outputs)."""


@dataclass(frozen=True)
class Domain:
    """The values an option may take: an integer or finite real in an interval.

    Attributes
    ----------
    integer : bool
        Whole numbers only.
    low, high : float, optional
        Bounds (None: unbounded).
    low_open, high_open : bool
        Whether a bound is excluded.
    hint : str
        What to give instead, e.g. ``"e.g. 0.05"``.
    """

    integer: bool = False
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    hint: str = ""

    def text(self) -> str:
        """The domain in words: ``"a number in (0, 1)"``, ``"an integer >= 1"``."""
        kind = "an integer" if self.integer else "a number"
        if self.low is not None and self.high is not None:
            return (f"{kind} in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}"
                    f"{')' if self.high_open else ']'}")
        if self.low is not None:
            return f"{kind} {'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            return f"{kind} {'<' if self.high_open else '<='} {self.high:g}"
        return kind if self.integer else "a finite number"

    def contains(self, x) -> bool:
        """Whether the (already converted) number ``x`` is in the domain."""
        if not math.isfinite(x):
            return False
        if self.low is not None and (x <= self.low if self.low_open else x < self.low):
            return False
        return not (self.high is not None and (x >= self.high if self.high_open else x > self.high))


_PROB = Domain(False, 0.0, 1.0, hint="a probability, e.g. 0.5")
_POS_INT = Domain(True, 1)

#: Option name -> its :class:`Domain`. ``None`` always means "the default" and is not checked.
DOMAINS = {
    # statistics
    "alpha": Domain(False, 0.0, 1.0, True, True, "e.g. 0.05"),
    "level": Domain(False, 0.0, 1.0, True, True, "e.g. 0.95"),
    "n_sim": Domain(True, 1, hint="e.g. 199"),
    "envelope_sims": Domain(True, 0, hint="0: no envelopes; e.g. 39"),
    "n_boot": Domain(True, 1, hint="e.g. 1000"),
    "seed": Domain(True, 0, hint="e.g. 0"),
    # thresholds
    "threshold": _PROB,
    "score_threshold": _PROB,
    "mask_threshold": Domain(False, 0.0, 1.0, high_open=True, hint="e.g. 0.5"),
    "gray_threshold": Domain(False, 0.0, hint="a gray value of the mask, e.g. 127"),
    "min_size": Domain(True, 1, hint="pixels, e.g. 10 (1: every object)"),
    # images and tiling
    "pixel_size_m": Domain(False, 0.0, low_open=True, hint="metres per pixel, e.g. 7.34e-9"),
    "data_bar_rows": Domain(True, 0, hint="0: no data bar"),
    "page": Domain(True, 0, hint="the first page is 0"),
    "overlap": Domain(True, 0, hint="e.g. 64"),
    "tile": _POS_INT,
    "batch_size": _POS_INT,
    # training
    "epochs": _POS_INT,
    "epochs_heads": Domain(True, 0),
    "epochs_all": Domain(True, 0),
    "lr": Domain(False, 0.0, low_open=True, hint="e.g. 1e-4"),
    "lr_final": Domain(False, 0.0, low_open=True, hint="e.g. 1e-5"),
    "gap_weight": Domain(False, 0.0, hint="0: no extra weight"),
    "border_weight": Domain(False, 0.0, low_open=True, hint="e.g. 1"),
    "distance_weight": Domain(False, 0.0, hint="0: no distance output; e.g. 1"),
    "head_lr_factor": Domain(False, 0.0, low_open=True, hint="e.g. 10 for a new head"),
    "touch_p": Domain(False, 0.0, 1.0, hint="0: crops drawn anywhere; e.g. 0.5"),
    "crops_per_epoch": _POS_INT,
    "n_rays": Domain(True, 3, hint="e.g. 32"),
    "threads": Domain(True, 0, hint="0 or omitted: torch's choice"),
    "workers": Domain(True, 0, hint="0: load data in the main process"),
    "trainable_backbone_layers": Domain(True, 0, 5),
}


def _as_number(value, integer: bool):
    """``value`` as int/float, or None when it is not a number (strings are parsed)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, numbers.Real):
        return None
    x = float(value)
    if integer:
        if not math.isfinite(x) or x != int(x):
            return None
        return int(x)
    return x


def check_option(name: str, value, label: str | None = None):
    """``value`` converted to int/float when it lies in ``DOMAINS[name]``, else an error.

    Parameters
    ----------
    name : str
        A key of :data:`DOMAINS`.
    value : number or str
        ``None`` is returned as it is (the option's default).
    label : str, optional
        How the message names the option (default ``name``).

    Returns
    -------
    int, float or None

    Raises
    ------
    InputError
        ``"<label> must be <domain>, got <value> (<hint>)."``
    """
    if value is None:
        return None
    dom = DOMAINS[name]
    x = _as_number(value, dom.integer)
    if x is None or not dom.contains(x):
        raise InputError(f"{label or name} {domain_message(name, value)}")
    return x


def domain_message(name: str, value) -> str:
    """``"must be <domain>, got <value> (<hint>)."``, the tail of :func:`check_option`'s message."""
    dom = DOMAINS[name]
    hint = f" ({dom.hint})" if dom.hint else ""
    shown = value if isinstance(value, str) else repr(value)  # the command line's text as typed
    return f"must be {dom.text()}, got {shown}{hint}."


def check_options(**values) -> dict:
    """:func:`check_option` for each ``name=value``; returns the converted values."""
    return {name: check_option(name, value) for name, value in values.items()}


# --------------------------------------------------------------------------------------------------
# Monte Carlo tests


def smallest_p_value(n_sim: int, sides: int = 2) -> float:
    """The smallest p a rank test with ``n_sim`` simulations can give: ``sides / (n_sim + 1)``."""
    return min(1.0, sides / (int(n_sim) + 1))


def min_n_sim(alpha: float, sides: int = 2) -> int:
    """The fewest simulations with which p < ``alpha`` is possible."""
    n = max(1, math.floor(sides / alpha) - 1)
    while not smallest_p_value(n, sides) < alpha:
        n += 1
    return n


def significance_note(n_sim: int, alpha: float, sides: int = 2) -> str | None:
    """Why a Monte Carlo test cannot be significant, or None when it can."""
    p_min = smallest_p_value(n_sim, sides)
    if p_min < alpha:
        return None
    return (f"not testable: with n_sim={int(n_sim)} simulations the smallest attainable p is "
            f"{p_min:.3g}, not below alpha={alpha:g}; use n_sim >= {min_n_sim(alpha, sides)}")


def warn_result(message: str, stacklevel: int = 3) -> None:
    """Say a :class:`ResultWarning` through :mod:`warnings` (the command line prints it) and the log
    (at INFO, so that ``-v`` does not print it twice)."""
    log.info("%s", message)
    warnings.warn(message, ResultWarning, stacklevel=stacklevel)


# --------------------------------------------------------------------------------------------------
# plausibility of a segmentation

#: More of the analysed area than this is particle: an all-white, inverted or wrong-threshold mask.
MAX_FOREGROUND_FRACTION = 0.60
#: One particle larger than this fraction of the analysed area: background taken for particle.
MAX_PARTICLE_FRACTION = 0.25


def plausibility_warnings(foreground_px, particle_areas_px, width: int, height: int,
                          name: str = "", warn: bool = True) -> list:
    """Warnings for a segmentation that is almost certainly wrong (the rule is in the module doc).

    Parameters
    ----------
    foreground_px : int
        Particle pixels of the mask.
    particle_areas_px : array_like
        Area of each particle in pixels.
    width, height : int
        The analysed area in pixels.
    name : str
        The image, named in the messages.
    warn : bool
        Also say each through :func:`warn_result` (``warnings`` and logging).

    Returns
    -------
    list of str
        Empty for a plausible segmentation. Triggers: foreground above
        :data:`MAX_FOREGROUND_FRACTION` of the analysed area (an all-white frame, an inverted
        mask, a threshold below the background), or a particle above
        :data:`MAX_PARTICLE_FRACTION` of it (the background taken for one particle).
    """
    total = float(width) * float(height)
    if total <= 0:
        return []
    out = []
    where = f"{name}: " if name else ""
    fg = float(foreground_px) / total
    if fg > MAX_FOREGROUND_FRACTION:
        out.append(f"{where}{fg:.0%} of the analysed area is particle (more than "
                   f"{MAX_FOREGROUND_FRACTION:.0%} is implausible for particles on a substrate): "
                   f"is the mask inverted, the frame blank or the threshold too low?")
    areas = np.asarray(particle_areas_px, dtype=np.float64).ravel()
    if areas.size and areas.max() / total > MAX_PARTICLE_FRACTION:
        out.append(f"{where}one particle covers {areas.max() / total:.0%} of the analysed area (more "
                   f"than {MAX_PARTICLE_FRACTION:.0%}): probably background taken for a particle "
                   f"(an inverted mask?)")
    if warn:
        for message in out:
            warn_result(message)
    return out
