"""Train/validation/test splits of image ids, drawn reproducibly from a seed and kept in
``split.json`` with what is needed to draw them again (:func:`write_split`, :func:`read_split`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io import write_json

__all__ = ["SPLIT_NAMES", "make_split", "write_split", "read_split"]

SPLIT_NAMES = ("train", "val", "test")
_SPLIT_FORMAT = "tio2fiji-split"


def _counts_from_fractions(n: int, fractions) -> list:
    """Largest-remainder rounding; ties go to test, then val (a larger test set is more useful)."""
    raw = [f * n for f in fractions]
    base = [math.floor(r + 1e-9) for r in raw]
    left = n - sum(base)
    frac = [round(r - b, 9) for r, b in zip(raw, base)]
    for i in sorted(range(3), key=lambda i: (-frac[i], -i))[:left]:
        base[i] += 1
    # every split asked for gets at least one id when there are enough
    if n >= sum(f > 0 for f in fractions):
        for i in range(3):
            if fractions[i] > 0 and base[i] == 0:
                j = int(np.argmax(base))
                base[j] -= 1
                base[i] += 1
    return base


def make_split(ids, fractions=(0.7, 0.15, 0.15), seed: int = 0, counts=None) -> dict:
    """Split ids into train/val/test at random, reproducibly from ``seed``.

    Parameters
    ----------
    ids : sequence of str
        Unique ids (image names); their order does not matter (they are sorted first).
    fractions : 3 floats summing to 1
        Train, validation and test fractions; counts are rounded by largest remainder (30 ids with
        the default give 21/4/5).
    seed : int
    counts : 3 ints, optional
        Exact sizes instead of fractions. Ids beyond their sum go to ``"unused"``.

    Returns
    -------
    dict
        ``{"train": [...], "val": [...], "test": [...]}`` (each sorted), plus ``"unused"`` when
        ``counts`` leave ids over.
    """
    ids = sorted(str(i) for i in ids)
    if len(set(ids)) != len(ids):
        raise InputError("make_split: ids must be unique.")
    n = len(ids)
    if counts is not None:
        counts = [int(c) for c in counts]
        if len(counts) != 3 or min(counts) < 0:
            raise InputError(f"counts must be 3 non-negative integers (train, val, test), got {counts}.")
        if sum(counts) > n:
            raise InputError(f"counts {counts} ask for {sum(counts)} ids but there are {n}.")
    else:
        fractions = [float(f) for f in fractions]
        if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
            raise InputError(f"fractions must be 3 non-negative numbers summing to 1, got {fractions}.")
        counts = _counts_from_fractions(n, fractions)
    order = np.random.default_rng(seed).permutation(n)
    out, start = {}, 0
    for name, c in zip(SPLIT_NAMES, counts):
        out[name] = sorted(ids[i] for i in order[start:start + c])
        start += c
    if start < n:
        out["unused"] = sorted(ids[i] for i in order[start:])
    return out


def write_split(path, split: dict, meta: dict | None = None) -> Path:
    """Write a split to ``split.json`` (atomically) with what is needed to reproduce it.

    Parameters
    ----------
    path : path
    split : dict
        ``{"train": [...], "val": [...], "test": [...]}`` (more keys allowed, e.g. ``"unused"``).
    meta : dict
        Must hold ``"seed"``; should hold ``"fractions"`` or ``"counts"``. Written at the top level.
    """
    meta = dict(meta or {})
    if "seed" not in meta:
        raise InputError("write_split: meta must record the 'seed' the split was drawn with.")
    _check_split(split)
    doc = {"format": _SPLIT_FORMAT, "version": 1, **meta,
           "splits": {k: list(v) for k, v in split.items()}}
    return write_json(path, doc)


def _check_split(split: dict) -> None:
    for name in SPLIT_NAMES:
        if name not in split:
            raise InputError(f"split has no {name!r} list.")
    seen: dict = {}
    for name, ids in split.items():
        for i in ids:
            if i in seen:
                raise InputError(f"split: {i!r} is in both {seen[i]!r} and {name!r}.")
            seen[i] = name


def read_split(path) -> tuple[dict, dict]:
    """Read ``split.json``; returns ``(split, meta)`` as written by :func:`write_split`."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError(f"{path}: split file not found.") from exc
    except ValueError as exc:
        raise InputError(f"{path}: not a JSON split file ({exc}).") from exc
    if not isinstance(doc, dict) or doc.get("format") != _SPLIT_FORMAT or "splits" not in doc:
        raise InputError(f"{path}: not a tio2fiji split file (no format '{_SPLIT_FORMAT}').")
    split = doc.pop("splits")
    _check_split(split)
    return split, doc
