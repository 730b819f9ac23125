"""Threat models as registered objects: which models an attack differentiates or queries, how its units are
planned, and what its results should look like.

Every other module asks a ``Threat`` instead of comparing threat names, so a new threat (a query threat,
say) is one ``register_threat`` call here and nothing anywhere else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import nn

from robustgrid.attacks.base import ACCESS
from robustgrid.core import Registry, RobustgridError, check_choice
from robustgrid.defenses import Defended, Purifier, bpda
from robustgrid.models.oracle import DecisionOracle, ScoreOracle

if TYPE_CHECKING:
    from robustgrid.benchmark.config import Suite
    from robustgrid.benchmark.planner import Unit
    from robustgrid.models.target import Target

SOURCE_PLANS = ("each-target", "transfer-groups")  # one unit per target alone, or per [suite.transfer] group
EVAL_TARGETS = ("sources", "others")               # the attacked targets themselves, or every non-source target
EVAL_DEFENSES = ("bare", "purifiers", "all", "attacked")  # no purifier, every real one, all, the attacked one
ORACLES = {"score": ScoreOracle, "decision": DecisionOracle}  # what a query threat shows its attack of a model


def exact(purifier: Purifier) -> Purifier:
    """The purifier itself in what the attack differentiates (its exact gradient) or queries."""
    return purifier


@dataclass(frozen=True)
class Threat:
    """What an attack sees and how its examples are evaluated; all a planner, runner or report asks of a threat."""

    name: str
    description: str
    column: int                         # leaderboard column order (left to right)
    rank: int                           # preference for the column that ranks the leaderboard (lowest first)
    source_plan: str = "each-target"    # SOURCE_PLANS: the source sets of its units
    evaluated_on: str = "sources"       # EVAL_TARGETS: the targets that evaluate a unit
    evaluated_behind: str = "bare"      # EVAL_DEFENSES: the defenses they are evaluated behind
    purifier_in_graph: Callable[[Purifier], Purifier] | None = None  # None: the attack sees bare models only
    rides_on: str | None = None         # evaluates another threat's examples and generates none of its own
    shares_with: str | None = None      # a threat whose single-source units also serve it where no run stops early
    early_stop: bool = True             # may samples leave the batch once they fool the attack's models?
    eot: bool = False                   # average gradients over a randomised purifier's draws
    needs_differentiable: bool = False  # refuse a purifier without exact gradients
    expected_to_fall: bool = True       # should the metric approach 0 at the largest budget (the no-fall flag)?
    sees_model: bool = True             # does the attack use the evaluated target itself (the transfer>wb flag)?
    default: bool = False               # a suite without a threats key runs the default threats
    access: str = "gradient"            # ACCESS: what the attack gets of a model (gradients, outputs, top-1 label)
    also_bare: bool = False             # a per-defense threat that also attacks the undefended target ("none")
    tasks: tuple[str, ...] | None = None  # the suite tasks it applies to (None: every task)

    def __post_init__(self) -> None:
        what = f"threat {self.name!r}"
        check_choice(what, "source_plan", self.source_plan, SOURCE_PLANS)
        check_choice(what, "evaluated_on", self.evaluated_on, EVAL_TARGETS)
        check_choice(what, "evaluated_behind", self.evaluated_behind, EVAL_DEFENSES)
        check_choice(what, "access", self.access, ACCESS)
        if self.access != "gradient" and (self.eot or self.needs_differentiable):
            raise RobustgridError(f"{what}: a threat with {self.access} access gives no gradient, so it cannot "
                                  "average gradients (eot) or need a differentiable purifier")
        if self.also_bare and not self.per_defense:
            raise RobustgridError(f"{what}: also_bare adds the undefended target to the purifiers an attack sees "
                                  "(purifier_in_graph), so it needs one")
        if (self.evaluated_behind == "attacked") != self.per_defense:
            raise RobustgridError(f"{what}: an attack that differentiates a purifier is evaluated behind that "
                                  "purifier (evaluated_behind='attacked'), and only such an attack")
        if self.shares_with is not None and (self.rides_on is not None or self.per_defense):
            raise RobustgridError(f"{what}: a threat sharing {self.shares_with!r}'s units must generate its own "
                                  "examples elsewhere and see no purifier")
        if self.rides_on is not None and self.per_defense:
            raise RobustgridError(f"{what}: a threat riding on {self.rides_on!r} generates nothing, so it cannot "
                                  "differentiate a purifier")

    @property
    def per_defense(self) -> bool:
        """Do the adversarial examples depend on the defense (one unit per purifier)?"""
        return self.purifier_in_graph is not None

    @property
    def needs_defense(self) -> bool:
        """Is the threat meaningless without a defense other than ``none``?"""
        return self.evaluated_behind == "purifiers" or (self.per_defense and not self.also_bare)

    @property
    def queries(self) -> bool:
        """Does its attack only query the model (score or decision access), never differentiate it?"""
        return self.access != "gradient"

    def grants(self, access: str) -> bool:
        """Can an attack needing ``access`` run under this threat (weaker access than the attack needs: no)?"""
        return ACCESS.index(access) >= ACCESS.index(self.access)

    @property
    def cross_model(self) -> bool:
        """Are its examples evaluated on other models than the ones they were made on (transfer)?"""
        return self.evaluated_on == "others"

    @property
    def white_box(self) -> bool:
        """Does its attack differentiate exactly the bare target it is evaluated on?"""
        return self.evaluated_on == "sources" and self.evaluated_behind == "bare"

    def source_groups(self, suite: Suite) -> tuple[tuple[str, ...], ...]:
        """The source sets of its units: each target alone, or the suite's transfer groups."""
        if self.source_plan == "each-target":
            return tuple((t.name,) for t in suite.targets)
        return suite.sources

    def unit_defenses(self, suite: Suite) -> tuple[str, ...]:
        """The defense each of its units attacks through: every real purifier (and the bare target where
        ``also_bare``), or none."""
        if not self.per_defense:
            return ("none",)
        return tuple(d.name for d in suite.defenses if self.also_bare or d.name != "none")

    def evaluations(self, suite: Suite, sources: tuple[str, ...], defense: str) -> list[tuple[str, str]]:
        """The (target, defense) pairs that evaluate a unit made on ``sources`` through ``defense``."""
        names = [t.name for t in suite.targets]
        targets = list(sources) if self.evaluated_on == "sources" else [t for t in names if t not in sources]
        purifiers = [d.name for d in suite.defenses if d.name != "none"]
        behind = {"bare": ["none"], "purifiers": purifiers, "all": [d.name for d in suite.defenses],
                  "attacked": [defense]}[self.evaluated_behind]
        return [(t, d) for t in targets for d in behind]

    def attack_modules(self, targets: Mapping[str, Target], purifiers: Mapping[str, Purifier],
                       unit: Unit) -> list[nn.Module]:
        """The modules the unit's attack differentiates or queries: its sources, behind its purifier if the threat
        sees it, seen through an oracle (outputs or labels, no gradient) under a query threat."""
        modules = [targets[s].module for s in unit.sources]
        if self.purifier_in_graph is not None and unit.defense != "none":
            wrapped = self.purifier_in_graph(purifiers[unit.defense])
            modules = [Defended(m, wrapped) for m in modules]
        oracle = ORACLES.get(self.access)
        return modules if oracle is None else [oracle(m) for m in modules]

    def allows_early_stop(self, randomized: bool) -> bool:
        """Success on the attack's models is success on the evaluated one only for these threats, and only
        when the purifier in the attack's graph gives the same output every time."""
        return self.early_stop and not randomized

    def stops_early(self, suite_early_stop: bool, success_type: bool, randomized: bool) -> bool:
        """Whether this threat's runs freeze fooled samples: the suite asks, the task has per-sample success, and
        success on the attack's models is success on the evaluated one. The runner and the planner both ask this."""
        return suite_early_stop and success_type and self.allows_early_stop(randomized)

    def eot_samples(self, randomized: bool, samples: int) -> int:
        """How many purifier draws each gradient averages over."""
        return samples if self.eot and randomized else 1

    def check_purifier(self, where: str, defense: str, purifier: Purifier) -> None:
        """Refuse a purifier the threat cannot attack (no exact gradient where one is needed)."""
        if self.needs_differentiable and defense != "none" and not purifier.differentiable:
            instead = [t.name for t in threats_in_order()  # the threats the same (gradient) attack can run under
                       if t.per_defense and not t.needs_differentiable and t.grants("gradient")]
            hint = f" (use {', '.join(repr(n) for n in instead)})" if instead else ""
            raise RobustgridError(f"{where}: threat {self.name!r} needs a differentiable purifier; {defense!r} is "
                                  f"not{hint}")

    def check_attack(self, where: str, attack: str, access: str) -> None:
        """Refuse an attack that needs more of the model than the threat shows (a gradient attack under score)."""
        if not self.grants(access):
            under = [t.name for t in threats_in_order() if t.grants(access)]
            raise RobustgridError(f"{where}: attack {attack!r} needs {access} access, threat {self.name!r} gives "
                                  f"{self.access} access only; {attack!r} can run under {', '.join(under)}")

    def check_task(self, where: str, task: str) -> None:
        """Refuse a suite whose task the threat does not apply to (decision access needs a top-1 label)."""
        if self.tasks is not None and task not in self.tasks:
            raise RobustgridError(f"{where}: threat {self.name!r} is for {', '.join(self.tasks)} suites only, "
                                  f"not {task}")


THREATS: Registry[Threat] = Registry("threat")


def register_threat(threat: Threat) -> Threat:
    """Add ``threat`` to the registry; a threat riding on or sharing another's units needs that one registered,
    with sources it can use."""
    if threat.rides_on is not None:
        host = get_threat(threat.rides_on)
        if host.rides_on is not None or host.source_plan != threat.source_plan:
            raise RobustgridError(f"threat {threat.name!r} rides on {host.name!r}, which must generate its own "
                                  f"examples from the same sources ({threat.source_plan})")
    if threat.shares_with is not None:
        host = get_threat(threat.shares_with)
        if host.rides_on is not None or host.per_defense or host.source_plan != "each-target":
            raise RobustgridError(f"threat {threat.name!r} shares {host.name!r}'s units, which must be made on each "
                                  "target alone and through no purifier")

    if threat.name in THREATS and get_threat(threat.name) != threat:
        raise RobustgridError(f"threat {threat.name!r} is already registered")

    def make() -> Threat:
        return threat

    make.__doc__ = threat.description
    THREATS.register(threat.name)(make)
    return threat


def get_threat(name: str) -> Threat:
    """The registered threat ``name``; an unknown name raises an error listing the closest ones."""
    return THREATS.entry(name).fn()


def threats_in_order() -> list[Threat]:
    """Every threat in leaderboard column order."""
    return sorted((get_threat(n) for n in THREATS.names()), key=lambda t: (t.column, t.name))


def threats_by_rank() -> list[Threat]:
    """Every threat in order of preference for the leaderboard's ranking column."""
    return sorted(threats_in_order(), key=lambda t: (t.rank, t.column))


def list_threats() -> list[tuple[str, str]]:
    """(name, one-line description) of every threat, in column order."""
    return [(t.name, t.description) for t in threats_in_order()]


def default_threats() -> tuple[str, ...]:
    """The threats a suite without a ``threats`` key runs."""
    return tuple(t.name for t in threats_in_order() if t.default)


def generations(names: tuple[str, ...] | list[str]) -> list[tuple[Threat, list[Threat]]]:
    """Per threat that generates examples, the threats among ``names`` evaluating them (itself and its riders).

    A generating threat appears only if one of them is named, so blind alone still plans whitebox units.
    """
    named = [t for t in threats_in_order() if t.name in names]
    out = []
    for gen in threats_in_order():
        if gen.rides_on is None:
            users = [t for t in named if t.name == gen.name or t.rides_on == gen.name]
            if users:
                out.append((gen, users))
    return out


register_threat(Threat(
    "whitebox", "the attack differentiates the bare target itself; evaluated without a defense",
    column=0, rank=1, default=True))
register_threat(Threat(
    "blind", "the whitebox examples of the bare target, evaluated behind every purifier (the attack ignores it)",
    column=1, rank=3, evaluated_behind="purifiers", rides_on="whitebox", expected_to_fall=False))
register_threat(Threat(
    "bpda", "the attack differentiates target and purifier with the identity as the purifier's backward pass",
    column=2, rank=2, evaluated_behind="attacked", purifier_in_graph=bpda))
register_threat(Threat(
    "adaptive", "the attack differentiates target and purifier exactly, with EOT over a randomised purifier",
    column=3, rank=0, evaluated_behind="attacked", purifier_in_graph=exact, eot=True, needs_differentiable=True))
register_threat(Threat(
    "transfer", "examples made on the suite's transfer sources, evaluated on every other target and defense",
    column=4, rank=4, source_plan="transfer-groups", evaluated_on="others", evaluated_behind="all", early_stop=False,
    expected_to_fall=False, sees_model=False, shares_with="whitebox"))
# Query threats: the attack sees a model only through an oracle, so they run behind any purifier, differentiable or
# not. Not expected to fall: a query budget may be too small to break a model (the not-converged flag says so).
register_threat(Threat(
    "score", "the attack queries only the target's outputs, bare and behind each purifier; no gradient",
    column=5, rank=5, evaluated_behind="attacked", purifier_in_graph=exact, also_bare=True, access="score",
    expected_to_fall=False))
register_threat(Threat(
    "decision", "the attack queries only the target's top-1 label, bare and behind each purifier (classification)",
    column=6, rank=6, evaluated_behind="attacked", purifier_in_graph=exact, also_bare=True, access="decision",
    expected_to_fall=False, tasks=("classification",)))
