"""Validation of purifier parameters: every bad value is a one-line error naming it and its valid range."""

from __future__ import annotations

import math
from collections.abc import Iterable
from numbers import Integral, Real
from typing import Any

from models.errors import RobustgridError


def check_int(what: str, name: str, value: Any, minimum: int, odd: bool = False) -> int:
    """``value`` as an int >= ``minimum`` (odd if asked); bools and floats are rejected, not truncated."""
    valid = f"an {'odd ' if odd else ''}integer >= {minimum}"
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum or (odd and value % 2 == 0):
        raise RobustgridError(f"{what}: {name} must be {valid}, got {value!r}")
    return int(value)


def check_float(what: str, name: str, value: Any, low: float, high: float = math.inf,
                low_open: bool = False) -> float:
    """``value`` as a finite float in [low, high] (or (low, high] when ``low_open``)."""
    valid = f"a finite number in {'(' if low_open else '['}{low:g}, {high:g}{')' if math.isinf(high) else ']'}"
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(float(value))
    if ok:
        v = float(value)
        ok = (v > low if low_open else v >= low) and v <= high
    if not ok:
        raise RobustgridError(f"{what}: {name} must be {valid}, got {value!r}")
    return float(value)


def check_choice(what: str, name: str, value: Any, choices: Iterable[str]) -> str:
    """``value`` if it is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise RobustgridError(f"{what}: {name} must be one of {', '.join(choices)}, got {value!r}")
    return str(value)
