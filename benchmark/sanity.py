"""Sanity flags for an evaluation (Carlini et al. 2019 checklist), computed from stored cells.

Each flag marks a result that usually means the attack, not the model, is weak: robustness that does
not fall at the largest budget, a single step beating many, transfer beating white-box, a curve that
rises with the budget. A flag only ever compares like with like (same sources, threat, target, defense
and budget) and each one is a ``Finding`` that names the cells it came from.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from robustgrid.benchmark.curves import final_cells
from robustgrid.benchmark.records import CellRow
from robustgrid.benchmark.threats import get_threat

TOLERANCE = 0.02       # absolute slack on the primary metric before a flag is raised
NO_FALL_FRACTION = 0.5  # at the largest budget a white-box attack should keep < half of clean performance

FLAGS = {
    "no-fall": "metric at the largest budget keeps over half its clean value under every attack, under a threat "
               "expected to break the model",
    "1step>iter": "a single-step attack is stronger than an iterative one from the same sources at the same budget, "
                  "under a threat that sees the whole evaluated model (white-box, BPDA, adaptive)",
    "transfer>wb": "a transfer attack is stronger than the same attack at the same budget under every threat that "
                   "sees the model",
    "non-monotone": "a budget curve gets weaker as the budget grows",
}

FlagKey = tuple[str, str, str, str]  # suite, target, defense, threat


@dataclass(frozen=True)
class Finding:
    """One raised flag: where it is shown (suite, target, defense, threat) and the comparison that raised it."""

    flag: str
    suite: str
    target: str
    defense: str
    threat: str
    detail: str

    @property
    def key(self) -> FlagKey:
        return self.suite, self.target, self.defense, self.threat


def _worse(a: float, b: float) -> bool:
    """True if a is a stronger-attack value than b by more than the tolerance (every task's primary metric is
    higher for a more robust model: the Task contract)."""
    return a < b - TOLERANCE


def _where(c: CellRow) -> str:
    """An attack and its sources as the flag details name them."""
    return f"{c.attack} <- {'+'.join(c.sources)}"


def _finding(flag: str, key: FlagKey, detail: str) -> Finding:
    return Finding(flag, *key, detail)


def _no_fall(key: FlagKey, group: list[CellRow], base: float | None) -> list[Finding]:
    """A threat expected to break the model leaves over half the clean metric under its strongest attack."""
    if not get_threat(key[3]).expected_to_fall or base is None or base <= 0:
        return []
    eps_max = max(c.eps for c in group)
    best = min((c for c in group if c.eps == eps_max), key=lambda c: c.value)
    if best.value <= NO_FALL_FRACTION * base:
        return []
    return [_finding("no-fall", key, f"at eps {eps_max:g} the strongest attack {_where(best)} keeps {best.value:.3f} "
                                     f"of clean {base:.3f}")]


def _single_step(key: FlagKey, group: list[CellRow]) -> list[Finding]:
    """A one-step attack beats an iterative one made from the same sources at the same budget, under a threat whose
    attack sees the whole evaluated model (those expected to break it): there it signals masked gradients. Under
    transfer or blind attacks single-step examples carrying over better is a known effect, not a warning."""
    if not get_threat(key[3]).expected_to_fall:
        return []
    out = []
    same: dict[tuple[tuple[str, ...], float], list[CellRow]] = defaultdict(list)
    for c in group:
        same[c.sources, c.eps].append(c)
    for (_, eps), at in sorted(same.items()):
        for s in (c for c in at if c.steps == 1):
            for m in (c for c in at if c.steps > 1):
                if _worse(s.value, m.value):
                    out.append(_finding("1step>iter", key, f"at eps {eps:g} {_where(s)} {s.value:.3f} beats "
                                                           f"{_where(m)} {m.value:.3f}"))
    return out


def _non_monotone(key: FlagKey, group: list[CellRow]) -> list[Finding]:
    """A budget curve (one attack from one source set, from eps 0 up) gets weaker as the budget grows."""
    out = []
    curves: dict[tuple[str, tuple[str, ...]], list[CellRow]] = defaultdict(list)
    for c in group:
        curves[c.attack, c.sources].append(c)
    for pts in curves.values():
        pts.sort(key=lambda c: c.eps)
        for a, b in zip(pts, pts[1:]):
            if _worse(a.value, b.value):
                out.append(_finding("non-monotone", key, f"{_where(a)}: {a.value:.3f} at eps {a.eps:g} but "
                                                         f"{b.value:.3f} at eps {b.eps:g}"))
    return out


def _transfer_beats_seeing(by_key: dict[FlagKey, list[CellRow]]) -> list[Finding]:
    """A cell of a threat blind to the model beats the same attack at the same budget under every threat that
    sees the model (the strongest of them), on the same target and defense."""
    seeing: dict[tuple[str, str, str, str, float], list[CellRow]] = defaultdict(list)
    for (_, _, _, threat), group in by_key.items():
        if get_threat(threat).sees_model:
            for c in group:
                seeing[c.suite, c.target, c.defense, c.attack, c.eps].append(c)
    out = []
    for key, group in by_key.items():
        if get_threat(key[3]).sees_model:
            continue
        for c in group:
            rivals = seeing.get((c.suite, c.target, c.defense, c.attack, c.eps), [])
            if rivals and all(_worse(c.value, r.value) for r in rivals):
                strongest = min(rivals, key=lambda r: (r.value, r.threat))
                out.append(_finding("transfer>wb", key, f"at eps {c.eps:g} {_where(c)} {c.value:.3f} beats "
                                                        f"{strongest.threat} {strongest.value:.3f}"))
    return out


def sanity_findings(cells: list[CellRow], clean: dict[tuple[str, str, str], float]) -> list[Finding]:
    """Every raised flag with its comparison; ``clean`` maps (suite, target, defense) to the clean metric."""
    curves: dict[FlagKey, list[CellRow]] = defaultdict(list)
    for c in final_cells(cells):
        curves[c.suite, c.target, c.defense, c.threat].append(c)
    by_key = {k: attacked for k, g in sorted(curves.items()) if (attacked := [c for c in g if c.eps > 0])}
    out = []
    for key, group in by_key.items():
        out += _no_fall(key, group, clean.get(key[:3]))
        out += _single_step(key, group)
        out += _non_monotone(key, curves[key])
    return out + _transfer_beats_seeing(by_key)


def sanity_flags(cells: list[CellRow], clean: dict[tuple[str, str, str], float]) -> dict[FlagKey, list[str]]:
    """Flag names per (suite, target, defense, threat), as the report shows and the store keeps them."""
    flags: dict[FlagKey, set[str]] = defaultdict(set)
    for f in sanity_findings(cells, clean):
        flags[f.key].add(f.flag)
    return {k: sorted(v) for k, v in flags.items()}
