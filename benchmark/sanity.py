"""Sanity flags for an evaluation (Carlini et al. 2019 checklist), computed from stored cells.

Each flag marks a result that usually means the attack, not the model, is weak: robustness that does
not fall at the largest budget, a single step beating many, transfer beating white-box, a curve that
rises with the budget.
"""

from __future__ import annotations

from collections import defaultdict

from robustgrid.benchmark.curves import final_cells
from robustgrid.benchmark.store import CellRow

TOLERANCE = 0.02       # absolute slack on the primary metric before a flag is raised
NO_FALL_FRACTION = 0.5  # at the largest budget a white-box attack should keep < half of clean performance

FLAGS = {
    "no-fall": "metric at the largest budget keeps over half its clean value under every attack",
    "1step>iter": "a single-step attack is stronger than an iterative one",
    "transfer>wb": "a transfer attack is stronger than the white-box/adaptive one",
    "non-monotone": "a budget curve gets weaker as the budget grows",
}


def _worse(a: float, b: float) -> bool:
    """True if a is a stronger-attack value than b by more than the tolerance."""
    return a < b - TOLERANCE  # every task's primary metric is higher = more robust


FlagKey = tuple[str, str, str, str]  # suite, target, defense, threat


def sanity_flags(cells: list[CellRow], clean: dict[tuple[str, str, str], float]) -> dict[FlagKey, list[str]]:
    """Flags per (suite, target, defense, threat); ``clean`` maps (suite, target, defense) to clean metric."""
    final = final_cells(cells)
    flags: dict[tuple[str, str, str, str], set[str]] = defaultdict(set)
    by_ttd: dict[tuple[str, str, str, str], list[CellRow]] = defaultdict(list)
    for c in final:
        if c.eps > 0:
            by_ttd[c.suite, c.target, c.defense, c.threat].append(c)
    for key, group in by_ttd.items():
        suite, target, defense, threat = key
        eps_max = max(c.eps for c in group)
        top = [c for c in group if c.eps == eps_max]
        base = clean.get((suite, target, defense))
        if threat != "transfer" and base is not None and base > 0:
            if min(c.value for c in top) > NO_FALL_FRACTION * base:
                flags[key].add("no-fall")
        for eps in {c.eps for c in group}:
            at = [c for c in group if c.eps == eps]
            single = [c for c in at if c.steps == 1]
            multi = [c for c in at if c.steps > 1]
            if any(_worse(s.value, m.value) for s in single for m in multi):
                flags[key].add("1step>iter")
        curves: dict[tuple[str, tuple[str, ...]], list[CellRow]] = defaultdict(list)
        for c in final:
            if (c.suite, c.target, c.defense, c.threat) == key:
                curves[c.attack, c.sources].append(c)
        for pts in curves.values():
            pts.sort(key=lambda c: c.eps)
            if any(_worse(a.value, b.value) for a, b in zip(pts, pts[1:])):
                flags[key].add("non-monotone")
    # transfer stronger than the strongest attack that sees the model (and its purifier)
    for (suite, target, defense, threat), group in by_ttd.items():
        if threat != "transfer":
            continue
        for wb_threat in ("whitebox", "adaptive", "bpda", "blind"):
            wb = by_ttd.get((suite, target, defense, wb_threat))
            if wb is None:
                continue
            for c in group:
                rivals = [w.value for w in wb if w.eps == c.eps and w.attack == c.attack]
                if rivals and all(_worse(c.value, r) for r in rivals):
                    flags[suite, target, defense, "transfer"].add("transfer>wb")
            break
    return {k: sorted(v) for k, v in flags.items()}
