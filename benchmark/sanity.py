"""Sanity flags for an evaluation (Carlini et al. 2019 checklist), computed from stored cells.

Each flag marks a result that usually means the attack, not the model, is weak: robustness that does
not fall at the largest budget, a single step beating many, transfer beating white-box, a curve that
rises with the budget, a query attack beating every gradient attack, an attack stopped while its curve
still falls. A flag only ever compares like with like (same sources, threat, target, defense and budget)
and each one is a ``Finding`` that names the cells it came from.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from robustgrid.benchmark.curves import CurveKey, final_cells, key_of
from robustgrid.benchmark.records import CellRow
from robustgrid.benchmark.threats import get_threat

TOLERANCE = 0.02       # absolute slack on the primary metric before a flag is raised
NO_FALL_FRACTION = 0.5  # at the largest budget a white-box attack should keep < half of clean performance
# absolute fall of the metric between a curve's last two checkpoints (iterations, or queries) beyond which the
# attack is called unconverged: 0.02 is one sample in fifty still being broken by the last stretch of the run
CONVERGENCE_TOLERANCE = 0.02

FLAGS = {
    "no-fall": "metric at the largest budget keeps over half its clean value under every attack, under a threat "
               "expected to break the model",
    "1step>iter": "a single-step attack is stronger than an iterative one from the same sources at the same budget, "
                  "under a threat that sees the whole evaluated model (white-box, BPDA, adaptive)",
    "transfer>wb": "a transfer attack is stronger than the same attack at the same budget under every threat that "
                   "sees the model",
    "non-monotone": "a budget curve gets weaker as the budget grows",
    "query>gradient": "a query attack (score or decision access) is stronger than every gradient attack on the same "
                      "target, defense and budget: a sign of masked gradients",
    "not-converged": f"a metric-versus-iterations (or queries) curve still falls by more than "
                     f"{CONVERGENCE_TOLERANCE:g} between its last two checkpoints: a longer run would be stronger",
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


def _query_beats_gradient(final: list[CellRow]) -> list[Finding]:
    """A query attack's cell beats every gradient attack's cell (any threat, any sources) on the same target,
    defense and budget: the gradients it could have used are likely masked. Like is matched with like by the
    cells' clean key (same samples, weights and purifier), so a query suite is compared with a gradient suite
    on the same data (a suite with a query threat holds no gradient attack: the threat refuses one)."""
    gradient: dict[tuple[str, str, float], list[CellRow]] = defaultdict(list)
    for c in final:
        if not c.query_attack and c.eps > 0:
            gradient[c.clean_key, c.norm, c.eps].append(c)
    out = []
    for c in final:
        rivals = gradient.get((c.clean_key, c.norm, c.eps), []) if c.query_attack else []
        if rivals and all(_worse(c.value, r.value) for r in rivals):
            strongest = min(rivals, key=lambda r: (r.value, r.threat, r.attack))
            out.append(_finding("query>gradient", (c.suite, c.target, c.defense, c.threat),
                                f"at eps {c.eps:g} {_where(c)} ({c.access}) {c.value:.3f} beats every gradient "
                                f"attack, the strongest {_where(strongest)} ({strongest.threat}) "
                                f"{strongest.value:.3f}"))
    return out


def _not_converged(cells: list[CellRow]) -> list[Finding]:
    """A metric-versus-iterations (or queries) curve of one attack at one budget still falls by more than
    ``CONVERGENCE_TOLERANCE`` between its last two checkpoints."""
    curves: dict[tuple[CurveKey, float], list[CellRow]] = defaultdict(list)
    for c in cells:
        if c.eps > 0:
            curves[key_of(c), c.eps].append(c)
    out = []
    for (_, eps), pts in curves.items():
        if len(pts) < 2:
            continue
        a, b = sorted(pts, key=lambda c: c.steps)[-2:]
        if a.value - b.value > CONVERGENCE_TOLERANCE:
            unit = "queries" if b.query_attack else "steps"
            out.append(_finding("not-converged", (b.suite, b.target, b.defense, b.threat),
                                f"at eps {eps:g} {_where(b)} still falls from {a.value:.3f} at {a.steps} {unit} to "
                                f"{b.value:.3f} at {b.steps}"))
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
    return (out + _transfer_beats_seeing(by_key) + _query_beats_gradient(final_cells(cells))
            + _not_converged(cells))


def sanity_flags(cells: list[CellRow], clean: dict[tuple[str, str, str], float]) -> dict[FlagKey, list[str]]:
    """Flag names per (suite, target, defense, threat), as the report shows and the store keeps them."""
    flags: dict[FlagKey, set[str]] = defaultdict(set)
    for f in sanity_findings(cells, clean):
        flags[f.key].add(f.flag)
    return {k: sorted(v) for k, v in flags.items()}
