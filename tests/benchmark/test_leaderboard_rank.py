"""Leaderboard ranking on constructed cells: worst case at the largest budget, ties by the next smaller one."""

from __future__ import annotations

from robustgrid.benchmark.leaderboard import Cost, _suite_board
from tests.benchmark.test_sanity import curve


def ranked(cells) -> list[tuple[str, float | None, float | None]]:
    board = _suite_board("s", cells, Cost(0, 0, 0), {}, {}, {}, ())
    return [(r.defense, r.worst, r.tiebreak) for r in board.rows]


def test_rows_broken_at_the_largest_budget_are_ordered_by_the_next_smaller_one() -> None:
    """Every purifier at 0 at eps 0.2: the one that still held at 0.1 ranks first, whatever the names' order."""
    cells = [*curve("adaptive", "pgd", {0.05: 0.5, 0.1: 0.10, 0.2: 0.0}, defense="a"),
             *curve("adaptive", "pgd", {0.05: 0.6, 0.1: 0.30, 0.2: 0.0}, defense="b"),
             *curve("adaptive", "pgd", {0.05: 0.2, 0.1: 0.05, 0.2: 0.01}, defense="c")]
    assert ranked(cells) == [("c", 0.01, 0.05), ("b", 0.0, 0.30), ("a", 0.0, 0.10)]


def test_the_worst_case_over_threats_and_attacks_decides_the_tie_break_too() -> None:
    """The tie-break is a worst case as well: a strong whitebox value does not lift a row whose FGSM fell lower."""
    cells = [*curve("adaptive", "pgd", {0.1: 0.40, 0.2: 0.0}, defense="a"),
             *curve("adaptive", "fgsm", {0.1: 0.05, 0.2: 0.0}, defense="a"),
             *curve("adaptive", "pgd", {0.1: 0.20, 0.2: 0.0}, defense="b")]
    assert ranked(cells) == [("b", 0.0, 0.20), ("a", 0.0, 0.05)]


def test_a_single_budget_has_no_tie_break() -> None:
    assert ranked(curve("whitebox", "pgd", {0.1: 0.3})) == [("none", 0.3, None)]
