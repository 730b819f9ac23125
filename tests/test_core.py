"""The core's parameter rules: which keywords a constructor declares, which values their types admit, the errors."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pytest
from torch import nn

from robustgrid.core import (
    Registry,
    RobustgridError,
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_params,
    declared_params,
    describe_type,
    type_matches,
)


@pytest.mark.parametrize(("value", "hint", "ok"), [
    (1, float, True), (1.5, float, True), (True, float, False), ("1.5", float, False),   # an int is a number
    (3, int, True), (3.0, int, False), (True, int, False), (False, bool, True), (0, bool, False),
    ("x", str, True), (1, str, False), ("weights.pt", Path, True), (Path("w.pt"), str | Path, True),
    (None, float | None, True), ("0.01", float | None, False), (5, str | Path | None, False),
    ([1, 2.5], Sequence[float], True), ((1, 2), list[int], True), ([1, "a"], Sequence[float], False),
    ("ab", Sequence[str], False), ([], Sequence[float], True), ([3, 4], tuple[int, int], True),
    ([3, 4, 5], tuple[int, int], False), ((0.5,), tuple[float, ...], True), (7, int | Sequence[int], True),
    ({"width": 8}, dict[str, Any], True), ({1: 8}, dict[str, Any], False), ([("a", 1)], dict[str, Any], False),
    ("b", Literal["a", "b"], True), ("c", Literal["a", "b"], False), (1, Literal["1"], False),
    (nn.Linear(1, 1), nn.Module, True), ("module", nn.Module | None, False), (object(), Any, True),
    ("anything", object, True),
])
def test_type_matches(value: Any, hint: Any, ok: bool) -> None:
    assert type_matches(value, hint) is ok


@pytest.mark.parametrize(("hint", "words"), [
    (float, "a number"), (float | None, "a number"), (int, "an integer"), (bool, "true or false"), (str, "a string"),
    (str | Path | None, "a string or a path"), (Sequence[float], "a list of numbers"),
    (list[int], "a list of integers"),
    (tuple[int, int, int], "a list of 3 integers"), (int | Sequence[int], "an integer or a list of integers"),
    (Literal["linf", "l2"], "one of 'linf', 'l2'"), (dict[str, Any], "a table"), (nn.Module, "a Module"),
    (Any, "anything"),
])
def test_describe_type_in_a_config_writers_words(hint: Any, words: str) -> None:
    assert describe_type(hint) == words


class Base:
    def __init__(self, *, steps: int = 10, eps: float = 0.1, task: str = "classification") -> None:
        pass


class Child(Base):
    def __init__(self, *, decay: float = 1.0, steps: int = 3, **params: object) -> None:
        super().__init__(steps=steps, **params)


def builder(arch: str, weights: str | None = None, **kwargs: Any) -> None:
    """A builder function whose **kwargs go elsewhere."""


def unannotated(count=3, rate=0.5, flag=True, mode="a", shape=(1, 2), other=None):
    """torchattacks-style: types come from the defaults."""


def test_declared_params_follow_kwargs_up_the_mro_and_fall_back_to_defaults() -> None:
    hints, open_ended = declared_params(Child)
    assert hints == {"decay": float, "steps": int, "eps": float, "task": str} and not open_ended
    hints, open_ended = declared_params(builder)
    assert hints == {"arch": str, "weights": str | None} and open_ended
    hints, open_ended = declared_params(unannotated)
    assert hints == {"count": float, "rate": float, "flag": bool, "mode": str, "shape": Sequence, "other": Any}
    assert not open_ended  # an int default admits any number: CW's c=1 takes 0.1


def test_check_params_names_the_unknown_keyword_or_the_wrong_type() -> None:
    check_params(Child, {"decay": 1, "eps": 0.5, "task": "iqa"}, "child")
    with pytest.raises(RobustgridError) as err:
        check_params(Child, {"deacy": 0.5}, "child")
    assert str(err.value) == "child has no parameter 'deacy'; did you mean decay?"
    with pytest.raises(RobustgridError) as err:
        check_params(Child, {"decay": "high"}, "suite 1 attack 2 (mifgsm)")
    assert str(err.value) == "suite 1 attack 2 (mifgsm): decay must be a number, got 'high'"
    check_params(builder, {"arch": "x", "anything": object()}, "builder")  # open: unknown keywords pass on
    with pytest.raises(RobustgridError, match=r"^builder: weights must be a string, got \[1\]$"):
        check_params(builder, {"weights": [1]}, "builder")


def test_registry_build_applies_the_same_rule() -> None:
    reg: Registry[Child] = Registry("toy")
    reg.register("child")(Child)
    assert isinstance(reg.build("child", decay=0.5), Child)
    with pytest.raises(RobustgridError) as err:
        reg.build("child", steps=2.5)
    assert str(err.value) == "child: steps must be an integer, got 2.5"
    with pytest.raises(RobustgridError, match="unknown toy 'chlid'; did you mean child"):
        reg.build("chlid")


@pytest.mark.parametrize(("check", "args", "message"), [
    (check_int, (0, 1), "x: n must be an integer >= 1, got 0"),
    (check_int, (4, 3, True), "x: n must be an odd integer >= 3, got 4"),
    (check_int, (2.0, 1), "x: n must be an integer >= 1, got 2.0"),
    (check_float, (-0.1, 0.0), "x: n must be a finite number >= 0, got -0.1"),
    (check_float, (0, 0.0, float("inf"), True), "x: n must be a finite number > 0, got 0"),
    (check_float, (1.5, 0.0, 1.0), "x: n must be a finite number in [0, 1], got 1.5"),
    (check_float, (float("nan"),), "x: n must be a finite number, got nan"),
    (check_float, ("1",), "x: n must be a finite number, got '1'"),
    (check_bool, ("false",), "x: n must be true or false, got 'false'"),
    (check_choice, ("l3", ("linf", "l2")), "x: n must be one of linf, l2, got 'l3'"),
])
def test_value_checks_are_one_line_errors_naming_value_and_range(check: Any, args: tuple, message: str) -> None:
    with pytest.raises(RobustgridError) as err:
        check("x", "n", *args)
    assert str(err.value) == message


def test_value_checks_return_the_value() -> None:
    assert check_int("x", "n", 3, 1) == 3 and check_float("x", "n", 2, 0.0) == 2.0
    assert check_bool("x", "n", False) is False and check_choice("x", "n", "l2", ("linf", "l2")) == "l2"
