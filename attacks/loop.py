"""The one projected-gradient loop every gradient attack runs (Linf and L2).

Attacks differ only in hooks: ``view`` (what the sources see each step: DI, region remap, Gaussian noise),
``combine`` (how per-source gradients merge), ``direction`` (gradient to step: sign, momentum, L2 normalisation),
and for the step-size free and minimum-norm attacks ``observe`` (objective values after each pass: APGD's step-size
schedule and best point, FMN's radius), ``advance`` (the update itself, with per-sample step sizes and radii),
``current`` and ``finish`` (the answer at a checkpoint and at the end), ``tune`` (the gradient the update uses:
VMI's variance). Projection, random start, early stop, checkpoints and the gradient-evaluation counter live here
once. A run is ``open``-ed and stepped by ``tick``, which can step several runs in shared passes (a budget search).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from robustgrid.attacks.base import Attack, AttackResult, Models, OnCheckpoint, as_models, flat_norm, project_ball
from robustgrid.core import RobustgridError, check_bool, check_float, check_int
from robustgrid.models.tasks import Task

__all__ = ["AttackResult", "GradientAttack", "LoopRun", "flat_norm"]


def _rows(v: float | Tensor, rows: slice | Tensor) -> float | Tensor:
    """A float as is, a per-sample tensor's ``rows``."""
    return v if isinstance(v, float) else v[rows]


def pass_size(rows: int, cap: int) -> int:
    """The rows a shared pass of ``rows`` computes: ``cap``, a multiple of ``cap // 16`` (at least 8), or below that
    a power of two, so that a search's passes see about twenty batch sizes instead of one per pass."""
    grid = max(8, cap // 16)
    if rows >= grid:
        return min(cap, -(-rows // grid) * grid) if rows <= cap else rows
    return max(1, 1 << (rows - 1).bit_length())


def _padded(cap: int, *batch: Tensor) -> tuple[Tensor, ...]:
    """Each tensor of one pass's batch with its last row repeated up to ``pass_size`` rows."""
    extra = pass_size(len(batch[0]), cap) - len(batch[0])
    return batch if extra <= 0 else tuple(torch.cat([t, t[-1:].expand(extra, *t.shape[1:])]) for t in batch)


def _chunked(fn: Callable[..., Any], cap: int, *batch: Tensor) -> list:
    """``fn`` on the batch in chunks of at most ``cap`` rows, each padded to ``pass_size``; per chunk, its result
    (a tensor, array or tuple of them, None allowed) without the padding rows."""
    out = []
    for a in range(0, len(batch[0]), cap):
        part = [t[a:a + cap] for t in batch]
        got = fn(*_padded(cap, *part))
        rows = len(part[0])
        out.append(tuple(None if v is None else v[:rows] for v in got) if isinstance(got, tuple) else got[:rows])
    return out


@dataclass
class LoopRun:
    """One run of the shared loop between steps, so that several runs (a budget search's, at other budgets) can
    share each forward+backward pass (``GradientAttack.tick``)."""

    models: list[nn.Module]
    x0: Tensor
    y: Tensor
    eps: float | Tensor
    alpha: float | Tensor
    xa: Tensor
    done: Tensor
    spent: Tensor
    state: dict[str, Tensor]
    result: AttackResult
    gen: torch.Generator
    checkpoints: Sequence[int]
    on_checkpoint: OnCheckpoint | None
    use_stop: bool
    draws: int
    records: bool  # the passes give each checkpoint's outcomes (``result.outcomes_at``, ``result.fooled_at``)
    step: int = 0
    last: np.ndarray | None = None  # per row, the outcome of the newest iterate a pass saw


class GradientAttack(Attack):
    """Projected gradient ascent on a task objective; subclasses override the hooks only.

    ``samples`` is the attack's own number of gradient draws per source per step (SEGA's smoothing draws,
    SegTrans's enhanced samples); a run's ``eot_samples`` multiplies it.
    """

    name = "gradient"
    freezes_fooled: ClassVar[bool] = True  # early stop applies (a minimum-norm attack keeps shrinking instead)
    per_sample_eps: ClassVar[bool] = True  # ``run`` takes an eps tensor of shape (N,): one budget per sample

    def __init__(self, *, norm: str = "linf", eps: float = 8 / 255, steps: int = 10,
                 step_size: float | None = None, rel_step_size: float | None = None,
                 random_start: bool = True, samples: int = 1, task: str | Task = "classification") -> None:
        super().__init__(norm=norm, eps=eps, steps=steps, task=task)
        what = self.name
        self.step_size = None if step_size is None else check_float(what, "step_size", step_size, 0.0, low_open=True)
        self.rel_step_size = (None if rel_step_size is None
                              else check_float(what, "rel_step_size", rel_step_size, 0.0, low_open=True))
        self.random_start = check_bool(what, "random_start", random_start)
        self.samples = check_int(what, "samples", samples, 1)

    # ---- hooks -------------------------------------------------------------------------------
    def view(self, x: Tensor, y: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        """What the sources see this step (identity here); must be differentiable in ``x``."""
        return x, y

    def combine(self, grads: list[Tensor], x0: Tensor) -> Tensor:
        """Merge the per-source gradients (uniform mean here)."""
        return torch.stack(grads).mean(0) if len(grads) > 1 else grads[0]

    def direction(self, grad: Tensor, state: dict[str, Tensor], idx: Tensor) -> Tensor:
        """Turn the gradient into a unit step: sign for Linf, L2-normalised for L2."""
        if self.norm == "linf":
            return grad.sign()
        return grad / (flat_norm(grad) + 1e-10)

    def tune(self, models: list[nn.Module], xa: Tensor, y: Tensor, x0: Tensor, grad: Tensor, eps: float | Tensor,
             gen: torch.Generator, result: AttackResult, state: dict[str, Tensor], idx: Tensor, draws: int,
             step: int) -> tuple[Tensor, int]:
        """The gradient the update of rows ``idx`` at ``step`` uses, from the pass's (itself here; VMI adds the
        variance of its neighbourhood's gradients), and the extra draws per source and row it took (through
        ``gradient``, which counts them in ``result``)."""
        return grad, 0

    tune_draws: int = 0  # at most this many extra draws ``tune`` takes per source, image and step (times EOT draws)

    def init_state(self, x0: Tensor) -> dict[str, Tensor]:
        """Per-run state of the hooks (momentum buffers, step sizes, best points ...), full-batch shaped."""
        return {}

    def observe(self, step: int, xa: Tensor, grad: Tensor, values: Tensor, hits: Tensor | None,
                state: dict[str, Tensor], idx: Tensor) -> tuple[Tensor, Tensor]:
        """After the pass at ``step``: objective ``values`` and success ``hits`` (None if undefined) of the rows
        ``idx`` at iterate ``xa``; returns the iterate and gradient to step from (APGD may reset both)."""
        return xa, grad

    @property
    def observes(self) -> bool:
        """Whether ``observe`` is overridden: only then does the pass collect objective values and hits."""
        return type(self).observe is not GradientAttack.observe

    def advance(self, xa: Tensor, grad: Tensor, x0: Tensor, eps: float | Tensor, alpha: float | Tensor, step: int,
                state: dict[str, Tensor], idx: Tensor) -> Tensor:
        """The next iterate of rows ``idx``: ``alpha`` along ``direction``, projected (APGD, FMN override it);
        ``eps`` and ``alpha`` are floats or per-row tensors shaped (B, 1, 1, 1)."""
        return self.project(xa + alpha * self.direction(grad, state, idx), x0, eps)

    def current(self, xa: Tensor, state: dict[str, Tensor]) -> Tensor:
        """The run's answer so far, kept at checkpoints: the iterate here (APGD: each sample's best point)."""
        return xa

    def finish(self, models: list[nn.Module], xa: Tensor, y: Tensor, x0: Tensor, eps: float,
               state: dict[str, Tensor], result: AttackResult) -> Tensor:
        """The final answer after the last step (the last iterate here; APGD scores it first)."""
        return xa

    def labels(self, models: list[nn.Module], x0: Tensor, y: Tensor) -> Tensor:
        """What ``objective`` compares against (the task's attack labels; APGD-T appends its target classes)."""
        return self.task.attack_labels(models, x0, y)

    def success(self, outputs: Tensor, y: Tensor) -> Tensor | None:
        """Per-sample success on ``outputs`` against the attack labels (the task's rule here)."""
        return self.task.success(outputs, y)

    def objective(self, outputs: Tensor, y: Tensor, step: int) -> Tensor:
        """Per-sample value maximised at ``step`` (1-based): the task's objective here; SegPGD reweights it."""
        return self.task.objective(outputs, y)

    @property
    def transforms_input(self) -> bool:
        """Whether ``view`` can change what the sources see: derived from the hook being overridden.

        When it cannot (and one draw per step is taken), the gradient pass's own outputs decide early stop."""
        return type(self).view is not GradientAttack.view

    def draws_per_step(self, eot_samples: int = 1) -> int:
        """The attack's own ``samples`` (plus ``tune_draws``) times the run's EOT draws, per source, image and step."""
        return (self.samples + self.tune_draws) * eot_samples

    # ---- the loop ----------------------------------------------------------------------------
    def alpha(self, eps: float | Tensor) -> float | Tensor:
        """The step size for budget ``eps`` (a float, or a float64 tensor giving one per sample)."""
        if self.step_size is not None:
            return self.step_size
        if self.rel_step_size is not None:
            return self.rel_step_size * eps
        return 2.5 * eps / self.steps

    def shares_passes(self, eot_samples: int = 1) -> bool:
        """Whether a pass is the same per row whatever else is in the batch (no view, one draw, the task's own
        objective, no observe): only then can several runs share each forward+backward pass (``tick``), and only
        then are the pass's outputs the model's outputs on the iterates."""
        return (not self.transforms_input and self.draws_per_step(eot_samples) == 1 and not self.observes
                and type(self).objective is GradientAttack.objective)

    def records_outcomes(self, sources: int, early_stop: bool, eot_samples: int = 1) -> bool:
        """Whether a run can give every checkpoint's outcome on its one source from its own passes (early stop on a
        success-type task, the iterate the answer: ``current`` and ``finish`` not overridden)."""
        return (sources == 1 and early_stop and self.task.success_type and self.freezes_fooled
                and self.shares_passes(eot_samples) and type(self).current is GradientAttack.current
                and type(self).finish is GradientAttack.finish)

    def run(self, models: Models, x: Tensor, y: Tensor, *, seed: int, eps: float | Tensor | None = None,
            checkpoints: Sequence[int] = (), on_checkpoint: OnCheckpoint | None = None, early_stop: bool = False,
            eot_samples: int = 1, record_outcomes: bool = False) -> AttackResult:
        """Run the attack; iterates after each step in ``checkpoints`` are kept (RealSafe curve 2).

        ``eps`` may be a tensor of shape (N,), one budget per sample (when ``per_sample_eps``): each sample then
        runs as it would alone at its float eps (step size, projection, eps 0 untouched), except for the random
        start's draws (see ``start``). Each step takes ``samples * eot_samples`` gradient draws per source; early
        stop applies only to success-type tasks (classification). ``record_outcomes`` (where
        ``records_outcomes``) keeps each checkpoint's per-sample outcome and success as its passes saw them."""
        run = self.open(models, x, y, seed=seed, eps=eps, checkpoints=checkpoints, on_checkpoint=on_checkpoint,
                        early_stop=early_stop, eot_samples=eot_samples, record_outcomes=record_outcomes)
        while run.step < self.steps:
            self.tick(run.models, [run])
        return run.result

    def open(self, models: Models, x: Tensor, y: Tensor, *, seed: int, eps: float | Tensor | None = None,
             checkpoints: Sequence[int] = (), on_checkpoint: OnCheckpoint | None = None, early_stop: bool = False,
             eot_samples: int = 1, record_outcomes: bool = False) -> LoopRun:
        """A run before its first step (``run``'s arguments); ``tick`` steps it. A float eps 0 is finished at once."""
        models = as_models(models)
        self.check_run(len(models), checkpoints, eot_samples)
        self.task.check_batch(x, y)
        eps = self.eps if eps is None else self.check_eps(eps, x)
        gen = torch.Generator(device=x.device).manual_seed(int(seed))
        x0 = x.detach()
        y = self.labels(models, x0, y)
        result = AttackResult(x_adv=x0.clone())
        spent = torch.zeros(len(x0), dtype=torch.long, device=x0.device)
        use_stop = early_stop and self.task.success_type and self.freezes_fooled
        draws = self.samples * eot_samples  # the pass's; ``draws_per_step`` may count more (restarts, ``tune``)
        if isinstance(eps, float) and eps == 0:
            result.checkpoints = {k: x0.clone() for k in checkpoints}
            result.grad_evals_at = {k: 0 for k in checkpoints}
            result.grad_evals_rows_at = {k: spent.clone() for k in checkpoints}
            return LoopRun(models, x0, y, eps, 0.0, x0.clone(), torch.ones_like(spent, dtype=torch.bool), spent, {},
                           result, gen, checkpoints, on_checkpoint, use_stop, draws, False, step=self.steps)
        if isinstance(eps, float):
            alpha, zero = self.alpha(eps), None
        else:  # alpha = f(eps) in float64 as for a float eps, then both rounded to the images' dtype
            step = self.alpha(eps)
            shape = (-1, *([1] * (x0.dim() - 1)))
            alpha = step if isinstance(step, float) else step.to(x0.dtype).view(shape)
            zero, eps = eps == 0, eps.to(x0.dtype).view(shape)
        xa = self.start(x0, eps, gen)
        done = torch.zeros(len(x0), dtype=torch.bool, device=x0.device)
        if zero is not None:  # a sample at eps 0 is its clean image and costs nothing, as a run at eps 0
            xa[zero] = x0[zero]
            done = zero.clone()
        records = (record_outcomes and self.records_outcomes(len(models), early_stop, eot_samples)
                   and self.steps in checkpoints and not bool(done.any()))  # no pass would see a sample at eps 0
        return LoopRun(models, x0, y, eps, alpha, xa, done, spent, self.init_state(x0), result, gen, checkpoints,
                       on_checkpoint, use_stop, draws, records)

    def tick(self, models: list[nn.Module], runs: Sequence[LoopRun], max_rows: int | None = None) -> None:
        """One step of every unfinished run of ``runs`` (all on ``models``). Where the attack ``shares_passes``,
        the runs' remaining rows share the forward+backward passes, ``max_rows`` rows at most per pass (per image a
        pass of 900 rows costs about a fifth more than one of 256 on a CPU), each run stepping as it would alone.
        A shared pass is padded to one of a few sizes (``pass_size``): a batch size the kernels have not seen costs
        20-50 ms more per pass on a CPU (new primitives), as much as 40-100 images."""
        runs = [r for r in runs if r.step < self.steps]
        live = []
        for r in runs:
            r.step += 1
            idx = (~r.done).nonzero().flatten()
            if len(idx):
                # while no sample has been dropped, slices (views) replace index-gathers on this hot path
                live.append((r, idx, slice(None) if len(idx) == len(r.xa) else idx))
        sizes = [len(idx) for _, idx, _ in live]
        cap = max_rows or sum(sizes) or 1
        if live and (len(live) > 1 or max_rows is not None) and self.shares_passes() \
                and all(r.draws == 1 and r.use_stop == live[0][0].use_stop for r, _, _ in live):
            grad, fooled, values, outs = self._shared_pass(models, live, cap)
            at = 0
            for (r, idx, rows), size in zip(live, sizes, strict=True):
                part = slice(at, at + size)
                at += size
                r.result.grad_evals += size * len(models)
                self._after_pass(r, idx, rows, grad[part], None if fooled is None else fooled[part],
                                 None if values is None else values[part], None if outs is None else outs[part])
        else:
            for r, idx, rows in live:
                grad, fooled, values, outs = self.gradient(models, r.xa[rows], r.y[rows], r.x0[rows], r.gen,
                                                           r.result, r.use_stop, r.step, r.draws, r.records)
                self._after_pass(r, idx, rows, grad, fooled, values, outs)
        self._see_last([r for r in runs if r.records and r.step == self.steps], max_rows)
        for r in runs:
            self._end_step(r)

    def _shared_pass(self, models: list[nn.Module], live: list[tuple[LoopRun, Tensor, slice | Tensor]],
                     cap: int) -> tuple[Tensor, Tensor | None, Tensor | None, np.ndarray | None]:
        """``gradient`` of the live rows of several runs, concatenated, in padded chunks of at most ``cap`` rows."""
        first, records = live[0][0], any(r.records for r, _, _ in live)
        xs, ys, x0s = (torch.cat([getattr(r, name)[rows] for r, _, rows in live]) for name in ("xa", "y", "x0"))
        parts = _chunked(lambda xc, yc, x0c: self.gradient(models, xc, yc, x0c, first.gen, AttackResult(x_adv=xc[:0]),
                                                           first.use_stop, first.step, 1, records), cap, xs, ys, x0s)
        return tuple(None if got[0] is None else (np.concatenate(got) if isinstance(got[0], np.ndarray)
                                                   else torch.cat(got)) for got in zip(*parts, strict=True))

    def _after_pass(self, r: LoopRun, idx: Tensor, rows: slice | Tensor, grad: Tensor, fooled: Tensor | None,
                    values: Tensor | None, outs: np.ndarray | None) -> None:
        """The rest of a step once its pass is done: observe, early stop, the update."""
        r.spent[idx] += r.draws * len(r.models)
        xr = r.xa[rows]
        if outs is not None:
            if r.last is None:
                r.last = np.empty((len(r.xa), *outs.shape[1:]), dtype=outs.dtype)
            r.last[idx.cpu().numpy()] = outs
        if values is not None:
            xr, grad = self.observe(r.step, xr, grad, values, fooled, r.state, idx)
        if r.use_stop:
            r.done[idx[fooled]] = True  # freeze these at the iterate that fooled the model
            keep = ~fooled
            if not bool(keep.all()):
                idx, grad, xr = idx[keep], grad[keep], xr[keep]
                rows = idx
        if len(idx):
            if type(self).tune is not GradientAttack.tune:
                grad, extra = self.tune(r.models, xr, r.y[rows], r.x0[rows], grad, _rows(r.eps, rows), r.gen,
                                        r.result, r.state, idx, r.draws, r.step)
                r.spent[idx] += extra * len(r.models)
            r.xa[rows] = self.advance(xr, grad, r.x0[rows], _rows(r.eps, rows), _rows(r.alpha, rows), r.step,
                                      r.state, idx)

    def _end_step(self, r: LoopRun) -> None:
        """After every run's pass: the previous iterate's outcomes (seen by this pass), the final answer, the
        checkpoint."""
        if r.records and r.step - 1 in r.checkpoints:
            r.result.outcomes_at[r.step - 1] = r.last.copy()
            r.result.fooled_at[r.step - 1] = r.done.clone()
        if r.step == self.steps:
            r.xa = self.finish(r.models, r.xa, r.y, r.x0, r.eps, r.state, r.result)
        if r.step in r.checkpoints:
            r.result.grad_evals_rows_at[r.step] = r.spent.clone()
        self.record(r.result, r.step, r.xa if r.step == self.steps else self.current(r.xa, r.state), r.checkpoints,
                    r.on_checkpoint)
        if r.step == self.steps:
            r.result.x_adv = r.xa

    def _see_last(self, runs: list[LoopRun], max_rows: int | None = None) -> None:
        """The final iterates' outcomes of ``runs`` (recording, at their last step): one forward of the rows no pass
        saw fooling (the others are frozen), shared by the runs and padded as a shared pass is under ``max_rows``."""
        rests = [(~r.done).nonzero().flatten() for r in runs]
        xs = torch.cat([r.xa[rest] for r, rest in zip(runs, rests, strict=True)]) if runs else None
        if xs is not None and len(xs):
            with torch.no_grad():
                outs = torch.cat(_chunked(runs[0].models[0], max_rows or len(xs), xs))
        at = 0
        for r, rest in zip(runs, rests, strict=True):
            fooled = r.done.clone()
            if len(rest):
                out = outs[at:at + len(rest)]
                at += len(rest)
                r.result.forwards += len(rest)
                r.last[rest.cpu().numpy()] = self.task.outcome(out, r.y[rest])
                fooled[rest] = self.success(out, r.y[rest])
            r.result.outcomes_at[r.step] = r.last.copy()
            r.result.fooled_at[r.step] = fooled

    def check_eps(self, eps: float | Tensor, x: Tensor) -> float | Tensor:
        """A run's eps: a float >= 0, or (``per_sample_eps``) a finite tensor >= 0 of shape (N,), kept float64."""
        if not isinstance(eps, Tensor):
            return check_float(self.name, "eps", eps, 0.0)
        if not self.per_sample_eps:
            raise RobustgridError(f"{self.name}: eps must be a float (this attack has no per-sample eps), "
                                  f"got a tensor of shape {tuple(eps.shape)}")
        if eps.shape != (len(x),) or eps.is_complex() or eps.dtype == torch.bool:
            raise RobustgridError(f"{self.name}: a per-sample eps must be a real tensor of shape ({len(x)},), "
                                  f"got {eps.dtype} of shape {tuple(eps.shape)}")
        eps = eps.detach().to(device=x.device, dtype=torch.float64)
        bad = ~torch.isfinite(eps) | (eps < 0)
        if bool(bad.any()):
            raise RobustgridError(f"{self.name}: a per-sample eps must be finite and >= 0, "
                                  f"got {float(eps[bad][0]):g} at sample {int(bad.nonzero()[0])}")
        return eps

    def start(self, x0: Tensor, eps: float | Tensor, gen: torch.Generator) -> Tensor:
        """Random start in the ball (same draws as torchattacks for the same seed), or x0.

        A per-sample eps (shaped (N, 1, 1, 1)) draws Linf noise as uniform(-1, 1) times each sample's eps, so its
        start is not bit-equal to a float run's uniform(-eps, eps); the L2 draws are the float run's."""
        if not self.random_start:
            return x0.clone()
        if self.norm == "linf":
            noise = (torch.empty_like(x0).uniform_(-eps, eps, generator=gen) if isinstance(eps, float)
                     else torch.empty_like(x0).uniform_(-1, 1, generator=gen) * eps)
        else:
            delta = torch.empty_like(x0).normal_(generator=gen)
            r = torch.zeros(len(x0), 1, 1, 1, device=x0.device).uniform_(0, 1, generator=gen)
            noise = delta * r / flat_norm(delta) * eps
        return torch.clamp(x0 + noise, 0, 1)

    def project(self, xa: Tensor, x0: Tensor, eps: float | Tensor) -> Tensor:
        """Back into the eps-ball around x0 and into [0, 1]; ``eps`` may be per sample, shaped (B, 1, 1, 1)."""
        return project_ball(self.norm, xa, x0, eps)

    def gradient(self, models: list[nn.Module], xa: Tensor, y: Tensor, x0: Tensor, gen: torch.Generator,
                 result: AttackResult, use_stop: bool, step: int = 1, draws: int = 1,
                 outcomes: bool = False) -> tuple[Tensor, Tensor | None, Tensor | None, np.ndarray | None]:
        """Mean input gradient of the objective over ``draws`` views per source, combined over the sources;
        which samples fool every source (when early stop or ``observe`` needs it, else None); only when
        ``observe`` is overridden, the objective values averaged over sources and draws; with ``outcomes`` (one
        source, no view), the task's outcome of each row as this pass saw it."""
        observes = self.observes
        want_hits = (use_stop or observes) and self.task.success_type
        fooled = torch.ones(len(xa), dtype=torch.bool, device=xa.device)
        check_in_pass = want_hits and not self.transforms_input and draws == 1
        values = torch.zeros(len(xa), device=xa.device) if observes else None
        grads, seen = [], None
        with torch.enable_grad():
            for model in models:
                g = torch.zeros_like(xa)
                for _ in range(draws):
                    xv = xa.detach().requires_grad_(True)
                    xs, ys = self.view(xv, y, gen)
                    out = model(xs)
                    if check_in_pass:
                        fooled &= self.success(out.detach(), ys)
                    if outcomes:
                        seen = self.task.outcome(out.detach(), ys)
                    obj = self.objective(out, ys, step)
                    g += torch.autograd.grad(obj.sum(), xv)[0]
                    result.grad_evals += len(xa)
                    if values is not None:
                        values += obj.detach() / (draws * len(models))
                grads.append(g / draws)
        if want_hits and not check_in_pass:
            with torch.no_grad():
                for model in models:
                    fooled &= self.success(model(xa), y)
                    result.forwards += len(xa)
        if use_stop:
            return self.combine(grads, x0), fooled, values, seen
        return self.combine(grads, x0), (fooled if want_hits else None), values, seen

    @staticmethod
    def record(result: AttackResult, step: int, xa: Tensor, checkpoints: Sequence[int],
               on_checkpoint: OnCheckpoint | None) -> None:
        """Keep the iterate after ``step`` and its cumulative cost if ``step`` is a checkpoint."""
        if step in checkpoints:
            result.checkpoints[step] = xa.clone()
            result.grad_evals_at[step] = result.grad_evals
            if on_checkpoint is not None:
                on_checkpoint(step, result.checkpoints[step])
