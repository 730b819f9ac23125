"""The one projected-gradient loop every gradient attack runs (Linf and L2).

Attacks differ only in three hooks: ``view`` (what the sources see each step: DI, region remap,
Gaussian noise), ``combine`` (how per-source gradients merge) and ``direction`` (gradient to step:
sign, momentum, L2 normalisation). Projection, random start, early stop, checkpoints and the
gradient-evaluation counter live here once.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from robustgrid.attacks.base import Attack, AttackResult, Models, OnCheckpoint, as_models
from robustgrid.core import check_bool, check_float, check_int
from robustgrid.models.tasks import Task

__all__ = ["AttackResult", "GradientAttack", "flat_norm"]


def flat_norm(t: Tensor) -> Tensor:
    """Per-sample L2 norm, shaped to broadcast over NCHW."""
    return t.flatten(1).norm(p=2, dim=1).view(-1, *([1] * (t.dim() - 1)))


class GradientAttack(Attack):
    """Projected gradient ascent on a task objective; subclasses override the hooks only.

    ``samples`` is the attack's own number of gradient draws per source per step (SEGA's smoothing draws,
    SegTrans's enhanced samples); a run's ``eot_samples`` multiplies it.
    """

    name = "gradient"

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
        """Per-run state of the direction hook (momentum buffers ...), full-batch shaped."""
        return {}

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
    def alpha(self, eps: float) -> float:
        if self.step_size is not None:
            return self.step_size
        if self.rel_step_size is not None:
            return self.rel_step_size * eps
        return 2.5 * eps / self.steps

    def run(self, models: Models, x: Tensor, y: Tensor, *, seed: int, eps: float | None = None,
            checkpoints: Sequence[int] = (), on_checkpoint: OnCheckpoint | None = None, early_stop: bool = False,
            eot_samples: int = 1) -> AttackResult:
        """Run the attack; iterates after each step in ``checkpoints`` are kept (RealSafe curve 2).

        Each step takes ``samples * eot_samples`` gradient draws per source; early stop applies only to
        success-type tasks (classification)."""
        models = as_models(models)
        self.check_run(len(models), checkpoints, eot_samples)
        self.task.check_batch(x, y)
        eps = self.eps if eps is None else check_float(self.name, "eps", eps, 0.0)
        gen = torch.Generator(device=x.device).manual_seed(int(seed))
        x0 = x.detach()
        y = self.task.attack_labels(models, x0, y)
        result = AttackResult(x_adv=x0.clone())
        if eps == 0:
            result.checkpoints = {k: x0.clone() for k in checkpoints}
            result.grad_evals_at = {k: 0 for k in checkpoints}
            return result
        alpha = self.alpha(eps)
        xa = self.start(x0, eps, gen)
        done = torch.zeros(len(x0), dtype=torch.bool, device=x0.device)
        use_stop = early_stop and self.task.success_type
        draws = self.draws_per_step(eot_samples)
        state = self.init_state(x0)
        for step in range(1, self.steps + 1):
            idx = (~done).nonzero().flatten()
            if len(idx) == 0:
                self.record(result, step, xa, checkpoints, on_checkpoint)
                continue
            # while no sample has been dropped, slices (views) replace index-gathers on this hot path
            rows = slice(None) if len(idx) == len(xa) else idx
            grad, fooled = self.gradient(models, xa[rows], y[rows], x0[rows], gen, result, use_stop, step, draws)
            if use_stop:
                done[idx[fooled]] = True  # freeze these at the iterate that fooled the model
                keep = ~fooled
                if not bool(keep.all()):
                    idx, grad = idx[keep], grad[keep]
                    rows = idx
            if len(idx):
                step_dir = self.direction(grad, state, idx)
                xa[rows] = self.project(xa[rows] + alpha * step_dir, x0[rows], eps)
            self.record(result, step, xa, checkpoints, on_checkpoint)
        result.x_adv = xa
        return result

    def start(self, x0: Tensor, eps: float, gen: torch.Generator) -> Tensor:
        """Random start in the ball (same draws as torchattacks for the same seed), or x0."""
        if not self.random_start:
            return x0.clone()
        if self.norm == "linf":
            noise = torch.empty_like(x0).uniform_(-eps, eps, generator=gen)
        else:
            delta = torch.empty_like(x0).normal_(generator=gen)
            r = torch.zeros(len(x0), 1, 1, 1, device=x0.device).uniform_(0, 1, generator=gen)
            noise = delta * r / flat_norm(delta) * eps
        return torch.clamp(x0 + noise, 0, 1)

    def project(self, xa: Tensor, x0: Tensor, eps: float) -> Tensor:
        """Back into the eps-ball around x0 and into [0, 1]."""
        delta = xa - x0
        if self.norm == "linf":
            delta = torch.clamp(delta, -eps, eps)
        else:
            delta = delta * torch.clamp(eps / flat_norm(delta), max=1.0)
        return torch.clamp(x0 + delta, 0, 1).detach()

    def gradient(self, models: list[nn.Module], xa: Tensor, y: Tensor, x0: Tensor, gen: torch.Generator,
                 result: AttackResult, use_stop: bool, step: int = 1, draws: int = 1) -> tuple[Tensor, Tensor]:
        """Mean input gradient of the objective over ``draws`` views per source, combined over the sources,
        and which samples already fool every source."""
        fooled = torch.ones(len(xa), dtype=torch.bool, device=xa.device)
        check_in_pass = use_stop and not self.transforms_input and draws == 1
        grads = []
        with torch.enable_grad():
            for model in models:
                g = torch.zeros_like(xa)
                for _ in range(draws):
                    xv = xa.detach().requires_grad_(True)
                    xs, ys = self.view(xv, y, gen)
                    out = model(xs)
                    if check_in_pass:
                        fooled &= self.task.success(out.detach(), ys)
                    g += torch.autograd.grad(self.objective(out, ys, step).sum(), xv)[0]
                    result.grad_evals += len(xa)
                grads.append(g / draws)
        if use_stop and not check_in_pass:
            with torch.no_grad():
                for model in models:
                    fooled &= self.task.success(model(xa), y)
                    result.forwards += len(xa)
        return self.combine(grads, x0), (fooled if use_stop else torch.zeros_like(fooled))

    @staticmethod
    def record(result: AttackResult, step: int, xa: Tensor, checkpoints: Sequence[int],
               on_checkpoint: OnCheckpoint | None) -> None:
        """Keep the iterate after ``step`` and its cumulative cost if ``step`` is a checkpoint."""
        if step in checkpoints:
            result.checkpoints[step] = xa.clone()
            result.grad_evals_at[step] = result.grad_evals
            if on_checkpoint is not None:
                on_checkpoint(step, result.checkpoints[step])
