"""Expand a suite into cells, grouped by generation unit so that no adversarial image is made twice.

A generation unit is (attack, sources, threat, defense-if-the-attack-sees-it, eps): its examples serve every
cell that evaluates them — all checkpoints of the iteration curve, every transfer target, and every
defense for purifier-blind evaluation. Which units and cells a threat has is the threat's to say
(``benchmark/threats.py``); the planner only crosses them with attacks and budgets. With
``budget.search = "binary"`` one search unit covers every positive eps of a generation whose source success is
success (``benchmark/budget_search.py``); the others stay one unit per eps. Where no run stops early (a task without
per-sample success, or ``early_stop = false``), a transfer group of one target is that target's white-box unit,
evaluated on the other targets as well: the same run, made once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from robustgrid.benchmark.config import AttackSpec, Suite
from robustgrid.benchmark.threats import generations, get_threat
from robustgrid.models.tasks import build_task


@dataclass(frozen=True)
class Eval:
    """Where a unit's examples are evaluated: a target behind a defense, under a threat label."""

    target: str
    defense: str
    threat: str


@dataclass(frozen=True)
class Cell:
    """One grid point; ``key`` hashes everything that determines its numbers."""

    suite: str
    task: str
    attack: AttackSpec
    sources: tuple[str, ...]
    threat: str
    norm: str
    eps: float
    steps: int
    target: str
    defense: str
    key: str


@dataclass(frozen=True)
class Unit:
    """One generation of adversarial examples and the cells that evaluate it."""

    suite: str
    attack: AttackSpec
    sources: tuple[str, ...]
    threat: str          # the generating threat (a threat that rides on another has no units of its own)
    defense: str         # the purifier the attack differentiates through ("none" if the threat sees none)
    eps: float           # the budget of the run (a search unit's largest)
    checkpoints: tuple[int, ...]
    evals: tuple[Eval, ...]
    cells: tuple[Cell, ...]
    key: str
    seed: int
    budgets: tuple[float, ...] = ()  # a search unit's sorted positive epsilons; empty: one run at ``eps``
    search: str = "none"             # a search unit's ``budget.search``


def digest(obj: object) -> str:
    """Stable hex digest of a JSON-able object."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def searched(suite: Suite, threat: str, defense: str, randomized: frozenset[str]) -> bool:
    """Whether a generation's budget curve comes from the per-sample search: asked for, and success on the attack's
    models is success on the evaluated ones (the threat allows early stop, the purifier in the graph is fixed); query
    threats keep one unit per budget, their curve being one of queries."""
    return (suite.budget.search != "none" and any(e > 0 for e in suite.budget.eps)
            and get_threat(threat).access == "gradient" and get_threat(threat).allows_early_stop(defense in randomized))


def plan_suite(suite: Suite, seed: int, identity: dict[str, str],
               randomized: frozenset[str] = frozenset()) -> list[Unit]:
    """All generation units of a suite. ``identity`` maps target/defense/dataset names to content hashes;
    ``randomized`` names the suite's randomised purifiers (a search cannot run through them)."""
    units: list[Unit] = []
    common = {"suite": suite.name, "task": suite.task, "dataset": identity["dataset"], "seed": seed,
              "norm": suite.budget.norm, "batch_size": suite.batch_size, "eot_samples": suite.eot_samples,
              "early_stop": suite.early_stop}
    if "compute" in identity:  # a GPU or reduced precision gives other numbers than CPU fp32: keyed apart
        common["compute"] = identity["compute"]

    def add(attack: AttackSpec, sources: tuple[str, ...], threat: str, defense: str, budgets: tuple[float, ...],
            evals: list[Eval], search: bool = False) -> None:
        evals = [ev for ev in evals if attack.runs_under(ev.threat) and attack.meets(ev.defense)]
        if not evals:
            return
        wanted = suite.budget.checkpoints if attack.checkpoints is None else attack.checkpoints
        checkpoints = tuple(sorted({k for k in wanted if k <= attack.steps} | {attack.steps}))
        unit_id = {**common, "attack": attack.to_json(), "sources": [(s, identity[s]) for s in sources],
                   "threat": threat, "defense": (defense, identity.get(f"defense:{defense}", "")),
                   "eps": list(budgets) if search else budgets[0]}
        if search:
            unit_id["search"] = suite.budget.search
        unit_key = digest(unit_id)
        cells = []
        for eps in budgets:
            for k in checkpoints:
                for ev in evals:
                    cell_id = {**unit_id, "eps": eps, "steps": k, "target": (ev.target, identity[ev.target]),
                               "eval_defense": (ev.defense, identity.get(f"defense:{ev.defense}", "")),
                               "eval_threat": ev.threat}
                    cells.append(Cell(suite.name, suite.task, attack, sources, ev.threat, suite.budget.norm, eps, k,
                                      ev.target, ev.defense, digest(cell_id)))
        units.append(Unit(suite.name, attack, sources, threat, defense, max(budgets), checkpoints, tuple(evals),
                          tuple(cells), unit_key, int(unit_key[:8], 16), budgets if search else (),
                          suite.budget.search if search else "none"))

    def generation_evals() -> list[tuple[str, tuple[str, ...], str, list[Eval]]]:
        """(threat, sources, defense, evaluations) of every generation, in planning order."""
        out = []
        for threat, users in generations(suite.threats):
            for sources in threat.source_groups(suite):
                for defense in threat.unit_defenses(suite):
                    evals = [Eval(t, d, u.name) for u in users for t, d in u.evaluations(suite, sources, defense)]
                    out.append((threat.name, sources, defense, evals))
        return out

    def shared(attack: AttackSpec) -> list[tuple[str, tuple[str, ...], str, list[Eval]]]:
        """The plan for ``attack`` with each sharing threat's single-source generations folded into the host's
        generation from the same source, where neither run could stop early or be a budget search: the host's
        examples are the ones the sharer would make (same attack, sources and budget), so they are made once."""
        success = build_task(suite.task).success_type

        def fixed(name: str) -> bool:
            return not get_threat(name).stops_early(suite.early_stop, success, randomized=False)
        hosts = {(t, s): i for i, (t, s, d, _) in enumerate(plan)
                 if d == "none" and not searched(suite, t, d, randomized)}
        out = [(t, s, d, list(e)) for t, s, d, e in plan]
        folded = set()
        for i, (threat, sources, _, evals) in enumerate(plan):
            host = get_threat(threat).shares_with
            j = hosts.get((host, sources)) if host else None
            if (j is not None and attack.runs_under(threat) and attack.runs_under(host)
                    and fixed(threat) and fixed(host)):
                out[j][3].extend(evals)
                folded.add(i)
        return [g for i, g in enumerate(out) if i not in folded]

    plan = generation_evals()
    positive = tuple(sorted(e for e in suite.budget.eps if e > 0))
    for attack in suite.attacks:
        own = shared(attack)
        for eps in suite.budget.eps:
            for threat, sources, defense, evals in own:
                if eps == 0 or not searched(suite, threat, defense, randomized):
                    add(attack, sources, threat, defense, (eps,), evals)
        for threat, sources, defense, evals in plan:
            if searched(suite, threat, defense, randomized):
                add(attack, sources, threat, defense, positive, evals, search=True)
    return units


def naive_grad_evals(unit: Unit, n: int, samples: int) -> dict[int, int]:
    """Gradient evaluations if each checkpoint cell were generated by its own run, without early stop.

    A zero budget needs no attack at all, so its naive cost is zero too.
    """
    return {k: 0 if unit.eps == 0 else n * k * len(unit.sources) * samples for k in unit.checkpoints}
