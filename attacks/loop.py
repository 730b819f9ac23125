"""The one projected-gradient loop every gradient attack runs (Linf and L2).

Attacks differ only in three hooks: ``view`` (what the sources see each step: DI, region remap,
Gaussian noise), ``combine`` (how per-source gradients merge) and ``direction`` (gradient to step:
sign, momentum, L2 normalisation). Projection, random start, early stop, checkpoints and the
gradient-evaluation counter live here once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from robustgrid.models.tasks import Task, build_task
from torch import Tensor, nn

from robustgrid.core import RobustgridError, check_bool, check_choice, check_float, check_int

NORMS = ("linf", "l2")


@dataclass
class AttackResult:
    """Adversarial images plus the iterates at requested checkpoints and the cost paid."""

    x_adv: Tensor
    checkpoints: dict[int, Tensor] = field(default_factory=dict)
    grad_evals: int = 0   # forward+backward passes, summed over images and sources
    forwards: int = 0     # extra gradient-free forward passes (early-stop checks under a view)
    grad_evals_at: dict[int, int] = field(default_factory=dict)  # cumulative cost at each checkpoint


def flat_norm(t: Tensor) -> Tensor:
    """Per-sample L2 norm, shaped to broadcast over NCHW."""
    return t.flatten(1).norm(p=2, dim=1).view(-1, *([1] * (t.dim() - 1)))


class GradientAttack:
    """Projected gradient ascent on a task objective; subclasses override the hooks only."""

    name = "gradient"

    def __init__(self, *, norm: str = "linf", eps: float = 8 / 255, steps: int = 10,
                 step_size: float | None = None, rel_step_size: float | None = None,
                 random_start: bool = True, early_stop: bool = False, samples: int = 1,
                 task: str | Task = "classification") -> None:
        what = self.name
        self.norm = check_choice(what, "norm", norm, NORMS)
        self.eps, self.steps = check_float(what, "eps", eps, 0.0), check_int(what, "steps", steps, 1)
        self.step_size = None if step_size is None else check_float(what, "step_size", step_size, 0.0, low_open=True)
        self.rel_step_size = (None if rel_step_size is None
                              else check_float(what, "rel_step_size", rel_step_size, 0.0, low_open=True))
        self.random_start = check_bool(what, "random_start", random_start)
        self.early_stop = check_bool(what, "early_stop", early_stop)
        self.samples = check_int(what, "samples", samples, 1)
        self.task = build_task(task) if isinstance(task, str) else task

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

    trivial_view = True  # subclasses that override ``view`` set this False

    # ---- the loop ----------------------------------------------------------------------------
    def alpha(self, eps: float) -> float:
        if self.step_size is not None:
            return self.step_size
        if self.rel_step_size is not None:
            return self.rel_step_size * eps
        return 2.5 * eps / self.steps

    def __call__(self, models: nn.Module | Sequence[nn.Module], x: Tensor, y: Tensor, *, seed: int = 0) -> Tensor:
        """Adversarial images for ``x`` against ``models`` (one target or an ensemble of sources)."""
        return self.run(models, x, y, seed=seed).x_adv

    def run(self, models: nn.Module | Sequence[nn.Module], x: Tensor, y: Tensor, *, seed: int = 0,
            eps: float | None = None, checkpoints: Sequence[int] = (),
            on_checkpoint: Callable[[int, Tensor], Any] | None = None) -> AttackResult:
        """Run the attack; iterates after each step in ``checkpoints`` are kept (RealSafe curve 2)."""
        models = [models] if isinstance(models, nn.Module) else list(models)
        if not models:
            raise RobustgridError("an attack needs at least one source model")
        self.task.check_batch(x, y)
        eps = self.eps if eps is None else check_float(self.name, "eps", eps, 0.0)
        bad = [k for k in checkpoints if not 1 <= k <= self.steps]
        if bad:
            raise RobustgridError(f"checkpoints must lie in 1..{self.steps} (steps), got {bad}")
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
        use_stop = self.early_stop and self.task.success_type
        state = self.init_state(x0)
        for step in range(1, self.steps + 1):
            idx = (~done).nonzero().flatten()
            if len(idx) == 0:
                self.record(result, step, xa, checkpoints, on_checkpoint)
                continue
            # while no sample has been dropped, slices (views) replace index-gathers on this hot path
            rows = slice(None) if len(idx) == len(xa) else idx
            grad, fooled = self.gradient(models, xa[rows], y[rows], x0[rows], gen, result, use_stop, step)
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
                 result: AttackResult, use_stop: bool, step: int = 1) -> tuple[Tensor, Tensor]:
        """Combined input gradient of the objective, and which samples already fool every source."""
        fooled = torch.ones(len(xa), dtype=torch.bool, device=xa.device)
        check_in_pass = use_stop and self.trivial_view and self.samples == 1
        grads = []
        with torch.enable_grad():
            for model in models:
                g = torch.zeros_like(xa)
                for _ in range(self.samples):
                    xv = xa.detach().requires_grad_(True)
                    xs, ys = self.view(xv, y, gen)
                    out = model(xs)
                    if check_in_pass:
                        fooled &= self.task.success(out.detach(), ys)
                    g += torch.autograd.grad(self.objective(out, ys, step).sum(), xv)[0]
                    result.grad_evals += len(xa)
                grads.append(g / self.samples)
        if use_stop and not check_in_pass:
            with torch.no_grad():
                for model in models:
                    fooled &= self.task.success(model(xa), y)
                    result.forwards += len(xa)
        return self.combine(grads, x0), (fooled if use_stop else torch.zeros_like(fooled))

    @staticmethod
    def record(result: AttackResult, step: int, xa: Tensor, checkpoints: Sequence[int],
               on_checkpoint: Callable[[int, Tensor], Any] | None) -> None:
        if step in checkpoints:
            result.checkpoints[step] = xa.clone()
            result.grad_evals_at[step] = result.grad_evals
            if on_checkpoint is not None:
                on_checkpoint(step, result.checkpoints[step])
