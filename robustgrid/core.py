"""The core every package shares: the one exception type, the name -> constructor registry, parameter validation.

Imports nothing of robustgrid, so ``models``, ``attacks``, ``defenses`` and ``benchmark`` all build on it.
"""

from __future__ import annotations

import collections.abc
import difflib
import inspect
import math
import os
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any, Generic, Literal, TypeVar, Union


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
        """Decorator: register ``fn`` under ``name``; the docstring's first line is its description.

        The same constructor registered again (its module imported anew, as a plugin re-read) replaces itself;
        another constructor under a taken name is an error."""

        def deco(fn: Callable[..., T]) -> Callable[..., T]:
            old = self._entries.get(name)
            if old is not None and (old.fn.__module__, old.fn.__qualname__) != (fn.__module__, fn.__qualname__):
                raise RobustgridError(f"{self.kind} {name!r} is already registered (by {old.fn.__module__})")
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
        """Construct ``name`` with keyword overrides; unknown keywords and wrong-typed values are one-line errors."""
        entry = self.entry(name)
        check_params(entry.fn, params, name)
        try:
            return entry.fn(**params)
        except TypeError as exc:  # a builder taking **kwargs passed on an unknown keyword
            if "unexpected keyword argument" not in str(exc):
                raise
            raise RobustgridError(f"{self.kind} {name!r}: {exc}") from None

    def describe(self) -> list[tuple[str, str]]:
        return [(n, self._entries[n].description) for n in self.names()]


# ---- keyword parameters a constructor declares, and the types it declares for them ---------------------------

def declared_params(fn: Callable[..., Any]) -> tuple[dict[str, Any], bool]:
    """(keyword -> type hint of every parameter ``fn`` declares, whether it takes any other keyword too).

    For a class the ``__init__`` chain is followed up the MRO while each one forwards ``**kwargs``. A hint is the
    annotation, else the default value's type (see ``default_hint``), else ``Any``.
    """
    chain = [c.__init__ for c in fn.__mro__ if "__init__" in vars(c)] if inspect.isclass(fn) else [fn]
    hints: dict[str, Any] = {}
    for f in chain:
        params = inspect.signature(f).parameters
        annotations = _annotations(f)
        for n, p in params.items():
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and n != "self" and n not in hints:
                hints[n] = annotations.get(n, default_hint(p.default))
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return hints, False
    return hints, not inspect.isclass(fn)  # a class's chain ends at object.__init__; a function's **kwargs is open


def _annotations(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:  # an annotation that does not evaluate (or a builtin): fall back to the defaults
        return {}


def default_hint(default: Any) -> Any:
    """The hint an unannotated parameter gets from its default: its type, with an int default read as a number.

    (An integer default often stands for a real-valued parameter, like torchattacks' ``CW(c=1, kappa=0)``.)
    """
    if default is inspect.Parameter.empty or default is None:
        return Any
    if isinstance(default, bool):
        return bool
    if isinstance(default, (int, float)):
        return float
    if isinstance(default, (list, tuple)):
        return collections.abc.Sequence
    return type(default)


def check_params(fn: Callable[..., Any], params: Mapping[str, Any], what: str) -> None:
    """One-line errors for keywords ``fn`` does not accept (with close matches) and values of the wrong type."""
    hints, open_ended = declared_params(fn)
    for key, value in params.items():
        if key in hints:
            check_type(what, key, value, hints[key])
        elif not open_ended:
            allowed = list(hints)
            close = difflib.get_close_matches(key, allowed, n=2, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; valid: {', '.join(allowed)}"
            raise RobustgridError(f"{what} has no parameter {key!r}{hint}")


# ---- the type rule: which values a hint admits, and how to say what it wants -----------------------------------

_UNIONS = (Union, types.UnionType)
_SEQUENCES = (list, tuple, collections.abc.Sequence, collections.abc.MutableSequence)
_MAPPINGS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)


def type_matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` is of type ``hint``: an int counts as a float, a list or tuple as any sequence, a string
    as a path; a bool is never a number. Hints this rule does not know admit everything."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is object or isinstance(hint, TypeVar):
        return True
    if origin in _UNIONS:
        return any(type_matches(value, a) for a in args)
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, Integral) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, Real) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if inspect.isclass(hint) and issubclass(hint, os.PathLike):
        return isinstance(value, (str, os.PathLike))
    if (origin or hint) in _SEQUENCES:
        if isinstance(value, (str, bytes)) or not isinstance(value, collections.abc.Sequence):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(type_matches(v, a) for v, a in zip(value, args))
        return not args or all(type_matches(v, args[0]) for v in value)
    if (origin or hint) in _MAPPINGS:
        return isinstance(value, Mapping) and (len(args) != 2 or all(
            type_matches(k, args[0]) and type_matches(v, args[1]) for k, v in value.items()))
    if origin is collections.abc.Callable or hint is collections.abc.Callable:
        return callable(value)
    if inspect.isclass(hint) and origin is None:
        return isinstance(value, hint)
    return True


_NAMES = {bool: ("true or false", "booleans"), int: ("an integer", "integers"), float: ("a number", "numbers"),
          str: ("a string", "strings")}


def describe_type(hint: Any) -> str:
    """What ``hint`` admits, in a config writer's words ("a number", "a list of integers", "one of 'a', 'b'")."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is object or isinstance(hint, TypeVar):
        return "anything"
    if origin in _UNIONS:  # None is what leaving the key out gives, so it is not offered
        words = [describe_type(a) for a in args if a is not type(None)]
        return " or ".join(dict.fromkeys(words)) or "none"
    if origin is Literal:
        return f"one of {', '.join(repr(a) for a in args)}"
    if hint is type(None):
        return "none"
    if hint in _NAMES:
        return _NAMES[hint][0]
    if inspect.isclass(hint) and issubclass(hint, os.PathLike):
        return "a path"
    if (origin or hint) in _SEQUENCES:
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(set(args)) == 1 and args[0] in _NAMES:
                return f"a list of {len(args)} {_NAMES[args[0]][1]}"
            return f"a list [{', '.join(describe_type(a) for a in args)}]"
        if args and args[0] in _NAMES:
            return f"a list of {_NAMES[args[0]][1]}"
        return "a list"
    if (origin or hint) in _MAPPINGS:
        return "a table"
    if origin is collections.abc.Callable or hint is collections.abc.Callable:
        return "a callable"
    name = getattr(hint, "__name__", str(hint))
    return f"a{'n' if name[:1].lower() in 'aeiou' else ''} {name}"


def check_type(what: str, name: str, value: Any, hint: Any) -> Any:
    """``value`` if it is of type ``hint``, else a one-line error naming the parameter, the type and the value."""
    if not type_matches(value, hint):
        raise RobustgridError(f"{what}: {name} must be {describe_type(hint)}, got {value!r}")
    return value


# ---- value checks (range and choice) of the constructors ------------------------------------------------------

def check_int(what: str, name: str, value: Any, minimum: int, odd: bool = False) -> int:
    """``value`` as an int >= ``minimum`` (odd if asked); bools and floats are rejected, not truncated."""
    valid = f"an {'odd ' if odd else ''}integer >= {minimum}"
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum or (odd and value % 2 == 0):
        raise RobustgridError(f"{what}: {name} must be {valid}, got {value!r}")
    return int(value)


def check_float(what: str, name: str, value: Any, low: float = -math.inf, high: float = math.inf,
                low_open: bool = False) -> float:
    """``value`` as a finite float in [low, high] (or (low, high] when ``low_open``); an int is accepted."""
    if math.isinf(low) and math.isinf(high):
        valid = "a finite number"
    elif math.isinf(high):
        valid = f"a finite number {'>' if low_open else '>='} {low:g}"
    else:
        valid = f"a finite number in {'(' if low_open else '['}{low:g}, {high:g}]"
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(float(value))
    if ok:
        v = float(value)
        ok = (v > low if low_open else v >= low) and v <= high
    if not ok:
        raise RobustgridError(f"{what}: {name} must be {valid}, got {value!r}")
    return float(value)


def check_bool(what: str, name: str, value: Any) -> bool:
    """``value`` if it is a bool (no truthiness: the string "false" is not False)."""
    if not isinstance(value, bool):
        raise RobustgridError(f"{what}: {name} must be true or false, got {value!r}")
    return value


def check_choice(what: str, name: str, value: Any, choices: Iterable[str]) -> str:
    """``value`` if it is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise RobustgridError(f"{what}: {name} must be one of {', '.join(choices)}, got {value!r}")
    return str(value)
