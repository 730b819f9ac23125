"""The core every package shares: the one exception type, the name -> constructor registry, parameter validation.

Imports nothing of robustgrid, so ``models``, ``attacks``, ``defenses`` and ``benchmark`` all build on it.
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any, Generic, TypeVar


class RobustgridError(ValueError):
    """A bad input (name, value, file, config) named in a one-line message."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered constructor with its one-line description and metadata."""

    name: str
    fn: Callable[..., T]
    description: str
    meta: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Holds constructors by name; unknown names raise an error that lists the closest names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, **meta: Any) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator: register ``fn`` under ``name``; the docstring's first line is its description."""

        def deco(fn: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise RobustgridError(f"{self.kind} {name!r} is already registered")
            doc = inspect.getdoc(fn) or ""
            self._entries[name] = Entry(name, fn, doc.splitlines()[0] if doc else "", dict(meta))
            return fn

        return deco

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entry(self, name: str) -> Entry[T]:
        if name not in self._entries:
            close = difflib.get_close_matches(name, self.names(), n=3, cutoff=0.4)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(self.names())}"
            raise RobustgridError(f"unknown {self.kind} {name!r}{hint}")
        return self._entries[name]

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def build(self, name: str, **params: Any) -> T:
        """Construct ``name`` with keyword overrides; unknown keywords are an error naming them."""
        entry = self.entry(name)
        check_params(entry.fn, params, f"{self.kind} {name!r}")
        try:
            return entry.fn(**params)
        except TypeError as exc:  # a builder taking **kwargs passed on an unknown keyword
            if "unexpected keyword argument" not in str(exc):
                raise
            raise RobustgridError(f"{self.kind} {name!r}: {exc}") from None

    def describe(self) -> list[tuple[str, str]]:
        return [(n, self._entries[n].description) for n in self.names()]


def accepted_params(fn: Callable[..., Any]) -> list[str] | None:
    """Keyword names ``fn`` accepts; for a class, ``**kwargs`` forwarded up the MRO are followed.

    None means anything goes (a plain function taking ``**kwargs``).
    """
    chain = [c.__init__ for c in fn.__mro__ if "__init__" in vars(c)] if inspect.isclass(fn) else [fn]
    names: list[str] = []
    for f in chain:
        params = inspect.signature(f).parameters
        names += [n for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
                  and n != "self" and n not in names]
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return names
    return None if not inspect.isclass(fn) else names


def check_params(fn: Callable[..., Any], params: dict[str, Any], what: str) -> None:
    """Raise a one-line error for keywords ``fn`` does not accept (with close matches)."""
    allowed = accepted_params(fn)
    if allowed is None:
        return
    for key in params:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=2, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; valid: {', '.join(allowed)}"
            raise RobustgridError(f"{what} has no parameter {key!r}{hint}")


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
