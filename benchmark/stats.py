"""Bootstrap confidence intervals over evaluated samples, and the transfer table built on them.

Every cell stores its per-sample outcomes, so an interval needs no re-attack: resample the *samples*
(images or scenes) with replacement, recompute the dataset-level metric with the task's own code
(``Task.resampler``) and take percentiles. Where samples share a root (IQA patches of one source photograph,
``ImageDataset.groups``) they are not independent, and ``roots`` makes the bootstrap draw whole roots instead.
Several cells evaluated on the same samples share each draw, which makes means over (source, target) pairs
and differences between attacks paired comparisons.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from robustgrid.benchmark.records import CellRow
from robustgrid.benchmark.store import Store
from robustgrid.benchmark.threats import get_threat, threats_in_order
from robustgrid.core import RobustgridError
from robustgrid.models.tasks import build_task


@dataclass(frozen=True)
class Interval:
    """A point estimate on all samples and its percentile bootstrap interval."""

    estimate: float
    low: float
    high: float
    level: float
    resamples: int

    def excludes(self, value: float) -> bool:
        """True if ``value`` lies outside the interval (e.g. 0 for a difference)."""
        return not (self.low <= value <= self.high)

    def __str__(self) -> str:
        return f"{self.estimate:.3f} [{self.low:.3f}, {self.high:.3f}]"


def resample_indices(n: int, resamples: int, seed: int,
                     roots: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
    """``resamples`` rows of sample indices drawn with replacement, reproducible from ``seed``.

    Without ``roots``: a (resamples, n) array of independent draws. With ``roots`` (one group id per sample):
    each row draws as many roots as there are, with replacement, and takes every sample of each drawn root,
    so rows differ in length (an object array of index arrays)."""
    if n < 1:
        raise RobustgridError("bootstrap needs at least one sample")
    if resamples < 1:
        raise RobustgridError(f"resamples must be >= 1, got {resamples}")
    rng = np.random.default_rng(seed)
    if roots is None:
        return rng.integers(0, n, size=(resamples, n))
    roots = np.asarray(roots).reshape(-1)
    if len(roots) != n:
        raise RobustgridError(f"roots must give one group per sample: {len(roots)} roots for {n} samples")
    names, of = np.unique(roots, return_inverse=True)
    members = [np.flatnonzero(of == g) for g in range(len(names))]
    rows = np.empty(resamples, dtype=object)
    for r, drawn in enumerate(rng.integers(0, len(names), size=(resamples, len(names)))):
        rows[r] = np.concatenate([members[g] for g in drawn])
    return rows


def percentile_interval(estimate: float, draws: np.ndarray, level: float) -> Interval:
    """The percentile interval of bootstrap ``draws`` around ``estimate`` (NaN draws are dropped)."""
    if not 0 < level < 1:
        raise RobustgridError(f"confidence level must lie in (0, 1), got {level}")
    draws = draws[np.isfinite(draws)]
    if not draws.size:
        return Interval(estimate, math.nan, math.nan, level, 0)
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return Interval(float(estimate), float(lo), float(hi), level, int(draws.size))


def bootstrap(statistic: Callable[[np.ndarray], float], n: int, resamples: int = 1000, seed: int = 0,
              level: float = 0.95, roots: Sequence[int] | np.ndarray | None = None) -> Interval:
    """Percentile bootstrap of ``statistic(indices)`` over ``n`` samples (whole ``roots`` if given, see
    :func:`resample_indices`); the estimate uses all of them."""
    idx = resample_indices(n, resamples, seed, roots)
    draws = np.array([statistic(i) for i in idx], dtype=np.float64)
    return percentile_interval(statistic(np.arange(n)), draws, level)


@dataclass(frozen=True)
class TransferRow:
    """One attack's mean over (source, target) pairs, with intervals, at one budget and step count."""

    attack: str
    pairs: int
    n: int
    intervals: dict[str, Interval]           # metric -> mean over pairs
    differences: dict[str, Interval | None]  # metric -> (this attack - baseline), paired; None for the baseline
    grad_evals_per_sample: float
    extras: dict[str, float]                 # plain means of stored per-cell metrics (e.g. mean_ssim)


def _select(cells: list[CellRow], suites: Sequence[str], threat: str, eps: float, steps: int | None,
            defense: str) -> list[CellRow]:
    chosen = [c for c in cells if c.suite in suites and c.threat == threat and c.defense == defense
              and math.isclose(c.eps, eps, rel_tol=1e-6, abs_tol=1e-9)]
    if get_threat(threat).cross_model:
        chosen = [c for c in chosen if c.target not in c.sources]
    if steps is None:  # the full attack of each unit: its largest checkpoint
        top: dict[str, int] = {}
        for c in chosen:
            top[c.unit] = max(top.get(c.unit, 0), c.steps)
        chosen = [c for c in chosen if c.steps == top[c.unit]]
    else:
        chosen = [c for c in chosen if c.steps == steps]
    return chosen


def transfer_table(store: Store, suites: str | Sequence[str], metrics: Sequence[str], eps: float, *,
                   threat: str | None = None, steps: int | None = None, defense: str = "none",
                   baseline: str | None = None, resamples: int = 1000, seed: int = 0, level: float = 0.95,
                   extras: Sequence[str] = (), cells: list[CellRow] | None = None,
                   roots: Sequence[int] | np.ndarray | None = None) -> list[TransferRow]:
    """Per attack: each metric averaged over its (source, target) cells, with paired bootstrap intervals.

    Cells evaluated on the same samples share each draw of sample indices, so the mean over pairs and the
    difference to ``baseline`` are paired statistics. Several ``suites`` may be pooled (e.g. single-source
    and ensemble transfer) if they evaluate the same samples; an attack label used by two of them is
    shown as ``suite:label``. ``cells`` are the store's cells if the caller has already read them;
    ``threat`` defaults to the first threat whose examples are evaluated on other models (transfer); ``roots``
    (one group id per sample, e.g. ``ImageDataset.groups``) resamples whole groups.
    """
    threat = default_table_threat() if threat is None else get_threat(threat).name
    suites = [suites] if isinstance(suites, str) else list(suites)
    cells = store.cells() if cells is None else cells
    known = sorted({c.suite for c in cells})
    missing = [s for s in suites if s not in known]
    if missing:
        raise RobustgridError(f"no cells of suite {missing[0]!r} in the store; suites: {', '.join(known) or 'none'}")
    chosen = _select(cells, suites, threat, eps, steps, defense)
    if not chosen:
        budgets = sorted({c.eps for c in cells if c.suite in suites and c.threat == threat})
        raise RobustgridError(f"suite {', '.join(suites)!r} has no {threat} cells at eps={eps} (defense {defense!r}); "
                              f"stored budgets: {', '.join(f'{b:g}' for b in budgets) or 'none'}")
    datasets = sorted({c.dataset for c in chosen})
    if len(datasets) > 1:
        raise RobustgridError(f"suites {', '.join(suites)} evaluate different samples ({' vs '.join(datasets)}); "
                              "paired intervals need the same dataset, split, size and seed")
    task = build_task(chosen[0].task)
    labels = store.labels(chosen[0].suite, chosen[0].dataset)
    if roots is None:  # the dataset's own groups, where it has them
        roots = store.groups(chosen[0].suite, chosen[0].dataset)
    n = len(labels)
    idx = [np.arange(n), *resample_indices(n, resamples, seed, roots)]  # row 0: all samples
    suites_of: dict[str, set[str]] = {}
    for c in chosen:
        suites_of.setdefault(c.attack, set()).add(c.suite)
    by_attack: dict[str, list[CellRow]] = {}
    for c in chosen:
        by_attack.setdefault(c.attack if len(suites_of[c.attack]) == 1 else f"{c.suite}:{c.attack}", []).append(c)
    if baseline is not None and baseline not in by_attack:
        raise RobustgridError(f"baseline attack {baseline!r} has no matching cells; attacks: {', '.join(by_attack)}")
    draws: dict[str, dict[str, np.ndarray]] = {}
    square = np.stack(idx) if len({len(rows) for rows in idx}) == 1 else None  # whole groups vary in size
    for attack, group in by_attack.items():
        per_metric = {m: np.zeros(len(idx)) for m in metrics}
        for c in group:
            clean, outcome = store.clean_for(c), c.outcome(store)
            if square is not None:  # every draw the same size: each metric's draws at once (Task.bootstrap)
                for m in metrics:
                    per_metric[m] += task.bootstrap(outcome, labels, clean, m, square)
                continue
            values = task.resampler(outcome, labels, clean, names=metrics)
            for r, rows in enumerate(idx):
                got = values(rows)
                for m in metrics:
                    per_metric[m][r] += got[m]
        draws[attack] = {m: v / len(group) for m, v in per_metric.items()}
    rows = []
    for attack, group in by_attack.items():
        d = draws[attack]
        intervals = {m: percentile_interval(d[m][0], d[m][1:], level) for m in metrics}
        diffs: dict[str, Interval | None] = {}
        for m in metrics:
            if baseline is None or attack == baseline:
                diffs[m] = None
            else:
                delta = d[m] - draws[baseline][m]
                diffs[m] = percentile_interval(delta[0], delta[1:], level)
        rows.append(TransferRow(
            attack=attack, pairs=len(group), n=n, intervals=intervals, differences=diffs,
            grad_evals_per_sample=float(np.mean([c.grad_evals / c.n for c in group])),
            extras={e: float(np.mean([c.metrics.get(e, math.nan) for c in group])) for e in extras}))
    return rows


def transfer_cells(rows: list[TransferRow], metrics: Sequence[str], baseline: str | None = None,
                   extras: Sequence[str] = ()) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """The table as text cells (header, rows): estimate [95% interval] per metric, paired difference to baseline."""
    level = next((iv.level for r in rows for iv in r.intervals.values()), 0.95)
    pct = f"{100 * level:g}%"
    head = ["attack", "pairs", "n"] + [f"{m} [{pct} CI]" for m in metrics]
    if baseline:
        head += [f"{m} - {baseline} [{pct} CI]" for m in metrics]
    head += ["grad evals / sample", *extras]
    body = []
    for r in rows:
        cells = [r.attack, str(r.pairs), str(r.n)] + [str(r.intervals[m]) for m in metrics]
        if baseline:
            cells += ["-" if r.differences[m] is None else _signed(r.differences[m]) for m in metrics]
        cells += [f"{r.grad_evals_per_sample:.0f}", *(f"{r.extras[e]:.3f}" for e in extras)]
        body.append(tuple(cells))
    return tuple(head), tuple(body)


def transfer_markdown(rows: list[TransferRow], metrics: Sequence[str], baseline: str | None = None,
                      extras: Sequence[str] = ()) -> str:
    """The table of :func:`transfer_cells` as Markdown."""
    head, body = transfer_cells(rows, metrics, baseline, extras)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body]) + "\n"


def _signed(iv: Interval) -> str:
    mark = " *" if iv.excludes(0.0) else ""
    return f"{iv.estimate:+.3f} [{iv.low:+.3f}, {iv.high:+.3f}]{mark}"


REPORT_BASELINES = ("pgd", "ifgsm", "fgsm")  # the first of these present is each suite's reference attack


def _table_threats() -> list[str]:
    """The threats a transfer table is about: those whose examples are evaluated on other models."""
    return [t.name for t in threats_in_order() if t.cross_model]


def default_table_threat() -> str:
    """The threat a transfer table reads unless told: the first cross-model one (transfer)."""
    names = _table_threats()
    if not names:
        raise RobustgridError("no registered threat evaluates its examples on other models; name a threat")
    return names[0]


@dataclass(frozen=True)
class TransferSection:
    """One suite's transfer table under one cross-model threat at its largest budget, as text cells."""

    suite: str
    threat: str
    eps: float
    head: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def transfer_sections(store: Store, cells: list[CellRow], resamples: int = 1000,
                      seed: int = 0) -> tuple[TransferSection, ...]:
    """Per suite and cross-model threat, the transfer table at the largest budget against the reference attack."""
    parts = []
    for threat in _table_threats():
        for suite in sorted({c.suite for c in cells if c.threat == threat and c.defense == "none"}):
            sel = [c for c in cells if c.suite == suite and c.threat == threat and c.defense == "none"
                   and c.target not in c.sources]
            if not sel:
                continue
            eps = max(c.eps for c in sel)
            task = build_task(sel[0].task)
            attacks = {c.attack for c in sel if c.eps == eps}
            baseline = next((b for b in REPORT_BASELINES if b in attacks), None) if len(attacks) > 1 else None
            rows = transfer_table(store, suite, task.transfer_metrics, eps, threat=threat, baseline=baseline,
                                  resamples=resamples, seed=seed, cells=cells)
            parts.append(TransferSection(suite, threat, eps, *transfer_cells(rows, task.transfer_metrics, baseline)))
    return tuple(parts)


@dataclass(frozen=True)
class CellDifference:
    """A grid point whose primary value differs between two stores; ``interval`` is of (A - B), None when
    the two cells were evaluated on different samples."""

    cell: CellRow  # store A's cell
    a: float
    b: float
    interval: Interval | None


@dataclass(frozen=True)
class Comparison:
    """Two stores cell by cell: the matched cells whose values differ, and how many cells only one holds."""

    differences: tuple[CellDifference, ...]
    only_a: int
    only_b: int
    resamples: int


def grid_point(c: CellRow) -> tuple:
    """What identifies a cell across stores: its grid coordinates (the content key also hashes seed and weights)."""
    return c.suite, c.task, c.attack, c.sources, c.threat, c.norm, c.eps, c.steps, c.target, c.defense, c.metric


def _same(a: float, b: float) -> bool:
    return a == b or (a != a and b != b)


def _paired_difference(a: Store, ca: CellRow, b: Store, cb: CellRow, resamples: int, seed: int,
                       level: float) -> Interval:
    """Bootstrap of (A - B) in the primary metric, both cells resampled with the same sample indices (whole groups
    where store A's dataset has them)."""
    task = build_task(ca.task)
    n = len(a.labels(ca.suite, ca.dataset))
    draws = resample_indices(n, resamples, seed, a.groups(ca.suite, ca.dataset))
    idx = np.empty(len(draws) + 1, dtype=object) if draws.dtype == object else np.empty((len(draws) + 1, n), int)
    idx[0], idx[1:] = np.arange(n), draws  # row 0: all samples
    got = [task.bootstrap(c.outcome(s), s.labels(c.suite, c.dataset), s.clean_for(c), c.metric, idx)
           for s, c in ((a, ca), (b, cb))]
    delta = got[0] - got[1]
    return percentile_interval(delta[0], delta[1:], level)


def compare_stores(a: Store, b: Store, resamples: int = 1000, seed: int = 0, level: float = 0.95) -> Comparison:
    """Match the cells of two stores by grid point; paired bootstrap intervals of each differing value."""
    if resamples < 1:
        raise RobustgridError(f"resamples must be >= 1, got {resamples}")
    cells_a = {grid_point(c): c for c in a.cells()}
    cells_b = {grid_point(c): c for c in b.cells()}
    diffs = []
    for point in sorted(cells_a.keys() & cells_b.keys()):
        ca, cb = cells_a[point], cells_b[point]
        if _same(ca.value, cb.value):
            continue
        paired = ca.dataset == cb.dataset
        interval = _paired_difference(a, ca, b, cb, resamples, seed, level) if paired else None
        diffs.append(CellDifference(ca, ca.value, cb.value, interval))
    return Comparison(tuple(diffs), len(cells_a.keys() - cells_b.keys()), len(cells_b.keys() - cells_a.keys()),
                      resamples)


def compare_markdown(cmp: Comparison) -> str:
    """The differing cells as a Markdown table (``*``: the interval of A - B excludes 0) and the unmatched counts."""
    level = next((d.interval.level for d in cmp.differences if d.interval), 0.95)
    head = ["suite", "attack", "sources", "threat", "eps", "steps", "target", "defense", "metric", "A", "B",
            f"A - B [{100 * level:g}% CI]"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] if cmp.differences else []
    for d in cmp.differences:
        c = d.cell
        diff = f"{d.a - d.b:+.3f} (different samples)" if d.interval is None else _signed(d.interval)
        row = [c.suite, c.attack, "+".join(c.sources), c.threat, f"{c.eps:g}", str(c.steps), c.target, c.defense,
               c.metric, f"{d.a:.3f}", f"{d.b:.3f}", diff]
        lines.append("| " + " | ".join(row) + " |")
    lines += [""] * bool(lines) + [f"{len(cmp.differences)} matched cells differ; {cmp.only_a} cells only in A, "
                                   f"{cmp.only_b} only in B ({cmp.resamples} resamples)"]
    return "\n".join(lines) + "\n"
