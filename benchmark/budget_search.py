"""Per-sample budget search: the envelope budget curve at about log2(B) + 1 attack runs per sample instead of B.

A sample broken at eps is broken at every larger eps (its adversarial example lies in every larger ball), so each
sample's minimal breaking budget among the sorted epsilons is found by binary search; each probe is one full-steps
run of the attack (early stop as configured) keeping its checkpoints, so the iteration curves remain. A budget below
a sample's minimal one that was not probed reports the monotone closure: the iterate of the largest probe below it,
whose ball lies inside its own (the clean image where there is none).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from robustgrid.attacks import Attack, AttackResult, GradientAttack
from robustgrid.attacks.loop import LoopRun


@dataclass(frozen=True)
class Probe:
    """One probe run: the samples (rows of the batch) attacked at ``budgets[index]`` and what the run gave."""

    index: int
    rows: Tensor
    checkpoints: dict[int, Tensor]   # step -> iterates of ``rows``
    fooled: dict[int, Tensor]        # step -> does that iterate fool every source (bool over ``rows``)
    grad_evals_at: dict[int, int]
    outcomes: dict[int, np.ndarray] | None = None  # step -> the iterates' outcomes on the one source, if recorded


@dataclass(frozen=True)
class Generated:
    """A batch's examples per (eps, step) for evaluation and the cost spent per (eps, step) (a plain run's too);
    for a search, the samples probed per eps and each sample's minimal breaking budget index (-1: broken clean;
    ``len(budgets)``: never broken)."""

    images: dict[tuple[float, int], Tensor]
    cost: dict[tuple[float, int], int]
    probed: dict[float, int]   # samples probed at each budget
    minimal: Tensor
    grad_evals: int
    forwards: int
    queries: dict[tuple[float, int], int] = field(default_factory=dict)  # a query attack's, per (eps, step)
    query_total: int = 0
    # per (eps, step), each image's outcome on the attack's one source as the attack's own passes saw it (None:
    # not recorded); the runner takes it for the evaluation where the evaluated module is that source
    outcomes: dict[tuple[float, int], np.ndarray] | None = None


def fools(models: Sequence[nn.Module], success: Callable[[Tensor, Tensor], Tensor], x: Tensor, y: Tensor) -> Tensor:
    """Per-sample bool: does ``x`` fool every source (a gradient-free forward per source)."""
    out = torch.ones(len(x), dtype=torch.bool, device=x.device)
    with torch.inference_mode():
        for model in models:
            out &= success(model(x), y)
    return out


def fooled_at(models: Sequence[nn.Module], success: Callable[[Tensor, Tensor], Tensor], iterates: dict[int, Tensor],
              y: Tensor, frozen: bool) -> dict[int, Tensor]:
    """Per checkpoint, which iterates fool every source. An iterate equal to the last one fools when that does; when
    the run freezes samples at the first iterate found fooling (``frozen``), no other one does, so one forward
    suffices; otherwise the others are checked by forwards."""
    last = max(iterates)
    final = fools(models, success, iterates[last], y)
    out = {}
    for k, xk in iterates.items():
        same = (xk == iterates[last]).flatten(1).all(1)
        out[k] = final & same
        if not frozen and not bool(same.all()):
            out[k][~same] = fools(models, success, xk[~same], y[~same])
    return out


class _Prober:
    """The runs of one search: per round, (budget index, rows) groups, one batch at a per-sample eps where the attack
    takes one (small batches cost far more per image), else one batch per budget; each run's iterates go into the
    closure. Where the loop records outcomes (``GradientAttack.records_outcomes``) a run's own passes say which
    iterates fool the source, and what it predicts, instead of extra forwards."""

    def __init__(self, attack: Attack, models: Sequence[nn.Module], x: Tensor, y: Tensor, budgets: list[float],
                 checkpoints: Sequence[int], seed: int, early_stop: bool, eot_samples: int) -> None:
        self.attack, self.models, self.x, self.y, self.budgets = attack, models, x, y, budgets
        self.checkpoints, self.seed, self.early_stop, self.eot_samples = checkpoints, seed, early_stop, eot_samples
        task = attack.task
        self.frozen = early_stop and task.success_type and isinstance(attack, GradientAttack)  # the loop stops
        loop = isinstance(attack, GradientAttack)
        self.records = loop and attack.records_outcomes(len(models), early_stop, eot_samples)
        # runs of several budgets may share each pass and start as soon as their samples are ready (``_chain``)
        self.chains = loop and attack.per_sample_eps and attack.shares_passes(eot_samples)
        with torch.inference_mode():
            outs = [model(x) for model in models]
        self.broken_clean = torch.stack([task.success(o, y) for o in outs]).all(0)
        clean = task.outcome(outs[0], y) if self.records else None
        self.closure = _Closure(x, budgets, checkpoints, self.broken_clean, len(x) * len(models), clean)

    def options(self) -> dict:
        """The run options of every probe run."""
        return {"checkpoints": self.checkpoints, "early_stop": self.early_stop, "eot_samples": self.eot_samples,
                **({"record_outcomes": True} if self.records else {})}

    def seen(self, res: AttackResult, rows: Tensor) -> tuple[dict[int, Tensor], dict[int, np.ndarray] | None]:
        """A finished run's fooling iterates per checkpoint, and outcomes where the run recorded them (else checked
        by forwards); its cost counted."""
        if res.fooled_at:
            self.closure.spend(res.grad_evals, res.forwards)
            return res.fooled_at, res.outcomes_at
        checks = len(rows) * len(self.models) * (1 if self.frozen else len(self.checkpoints))
        self.closure.spend(res.grad_evals, res.forwards + checks)
        return fooled_at(self.models, self.attack.task.success, res.checkpoints, self.y[rows], self.frozen), None

    def open(self, rows: Tensor, eps: Tensor, run_seed: int) -> LoopRun:
        """A probe run of ``rows`` for ``tick`` to step (``chains``)."""
        return self.attack.open(self.models, self.x[rows], self.y[rows], seed=run_seed, eps=eps, **self.options())

    def run(self, rows: Tensor, eps: float | Tensor,
            run_seed: int) -> tuple[AttackResult, dict[int, Tensor], dict[int, np.ndarray] | None]:
        """One probe run of ``rows``; stepped by ``tick`` where its passes can be padded to a few batch sizes."""
        if self.chains:
            run = self.open(rows, eps, run_seed)
            while run.step < self.attack.steps:
                self.attack.tick(self.models, [run], max_rows=len(self.x))
            res = run.result
        else:
            res = self.attack.run(self.models, self.x[rows], self.y[rows], seed=run_seed, eps=eps, **self.options())
        return res, *self.seen(res, rows)

    def split(self, groups: list[tuple[int, Tensor]], rows: Tensor, res: AttackResult, fooled: dict[int, Tensor],
              outcomes: dict[int, np.ndarray] | None, needed: Callable[[int], Tensor] | None = None) -> list[Tensor]:
        """Take one per-sample-eps run of the (budget index, rows) groups, concatenated as ``rows``, into the
        closure group by group; per group, which rows the last checkpoint broke."""
        out, at, last = [], 0, max(self.checkpoints)
        for index, part in groups:
            sel = torch.arange(at, at + len(part), device=self.x.device)
            at += len(part)
            spent = {k: int(res.grad_evals_rows_at[k][sel].sum()) for k in self.checkpoints}
            if needed is not None:
                sel = sel[needed(index)[part]]
            picked = None if outcomes is None else {k: v[sel.cpu().numpy()] for k, v in outcomes.items()}
            self.closure.add(Probe(index, rows[sel], {k: v[sel] for k, v in res.checkpoints.items()},
                                   {k: v[sel] for k, v in fooled.items()}, spent, picked))
            out.append(fooled[last][sel])
        return out

    @staticmethod
    def eps_of(groups: list[tuple[int, Tensor]], budgets: list[float]) -> Tensor:
        """The per-sample eps of a run of the concatenated groups."""
        return torch.tensor([budgets[i] for i, r in groups for _ in range(len(r))], dtype=torch.float64)

    def probe(self, groups: list[tuple[int, Tensor]], tag: int,
              needed: Callable[[int], Tensor] | None = None) -> list[Tensor]:
        """Run the (budget index, rows) groups of one round; per group, which rows the last checkpoint broke. With
        ``needed`` (fill-in runs) a group keeps only the rows still needed once the groups below it are taken in:
        run one by one, it is run on those alone (as before batching); batched, the others' cost is still counted."""
        last, closure = max(self.checkpoints), self.closure
        if not self.attack.per_sample_eps:
            out = []
            for index, rows in groups:
                rows = rows if needed is None else needed(index).nonzero().flatten()
                if not len(rows):
                    continue
                res, fooled, outcomes = self.run(rows, self.budgets[index], self.seed + 104729 * tag + index)
                closure.add(Probe(index, rows, res.checkpoints, fooled, res.grad_evals_at, outcomes))
                out.append(fooled[last])
            return out
        rows = torch.cat([r for _, r in groups])
        res, fooled, outcomes = self.run(rows, self.eps_of(groups, self.budgets), self.seed + 104729 * tag)
        return self.split(groups, rows, res, fooled, outcomes, needed)


@dataclass
class _Link:
    """An open run of ``_chain``: the samples it attacks at the budgets of one level, each sample's rows, and which
    samples it already passed on to the next level."""

    run: LoopRun
    level: int
    samples: Tensor
    passed: Tensor


def _chain(prober: _Prober, levels: list[list[int]], minimal: Tensor) -> None:
    """The descending search's levels without waiting for whole rounds: a sample starts its next level as soon as
    all its runs at this one have fooled the source (early stop freezes those rows), in a new run that shares each
    forward+backward pass with the runs still going (``GradientAttack.tick``), so the batches stay fuller and a
    search takes about 40 passes where its rounds took 80 (``make perf``). Each sample runs at the same budgets as
    in the round-by-round search."""
    attack, budgets = prober.attack, prober.budgets
    assert isinstance(attack, GradientAttack)
    empty = torch.empty(0, dtype=torch.long, device=prober.x.device)
    waiting = [(~prober.broken_clean).nonzero().flatten()] + [empty] * (len(levels) - 1)
    tag, links = 0, []
    while True:
        for level, ready in enumerate(waiting):
            if len(ready):  # waiting for more would cost a pass each: a small run only rides along in one
                groups = [(index, ready) for index in levels[level]]
                rows = ready.repeat(len(groups))
                run = prober.open(rows, prober.eps_of(groups, budgets), prober.seed + 104729 * tag)
                links.append(_Link(run, level, ready, torch.zeros(len(ready), dtype=torch.bool, device=ready.device)))
                waiting[level], tag = empty, tag + 1
        if not links:
            return
        attack.tick(prober.models, [link.run for link in links], max_rows=len(prober.x))
        for link in list(links):
            width = len(levels[link.level])
            if link.run.step == attack.steps:
                rows = link.samples.repeat(width)
                fooled, outcomes = prober.seen(link.run.result, rows)
                broken = torch.stack(prober.split([(i, link.samples) for i in levels[link.level]], rows,
                                                  link.run.result, fooled, outcomes))
                alive = broken.cumprod(0).bool()  # broken at this budget and at every larger one of the level
                for index, ok in zip(levels[link.level], alive, strict=True):
                    minimal[link.samples[ok]] = torch.clamp(minimal[link.samples[ok]], max=index)
                ready = alive[-1] & ~link.passed
                links.remove(link)
            else:  # rows frozen by early stop fool the source for good
                ready = link.run.done.view(width, -1).all(0) & ~link.passed
            link.passed |= ready
            if link.level + 1 < len(levels) and bool(ready.any()):
                waiting[link.level + 1] = torch.cat([waiting[link.level + 1], link.samples[ready]])


def binary_search(attack: Attack, models: Sequence[nn.Module], x: Tensor, y: Tensor, budgets: Sequence[float],
                  checkpoints: Sequence[int], seed: int, early_stop: bool = True,
                  eot_samples: int = 1) -> Generated:
    """Binary search per sample over the sorted positive ``budgets``, then a run at every budget above a sample's
    minimal one that the search skipped (early-stopped, so cheap), so that each budget's iteration curve is the
    attack's own there; each round's probes, and the fill-in runs, are one batch (``_Prober``)."""
    budgets = sorted(budgets)
    m, n = len(budgets), len(x)
    prober = _Prober(attack, models, x, y, budgets, checkpoints, seed, early_stop, eot_samples)
    closure, broken_clean = prober.closure, prober.broken_clean
    lo = torch.zeros(n, dtype=torch.long, device=x.device)
    hi = torch.where(broken_clean, -1, m - 1)  # a sample broken clean needs no search
    minimal = torch.where(broken_clean, -1, m)
    for rnd in range(m.bit_length()):
        active = lo <= hi
        mid = (lo + hi) // 2
        groups = [(index, (active & (mid == index)).nonzero().flatten()) for index in sorted(set(mid[active].tolist()))]
        for (index, rows), broken in zip(groups, prober.probe(groups, rnd), strict=True):
            minimal[rows[broken]] = index
            hi[rows[broken]] = index - 1
            lo[rows[~broken]] = index + 1
    first = min(checkpoints)

    def needed(index: int) -> Tensor:
        """The samples a fill-in run at ``budgets[index]`` is for: above their minimal budget, not probed there,
        and not already broken there at the first checkpoint by a smaller probe."""
        return (minimal < index) & ~closure.probed_at[index] & ~closure.broken[budgets[index], first]

    fill = [(index, needed(index).nonzero().flatten()) for index in range(m)]
    fill = [(index, rows) for index, rows in fill if len(rows)]
    if fill:
        prober.probe(fill, m.bit_length(), needed)
    return closure.result(minimal)


def descending_search(attack: Attack, models: Sequence[nn.Module], x: Tensor, y: Tensor, budgets: Sequence[float],
                      checkpoints: Sequence[int], seed: int, early_stop: bool = True,
                      eot_samples: int = 1) -> Generated:
    """From the largest budget down, each sample stopping at its first failed run: every budget at or above a
    sample's minimal one is run (as the binary search's fill-in runs are) and one failed full-steps run is paid per
    sample, where a binary search pays two or more below its middle budget. The upper half of the budgets runs as
    the first round, one batch (an attack with a per-sample eps; a sample broken at none of them pays up to
    m - m // 2 failures there); then one budget per round. Where the attack's runs can share passes the rounds
    overlap (``_chain``)."""
    budgets = sorted(budgets)
    m = len(budgets)
    prober = _Prober(attack, models, x, y, budgets, checkpoints, seed, early_stop, eot_samples)
    minimal = torch.where(prober.broken_clean, -1, m)
    active = ~prober.broken_clean
    head = m // 2 if attack.per_sample_eps else m - 1
    rounds = [list(range(head, m))] + [[i] for i in reversed(range(head))]
    if prober.chains:
        _chain(prober, [list(reversed(r)) for r in rounds], minimal)
        return prober.closure.result(minimal)
    for rnd, indices in enumerate(rounds):
        rows = active.nonzero().flatten()
        if not len(rows):
            break
        groups = [(index, rows) for index in reversed(indices)]
        broken = torch.stack(prober.probe(groups, rnd))  # (budgets of the round, rows)
        alive = broken.cumprod(0).bool()  # broken at this budget and at every larger one of the round
        for (index, _), ok in zip(groups, alive, strict=True):
            minimal[rows[ok]] = index
        active[rows[~alive[-1]]] = False
    return prober.closure.result(minimal)


SEARCHES = {"binary": binary_search, "descending": descending_search}


class _Closure:
    """Images per (eps, step) by the monotone closure: a probe's iterate stands for every budget at or above its
    own, unless a row there already fools the sources; among iterates that do not, the largest budget's stands."""

    def __init__(self, x: Tensor, budgets: list[float], checkpoints: Sequence[int], broken_clean: Tensor,
                 forwards: int, clean: np.ndarray | None = None) -> None:
        points = [(e, k) for e in budgets for k in checkpoints]
        self.budgets, self.checkpoints = budgets, checkpoints
        self.images = {p: x.clone() for p in points}
        self.outcomes = None if clean is None else {p: clean.copy() for p in points}  # each image's, on the source
        self.broken = {p: broken_clean.clone() for p in points}
        self.owner = {p: torch.full((len(x),), -1, dtype=torch.long, device=x.device) for p in points}
        self.probed_at = torch.zeros(len(budgets), len(x), dtype=torch.bool, device=x.device)
        self.cost = dict.fromkeys(points, 0)
        self.grad_evals, self.forwards = 0, forwards

    def spend(self, grad_evals: int, forwards: int) -> None:
        """Count one run's cost (its gradient evaluations and forwards, early-stop checks included)."""
        self.grad_evals += grad_evals
        self.forwards += forwards

    def add(self, probe: Probe) -> None:
        """Take a probe's iterates into every budget at or above its own, and its cost per (eps, step)."""
        if probe.outcomes is None:
            self.outcomes = None  # not recorded for every image
        self.probed_at[probe.index, probe.rows] = True
        for k in self.checkpoints:
            self.cost[self.budgets[probe.index], k] += probe.grad_evals_at[k]
            for e in self.budgets[probe.index:]:
                later = self.owner[e, k][probe.rows] <= probe.index
                take = ~self.broken[e, k][probe.rows] & (probe.fooled[k] | later)
                rows = probe.rows[take]
                self.images[e, k][rows] = probe.checkpoints[k][take]
                if self.outcomes is not None and probe.outcomes is not None:
                    self.outcomes[e, k][rows.cpu().numpy()] = probe.outcomes[k][take.cpu().numpy()]
                self.broken[e, k][rows] = probe.fooled[k][take]
                self.owner[e, k][rows] = probe.index

    def result(self, minimal: Tensor) -> Generated:
        probed = {e: int(self.probed_at[i].sum()) for i, e in enumerate(self.budgets)}
        return Generated(self.images, self.cost, probed, minimal, self.grad_evals, self.forwards,
                         outcomes=self.outcomes)
