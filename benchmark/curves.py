"""Curves derived from stored cells: metric vs budget (plain and envelope) and metric vs iterations."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from robustgrid.benchmark.records import CellRow
from robustgrid.benchmark.store import Store
from robustgrid.models.tasks import build_task


@dataclass(frozen=True)
class CurveKey:
    """Identifies one curve: everything but the varying budget or step count."""

    suite: str
    attack: str
    sources: tuple[str, ...]
    threat: str
    target: str
    defense: str


def key_of(c: CellRow) -> CurveKey:
    return CurveKey(c.suite, c.attack, c.sources, c.threat, c.target, c.defense)


def full_steps(cells: list[CellRow]) -> dict[tuple[str, str], int]:
    """The full step count of each (suite, attack): the largest checkpoint stored."""
    out: dict[tuple[str, str], int] = {}
    for c in cells:
        out[c.suite, c.attack] = max(out.get((c.suite, c.attack), 0), c.steps)
    return out


def final_cells(cells: list[CellRow]) -> list[CellRow]:
    """Cells at the attack's full step count (the budget curve's points)."""
    steps = full_steps(cells)
    return [c for c in cells if c.steps == steps[c.suite, c.attack]]


def envelopes(store: Store, cells: list[CellRow]) -> dict[str, float]:
    """Budget envelope per cell key, for success-type tasks.

    A sample counts as broken at eps if the attack broke it at any budget <= eps (an adversarial
    example within a smaller ball is inside every larger one), so the envelope never rises with eps.
    """
    groups: dict[CurveKey, list[CellRow]] = defaultdict(list)
    for c in final_cells(cells):
        groups[key_of(c)].append(c)
    out: dict[str, float] = {}
    for group in groups.values():
        task = build_task(group[0].task)
        if not task.success_type:
            continue
        labels = store.labels(group[0].suite, group[0].dataset)
        still = np.ones(len(labels), dtype=bool)
        for c in sorted(group, key=lambda c: c.eps):
            still &= task.robust(store.outcome(c.key), labels)
            out[c.key] = float(still.mean())
    return out


def budget_curve(cells: list[CellRow], key: CurveKey) -> tuple[list[float], list[CellRow]]:
    pts = sorted((c for c in final_cells(cells) if key_of(c) == key), key=lambda c: c.eps)
    return [c.eps for c in pts], pts


def iteration_curve(cells: list[CellRow], key: CurveKey, eps: float) -> tuple[list[int], list[CellRow]]:
    pts = sorted((c for c in cells if key_of(c) == key and c.eps == eps), key=lambda c: c.steps)
    return [c.steps for c in pts], pts
