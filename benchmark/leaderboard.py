"""The leaderboard as data: per suite, (target, defense) rows ranked by worst-case robustness, from stored cells.

A row's rank is its worst case at the largest budget over everything evaluated on it: every threat (query ones
included) and every attack, so no single threat's column decides the order; rows tied there (every purifier
broken to 0 at the largest budget) are ordered by their worst case at the next smaller budget shown.

:func:`build_leaderboard` reads the store only (sanity flags are recomputed every time, never stored);
``report.py`` renders the result to Markdown and HTML with the Jinja2 templates in ``templates/``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from robustgrid.benchmark.curves import PROBED, CurveKey, final_cells, key_of
from robustgrid.benchmark.records import CellRow, ProvenanceRow
from robustgrid.benchmark.sanity import FLAGS, sanity_flags
from robustgrid.benchmark.stats import TransferSection, transfer_sections
from robustgrid.benchmark.store import Store
from robustgrid.benchmark.threats import threats_by_rank, threats_in_order
from robustgrid.models.tasks import build_task

VERSION_KEYS = ("torch", "torchvision", "timm", "torchattacks", "pyiqa", "numpy", "git_commit")


@dataclass(frozen=True)
class ThreatOrder:
    """How the report places threats: column order, and which get transfer heatmaps."""

    columns: tuple[str, ...]
    heatmaps: tuple[str, ...]


def threat_order() -> ThreatOrder:
    """Column order and the heatmap threats, both read from the threat registry."""
    return ThreatOrder(columns=tuple(t.name for t in threats_in_order()),
                       heatmaps=tuple(t.name for t in threats_in_order() if t.cross_model))


@dataclass(frozen=True)
class Column:
    """A leaderboard column: the worst case over attacks under one threat at one budget."""

    threat: str
    eps: float

    @property
    def label(self) -> str:
        return f"{self.threat} @{self.eps:g}"


@dataclass(frozen=True)
class ThreatFlags:
    """The sanity flags raised for one row under one threat."""

    threat: str
    flags: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.threat}: {', '.join(self.flags)}"


@dataclass(frozen=True)
class Row:
    """One (target, defense) of a suite: clean metric, one value per column (None: not evaluated), the worst of
    them at the largest budget (what ranks it), flags, and the task's further metrics (``SuiteBoard.extra_columns``)."""

    rank: int
    target: str
    defense: str
    clean: float | None
    values: tuple[float | None, ...]
    worst: float | None
    flags: tuple[ThreatFlags, ...]
    extras: tuple[float | None, ...] = ()
    tiebreak: float | None = None  # the worst case at the next smaller shown budget: orders rows tied at ``worst``

    @property
    def flag_text(self) -> str:
        return "; ".join(map(str, self.flags)) or "ok"


@dataclass(frozen=True)
class AttackRow:
    """The per-attack breakdown of one (threat, sources, target, defense) at the largest budget."""

    threat: str
    sources: tuple[str, ...]
    target: str
    defense: str
    values: tuple[float | None, ...]  # one per attack of the suite


@dataclass(frozen=True)
class Cost:
    """A suite's gradient evaluations against generating every cell separately without early stop, and the model
    queries its query attacks spent."""

    grad_evals: int
    naive_grad_evals: int
    queries: int

    @property
    def saved(self) -> float:
        return self.naive_grad_evals / max(self.grad_evals, 1)


@dataclass(frozen=True)
class BudgetCurve:
    """One budget curve of (attack, sources, threat, target, defense) at the attack's full steps, for the plots.

    ``kind``: "plain" (one run per budget), "envelope" (the plain runs' per-sample envelope), or "search" (the
    per-sample budget search's envelope, ``budget.search = "binary"``)."""

    attack: str
    sources: tuple[str, ...]
    threat: str
    target: str
    defense: str
    kind: str
    eps: tuple[float, ...]
    values: tuple[float, ...]


def budget_curves(final: Sequence[CellRow], env: Mapping[str, float]) -> tuple[BudgetCurve, ...]:
    """Every budget curve of the final cells: a search's where its cells come from one, else the plain curve and,
    for success-type tasks, its envelope. The zero budget (no attack) belongs to every curve."""
    groups: dict[CurveKey, list[CellRow]] = {}
    for c in final:
        groups.setdefault(key_of(c), []).append(c)
    out = []
    for key, cells in sorted(groups.items(), key=lambda kv: (kv[0].attack, kv[0].threat, kv[0].sources,
                                                             kv[0].target, kv[0].defense)):
        cells = sorted(cells, key=lambda c: c.eps)
        eps = tuple(c.eps for c in cells)
        label = (key.attack, key.sources, key.threat, key.target, key.defense)
        if any(PROBED in c.metrics for c in cells):
            out.append(BudgetCurve(*label, "search", eps, tuple(c.value for c in cells)))
            continue
        out.append(BudgetCurve(*label, "plain", eps, tuple(c.value for c in cells)))
        if all(c.key in env for c in cells):
            out.append(BudgetCurve(*label, "envelope", eps, tuple(env[c.key] for c in cells)))
    return tuple(out)


@dataclass(frozen=True)
class SuiteBoard:
    """One suite's section: ranked rows, the per-attack breakdown, its cost and its plots."""

    name: str
    task: str
    dataset: str
    n: int
    metric: str
    envelope: bool  # the columns are per-sample budget envelopes (success-type tasks)
    columns: tuple[Column, ...]
    rank_eps: float | None  # the budget whose worst case over every threat and attack ranks the rows
    rows: tuple[Row, ...]
    breakdown_eps: float | None  # None when the suite has no positive budget
    attacks: tuple[str, ...]
    breakdown: tuple[AttackRow, ...]
    cost: Cost
    plots: tuple[str, ...]  # file names, next to the leaderboard
    curves: tuple[BudgetCurve, ...] = ()  # every budget curve, for the plots
    extra_columns: tuple[str, ...] = ()  # labels of Row.extras: each task column clean and at the ranked point

    @property
    def worst_label(self) -> str:
        """The header of the column that ranks the rows."""
        return "worst" if self.rank_eps is None else f"worst @{self.rank_eps:g}"

    @property
    def breaks_ties(self) -> bool:
        """Whether a second, smaller budget is shown, whose worst case orders rows tied at ``rank_eps``."""
        return len({col.eps for col in self.columns}) > 1


@dataclass(frozen=True)
class ProvenanceLine:
    """Suites whose cells share a config, a seed and the versions of the packages that shape results."""

    suites: tuple[str, ...]
    seed: str
    config_sha256: str
    versions: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Leaderboard:
    """Everything the leaderboard pages show, computed from the store alone."""

    cells: int
    config_seeds: tuple[str, ...]
    unit_seeds: int
    suites: tuple[SuiteBoard, ...]
    flag_legend: tuple[tuple[str, str], ...]
    transfer: tuple[TransferSection, ...]
    resamples: int
    provenance: tuple[ProvenanceLine, ...]

    def summary(self) -> dict[str, dict]:
        """``summary.json``: cost and row count per suite, and the flags of every flagged (row, threat)."""
        flags = {f"{s.name}|{r.target}|{r.defense}|{f.threat}": list(f.flags)
                 for s in self.suites for r in s.rows for f in r.flags}
        return {"summary": {s.name: {"grad_evals": s.cost.grad_evals, "naive_grad_evals": s.cost.naive_grad_evals,
                                     "rows": len(s.rows)} for s in self.suites},
                "flags": dict(sorted(flags.items()))}


def _worst(values: list[float]) -> float | None:
    """The strongest attack's value: the lowest (a higher primary metric is more robust, for every task)."""
    values = [v for v in values if v == v]
    return min(values) if values else None


def worst_case(final: Sequence[CellRow], env: Mapping[str, float], threat: str, eps: float, target: str,
               defense: str) -> float | None:
    """A leaderboard value: the worst case over attacks (and sources) of the final cells at one point, each cell's
    budget envelope where it has one (success-type tasks); None where nothing was evaluated."""
    return _worst([env.get(c.key, c.value) for c in final if c.threat == threat and c.eps == eps
                   and c.target == target and c.defense == defense])


def _suite_board(suite: str, sel: list[CellRow], cost: Cost, env: Mapping[str, float],
                 clean: Mapping[tuple[str, str, str], float], flags: Mapping[tuple[str, str, str, str], list[str]],
                 plots: Sequence[str]) -> SuiteBoard:
    """One suite from its final cells (full step count)."""
    order = threat_order()
    task_name, metric = sel[0].task, sel[0].metric
    task = build_task(task_name)
    eps_all = sorted({c.eps for c in sel if c.eps > 0})
    show_eps = eps_all[-2:]
    threats = [t for t in order.columns if any(c.threat == t for c in sel)]
    columns = tuple(Column(th, e) for th in threats for e in show_eps)
    rank_eps = show_eps[-1] if show_eps else None
    tie_eps = show_eps[0] if len(show_eps) > 1 else None  # the next smaller shown budget: orders rows tied at rank_eps
    rows = []
    for target, defense in sorted({(c.target, c.defense) for c in sel}):
        values = tuple(worst_case(sel, env, col.threat, col.eps, target, defense) for col in columns)
        worst, tiebreak = (_worst([v for col, v in zip(columns, values, strict=True) if col.eps == e and v is not None])
                           for e in (rank_eps, tie_eps))
        raised = tuple(ThreatFlags(th, tuple(flags[suite, target, defense, th])) for th in threats
                       if flags.get((suite, target, defense, th)))
        rows.append(Row(0, target, defense, clean.get((suite, target, defense)), values, worst, raised,
                        tiebreak=tiebreak))

    def rank_key(r: Row) -> tuple[bool, float, float]:
        return r.worst is None, -(r.worst or 0), -(r.tiebreak or 0)

    # the task's further metrics (IQA: SROCC, PLCC) at the preferred threat's column of the ranking budget
    rank_col = next((i for th in threats_by_rank() for i, col in enumerate(columns)
                     if col.threat == th.name and col.eps == rank_eps), None)
    extra_labels: tuple[str, ...] = ()
    if task.columns and rank_col is not None:
        at = columns[rank_col]
        extra_labels = tuple(f"{label} {m}" for m in task.columns for label in ("clean", at.label))
        rows = [replace(r, extras=extra_values(sel, task.columns, at, r.target, r.defense)) for r in rows]
    ranked = tuple(replace(r, rank=i) for i, r in enumerate(sorted(rows, key=rank_key), 1))
    attacks = tuple(sorted({c.attack for c in sel}))
    top = eps_all[-1] if eps_all else None
    combos = sorted({(c.threat, c.sources, c.target, c.defense) for c in sel if c.eps > 0 and c.threat in threats},
                    key=lambda k: (threats.index(k[0]), k[1], k[2], k[3]))
    value_at: dict[tuple[str, tuple[str, ...], str, str, str], float] = {}
    for c in sel:
        if c.eps == top:
            value_at.setdefault((c.threat, c.sources, c.target, c.defense, c.attack), c.value)
    breakdown = tuple(AttackRow(*k, tuple(value_at.get((*k, a)) for a in attacks)) for k in combos)
    return SuiteBoard(suite, task_name, sel[0].dataset.split(":")[0], sel[0].n, metric,
                      task.success_type, columns, rank_eps, ranked, top, attacks, breakdown, cost, tuple(plots),
                      budget_curves(sel, env), extra_labels)


def extra_values(final: Sequence[CellRow], names: Sequence[str], at: Column, target: str,
                 defense: str) -> tuple[float | None, ...]:
    """Per further metric: its clean value and its worst case over attacks at column ``at`` (lower = stronger)."""
    out: list[float | None] = []
    for m in names:
        clean = [c.metrics.get(m, float("nan")) for c in final if c.eps == 0 and c.target == target
                 and c.defense == defense]
        attacked = [c.metrics.get(m, float("nan")) for c in final if c.threat == at.threat and c.eps == at.eps
                    and c.target == target and c.defense == defense]
        out += [_worst(clean), _worst(attacked)]
    return tuple(out)


def _provenance_lines(cells: list[CellRow], prov: Mapping[str, ProvenanceRow]) -> tuple[ProvenanceLine, ...]:
    """The provenance records the cells reference, grouped by (seed, config hash, versions)."""
    groups: dict[tuple[str, str, tuple[tuple[str, str], ...]], set[str]] = {}
    for pid in sorted({c.provenance for c in cells}):
        info = prov[pid].data()
        versions = info.get("versions", {})
        key = (str(info.get("seed", "?")), str(info.get("config_sha256", "?")),
               tuple((k, str(versions.get(k, "?"))) for k in VERSION_KEYS))
        groups.setdefault(key, set()).add(prov[pid].suite)
    return tuple(ProvenanceLine(tuple(sorted(suites)), *key) for key, suites in sorted(groups.items()))


def clean_values(final: Sequence[CellRow]) -> dict[tuple[str, str, str], float]:
    """The clean metric of each (suite, target, defense): its zero-budget final cells' value."""
    clean: dict[tuple[str, str, str], float] = {}
    for c in final:
        if c.eps == 0:
            clean[c.suite, c.target, c.defense] = c.value
    return clean


def build_leaderboard(store: Store, cells: list[CellRow], env: Mapping[str, float],
                      prov: Mapping[str, ProvenanceRow], plots: Mapping[str, Sequence[str]],
                      resamples: int = 1000) -> Leaderboard:
    """The leaderboard of ``cells`` (all of the store's), with envelopes ``env`` and the plot files per suite."""
    final = final_cells(cells)
    clean = clean_values(final)
    flags = sanity_flags(cells, clean)
    spent: dict[str, int] = {}
    asked: dict[str, int] = {}
    for u in store.units():
        spent[u.suite] = spent.get(u.suite, 0) + u.grad_evals
        asked[u.suite] = asked.get(u.suite, 0) + u.queries
    suites = []
    for suite in sorted({c.suite for c in cells}):
        cost = Cost(spent.get(suite, 0), sum(c.naive_grad_evals for c in cells if c.suite == suite),
                    asked.get(suite, 0))
        suites.append(_suite_board(suite, [c for c in final if c.suite == suite], cost, env, clean, flags,
                                   plots.get(suite, ())))
    lines = _provenance_lines(cells, prov)
    return Leaderboard(cells=len(cells), config_seeds=tuple(sorted({p.seed for p in lines})),
                       unit_seeds=len({c.seed for c in cells}), suites=tuple(suites),
                       flag_legend=tuple(FLAGS.items()), transfer=transfer_sections(store, cells, resamples),
                       resamples=resamples, provenance=lines)
