"""The one projected-gradient loop every gradient attack runs (Linf and L2).

Attacks differ only in hooks: ``view`` (what the sources see each step: DI, region remap, Gaussian noise),
``combine`` (how per-source gradients merge), ``direction`` (gradient to step: sign, momentum, L2 normalisation),
and for the step-size free and minimum-norm attacks ``observe`` (objective values after each pass: APGD's step-size
schedule and best point, FMN's radius), ``advance`` (the update itself, with per-sample step sizes and radii),
``current`` and ``finish`` (the answer at a checkpoint and at the end). Projection, random start, early stop,
checkpoints and the gradient-evaluation counter live here once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from robustgrid.attacks.base import Attack, AttackResult, Models, OnCheckpoint, as_models
from robustgrid.core import RobustgridError, check_bool, check_float, check_int
from robustgrid.models.tasks import Task

__all__ = ["AttackResult", "GradientAttack", "flat_norm"]


def _rows(v: float | Tensor, rows: slice | Tensor) -> float | Tensor:
    """A float as is, a per-sample tensor's ``rows``."""
    return v if isinstance(v, float) else v[rows]


def flat_norm(t: Tensor) -> Tensor:
    """Per-sample L2 norm, shaped to broadcast over NCHW."""
    return t.flatten(1).norm(p=2, dim=1).view(-1, *([1] * (t.dim() - 1)))


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
        """The attack's own ``samples`` times the run's EOT draws, per source, image and step."""
        return self.samples * eot_samples

    # ---- the loop ----------------------------------------------------------------------------
    def alpha(self, eps: float | Tensor) -> float | Tensor:
        """The step size for budget ``eps`` (a float, or a float64 tensor giving one per sample)."""
        if self.step_size is not None:
            return self.step_size
        if self.rel_step_size is not None:
            return self.rel_step_size * eps
        return 2.5 * eps / self.steps

    def run(self, models: Models, x: Tensor, y: Tensor, *, seed: int, eps: float | Tensor | None = None,
            checkpoints: Sequence[int] = (), on_checkpoint: OnCheckpoint | None = None, early_stop: bool = False,
            eot_samples: int = 1) -> AttackResult:
        """Run the attack; iterates after each step in ``checkpoints`` are kept (RealSafe curve 2).

        ``eps`` may be a tensor of shape (N,), one budget per sample (when ``per_sample_eps``): each sample then
        runs as it would alone at its float eps (step size, projection, eps 0 untouched), except for the random
        start's draws (see ``start``). Each step takes ``samples * eot_samples`` gradient draws per source; early
        stop applies only to success-type tasks (classification)."""
        models = as_models(models)
        self.check_run(len(models), checkpoints, eot_samples)
        self.task.check_batch(x, y)
        eps = self.eps if eps is None else self.check_eps(eps, x)
        gen = torch.Generator(device=x.device).manual_seed(int(seed))
        x0 = x.detach()
        y = self.labels(models, x0, y)
        result = AttackResult(x_adv=x0.clone())
        spent = torch.zeros(len(x0), dtype=torch.long, device=x0.device)
        if isinstance(eps, float) and eps == 0:
            result.checkpoints = {k: x0.clone() for k in checkpoints}
            result.grad_evals_at = {k: 0 for k in checkpoints}
            result.grad_evals_rows_at = {k: spent.clone() for k in checkpoints}
            return result
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
        use_stop = early_stop and self.task.success_type and self.freezes_fooled
        draws = self.draws_per_step(eot_samples)
        state = self.init_state(x0)
        for step in range(1, self.steps + 1):
            idx = (~done).nonzero().flatten()
            if len(idx):
                # while no sample has been dropped, slices (views) replace index-gathers on this hot path
                rows = slice(None) if len(idx) == len(xa) else idx
                grad, fooled, values = self.gradient(models, xa[rows], y[rows], x0[rows], gen, result, use_stop,
                                                     step, draws)
                spent[idx] += draws * len(models)
                xr = xa[rows]
                if values is not None:
                    xr, grad = self.observe(step, xr, grad, values, fooled, state, idx)
                if use_stop:
                    done[idx[fooled]] = True  # freeze these at the iterate that fooled the model
                    keep = ~fooled
                    if not bool(keep.all()):
                        idx, grad, xr = idx[keep], grad[keep], xr[keep]
                        rows = idx
                if len(idx):
                    xa[rows] = self.advance(xr, grad, x0[rows], _rows(eps, rows), _rows(alpha, rows), step, state,
                                            idx)
            if step == self.steps:
                xa = self.finish(models, xa, y, x0, eps, state, result)
            if step in checkpoints:
                result.grad_evals_rows_at[step] = spent.clone()
            self.record(result, step, xa if step == self.steps else self.current(xa, state), checkpoints,
                        on_checkpoint)
        result.x_adv = xa
        return result

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
        delta = xa - x0
        if self.norm == "linf":
            delta = torch.clamp(delta, -eps, eps) if isinstance(eps, float) else torch.max(torch.min(delta, eps), -eps)
        else:
            norm = flat_norm(delta) if isinstance(eps, float) else flat_norm(delta).clamp_min(1e-12)  # 0/0 at eps 0
            delta = delta * torch.clamp(eps / norm, max=1.0)
        return torch.clamp(x0 + delta, 0, 1).detach()

    def gradient(self, models: list[nn.Module], xa: Tensor, y: Tensor, x0: Tensor, gen: torch.Generator,
                 result: AttackResult, use_stop: bool, step: int = 1,
                 draws: int = 1) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Mean input gradient of the objective over ``draws`` views per source, combined over the sources;
        which samples fool every source (when early stop or ``observe`` needs it, else None); and, only when
        ``observe`` is overridden, the objective values averaged over sources and draws."""
        observes = self.observes
        want_hits = (use_stop or observes) and self.task.success_type
        fooled = torch.ones(len(xa), dtype=torch.bool, device=xa.device)
        check_in_pass = want_hits and not self.transforms_input and draws == 1
        values = torch.zeros(len(xa), device=xa.device) if observes else None
        grads = []
        with torch.enable_grad():
            for model in models:
                g = torch.zeros_like(xa)
                for _ in range(draws):
                    xv = xa.detach().requires_grad_(True)
                    xs, ys = self.view(xv, y, gen)
                    out = model(xs)
                    if check_in_pass:
                        fooled &= self.success(out.detach(), ys)
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
            return self.combine(grads, x0), fooled, values
        return self.combine(grads, x0), (fooled if want_hits else None), values

    @staticmethod
    def record(result: AttackResult, step: int, xa: Tensor, checkpoints: Sequence[int],
               on_checkpoint: OnCheckpoint | None) -> None:
        """Keep the iterate after ``step`` and its cumulative cost if ``step`` is a checkpoint."""
        if step in checkpoints:
            result.checkpoints[step] = xa.clone()
            result.grad_evals_at[step] = result.grad_evals
            if on_checkpoint is not None:
                on_checkpoint(step, result.checkpoints[step])
