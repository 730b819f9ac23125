"""Curves derived from stored cells: metric vs budget (plain, envelope, and a budget search's), metric vs
iterations, and robust accuracy from per-sample minimal norms (minimum-norm attacks)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from robustgrid.benchmark.records import CellRow
from robustgrid.benchmark.store import Store
from robustgrid.core import RobustgridError
from robustgrid.models.tasks import build_task

PROBED = "probed"  # a budget search's cell metric: the share of samples the search attacked at the cell's budget


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


def min_norm_accuracy(norms: np.ndarray, eps: Sequence[float]) -> list[float]:
    """Robust accuracy at each eps from per-sample minimal adversarial norms (a minimum-norm attack's result).

    A sample is broken at eps exactly when its minimal norm is <= eps (0: misclassified clean; inf or NaN: no
    adversarial example found, robust at every eps), so the curve is a step function that never rises.
    """
    norms = _checked_norms(norms)
    return [float(np.mean(norms > e)) if len(norms) else float("nan") for e in eps]


def min_norm_steps(norms: np.ndarray) -> tuple[list[float], list[float]]:
    """The whole step curve of :func:`min_norm_accuracy`: each distinct finite norm and the robust accuracy just
    from it on (from eps 0), for drawing without a grid of budgets."""
    norms = _checked_norms(norms)
    points = sorted({0.0, *(float(v) for v in norms[np.isfinite(norms)])})
    return points, min_norm_accuracy(norms, points)


def _checked_norms(norms: np.ndarray) -> np.ndarray:
    norms = np.asarray(norms, dtype=np.float64).reshape(-1)
    norms = np.where(np.isnan(norms), np.inf, norms)
    if (norms < 0).any():
        raise RobustgridError(f"minimal norms must be >= 0 (inf or NaN: not broken), got {float(norms.min()):g}")
    return norms


def min_norm_curves(store: Store, cells: list[CellRow]) -> dict[CurveKey, tuple[list[float], list[float]]]:
    """The whole robust-accuracy step curve of each minimum-norm attack's curve, from its cell at the largest budget:
    a sample it broke there is broken from its stored perturbation norm on, one it did not is never broken."""
    largest: dict[CurveKey, CellRow] = {}
    for c in final_cells(cells):
        if key_of(c) not in largest or c.eps > largest[key_of(c)].eps:
            largest[key_of(c)] = c
    out = {}
    for key, c in largest.items():
        task = build_task(c.task)
        norms = store.norms(c.key) if task.success_type else None
        if norms is None:
            continue
        robust = task.robust(store.outcome(c.key), store.labels(c.suite, c.dataset))
        out[key] = min_norm_steps(np.where(robust, np.inf, norms))
    return out
