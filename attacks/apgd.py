"""APGD (Croce & Hein 2020): step-size free PGD with momentum, on the shared loop through its hooks.

The step size starts at 2 eps and halves at the checkpoint schedule (p_0 = 0, p_1 = 0.22, p_{j+1} = p_j +
max(p_j - p_{j-1} - 0.03, 0.06) of the iterations) where fewer than rho = 0.75 of the last steps raised the
objective or the best value did not move since the last unreduced checkpoint; a halved sample restarts from its best
point. A run answers each sample's first fooling point, else its best by objective; restarts (``passes``) attack
only the samples still robust.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from robustgrid.attacks.base import AttackResult, Models, OnCheckpoint
from robustgrid.attacks.loop import GradientAttack
from robustgrid.attacks.losses import LOSSES, least_classes, per_sample
from robustgrid.attacks.passes import run_passes
from robustgrid.attacks.registry import register_attack
from robustgrid.core import RobustgridError, check_choice, check_int
from robustgrid.models.tasks import Task

RHO, MOMENTUM = 0.75, 0.75
TASK_LOSSES = {"classification": ("ce", "dlr", "margin", "task"), "segmentation": ("task", "ce", "dlr", "margin")}


def halving_schedule(steps: int) -> dict[int, int]:
    """Iteration -> window length of each checkpoint: the paper's p_j in whole iterations (as torchattacks)."""
    k, least, shrink = max(int(0.22 * steps), 1), max(int(0.06 * steps), 1), max(int(0.03 * steps), 1)
    out, at = {}, 0
    while at + k <= steps:
        at += k
        out[at] = k
        k = max(k - shrink, least)
    return out


@register_attack("apgd")
class APGD(GradientAttack):
    """APGD, Linf or L2: step-size free, momentum 0.75, losses ce, dlr, margin or the task objective (Croce & Hein)."""

    name = "apgd"
    single = False  # one pass of the loop (set on the per-pass copies that ``run_passes`` makes)
    per_sample_eps = False  # restarts and the step-size schedule take one eps; the budget search groups by budget

    def __init__(self, *, loss: str | None = None, restarts: int = 1, norm: str = "linf", eps: float = 8 / 255,
                 steps: int = 100, task: str | Task = "classification") -> None:
        super().__init__(norm=norm, eps=eps, steps=steps, task=task)
        choices = TASK_LOSSES.get(self.task.name, ("task",))
        self.loss = check_choice(self.name, "loss", choices[0] if loss is None else loss, choices)
        self.restarts = check_int(self.name, "restarts", restarts, 1)
        self.schedule = halving_schedule(self.steps)

    def passes(self) -> list[dict[str, int]]:
        """Settings of each pass (a restart; APGD-T adds a target rank)."""
        return [{"restart": r} for r in range(self.restarts)]

    def pass_copy(self, setting: dict[str, int], clean: list[Tensor], idx: Tensor) -> APGD:
        """A one-pass copy of this attack for the samples ``idx`` (``clean``: the sources' clean outputs)."""
        sub = copy.copy(self)
        sub.single = True
        return sub

    def check_run(self, sources: int = 1, checkpoints: Sequence[int] = (), eot_samples: int = 1) -> None:
        """Checkpoints below ``steps`` only with a single pass: restarts have no common iterates."""
        super().check_run(sources, checkpoints, eot_samples)
        early = sorted({k for k in checkpoints if k != self.steps})
        passes = len(self.passes())
        if early and passes > 1:
            raise RobustgridError(f"{self.name}: checkpoints {early} below steps ({self.steps}) need a single pass, "
                                  f"got {passes} (restarts x target classes); keep only steps")

    def run(self, models: Models, x: Tensor, y: Tensor, *, seed: int, eps: float | None = None,
            checkpoints: Sequence[int] = (), on_checkpoint: OnCheckpoint | None = None, early_stop: bool = False,
            eot_samples: int = 1) -> AttackResult:
        """One pass of the loop, or the restarts on the samples still robust (see ``run_passes``)."""
        if isinstance(eps, Tensor):
            self.check_eps(eps, x)  # raises: restarts and the step-size schedule take one eps
        if self.single:
            return super().run(models, x, y, seed=seed, eps=eps, checkpoints=checkpoints,
                               on_checkpoint=on_checkpoint, early_stop=early_stop, eot_samples=eot_samples)
        return run_passes(self, models, x, y, seed=seed, eps=eps, checkpoints=checkpoints,
                          on_checkpoint=on_checkpoint, early_stop=early_stop, eot_samples=eot_samples)

    # ---- hooks ---------------------------------------------------------------------------------
    def objective(self, outputs: Tensor, y: Tensor, step: int) -> Tensor:
        if self.loss == "task":
            return self.task.objective(outputs, y)
        fn, need = LOSSES[self.loss]
        least_classes(self.name, self.loss, outputs, need)
        return per_sample(fn, outputs, y)

    def start(self, x0: Tensor, eps: float, gen: torch.Generator) -> Tensor:
        """A random point on the ball's surface (Linf: t / max|t| of uniform t; L2: a normal draw normalised)."""
        if self.norm == "linf":
            t = torch.empty_like(x0).uniform_(-1, 1, generator=gen)
            t = t / t.flatten(1).abs().amax(1).view(-1, 1, 1, 1)
        else:
            t = torch.empty_like(x0).normal_(generator=gen)
            t = t / (t.flatten(1).norm(dim=1).view(-1, 1, 1, 1) + 1e-12)
        return torch.clamp(x0 + eps * t, 0, 1)

    def init_state(self, x0: Tensor) -> dict[str, Tensor]:
        n = len(x0)
        inf = torch.full((n,), float("-inf"), device=x0.device)
        flags = torch.zeros(n, dtype=torch.bool, device=x0.device)
        return {"scale": torch.ones(n, device=x0.device), "prev": x0.clone(), "best": x0.clone(),
                "grad_best": torch.zeros_like(x0), "best_val": inf, "last_best": inf.clone(), "adv": x0.clone(),
                "hit": flags, "reduced": ~flags, "hist": torch.zeros(self.steps + 1, n, device=x0.device)}

    def keep_best(self, xa: Tensor, values: Tensor, hits: Tensor | None, state: dict[str, Tensor],
                  idx: Tensor, grad: Tensor | None = None) -> None:
        """Each sample's best point by objective (and its gradient) and its first fooling point."""
        better = values > state["best_val"][idx]
        rows = idx[better]
        state["best"][rows], state["best_val"][rows] = xa[better], values[better]
        if grad is not None:
            state["grad_best"][rows] = grad[better]
        if hits is not None:
            new = hits & ~state["hit"][idx]
            state["adv"][idx[new]], state["hit"][idx[new]] = xa[new], True

    def observe(self, step: int, xa: Tensor, grad: Tensor, values: Tensor, hits: Tensor | None,
                state: dict[str, Tensor], idx: Tensor) -> tuple[Tensor, Tensor]:
        """Track the best point; at a checkpoint halve the step where progress stalled and restart from the best."""
        i = step - 1  # the pass at step s scores iterate x_{s-1}
        state["hist"][i, idx] = values
        self.keep_best(xa, values, hits, state, idx, grad)
        window = self.schedule.get(i)
        if window is None:
            return xa, grad
        h = state["hist"][i - window:i + 1, idx]
        stalled = (h[1:] > h[:-1]).sum(0) <= window * RHO
        stale = ~state["reduced"][idx] & (state["last_best"][idx] >= state["best_val"][idx])
        reduce = stalled | stale
        state["reduced"][idx], state["last_best"][idx] = reduce, state["best_val"][idx]
        if bool(reduce.any()):
            state["scale"][idx[reduce]] /= 2
            xa, grad = xa.clone(), grad.clone()
            xa[reduce], grad[reduce] = state["best"][idx[reduce]], state["grad_best"][idx[reduce]]
        return xa, grad

    def advance(self, xa: Tensor, grad: Tensor, x0: Tensor, eps: float, alpha: float, step: int,
                state: dict[str, Tensor], idx: Tensor) -> Tensor:
        """z = P(x + eta dir), then x' = P(x + a (z - x) + (1 - a)(x - x_prev)), a = 0.75 after the first step."""
        eta = (2 * eps * state["scale"][idx]).view(-1, *([1] * (xa.dim() - 1)))
        z = self.project(xa + eta * self.direction(grad, state, idx), x0, eps)
        a = MOMENTUM if step > 1 else 1.0
        nxt = self.project(xa + a * (z - xa) + (1 - a) * (xa - state["prev"][idx]), x0, eps)
        state["prev"][idx] = xa
        return nxt

    def current(self, xa: Tensor, state: dict[str, Tensor]) -> Tensor:
        return torch.where(state["hit"].view(-1, *([1] * (xa.dim() - 1))), state["adv"], state["best"])

    def finish(self, models: list[nn.Module], xa: Tensor, y: Tensor, x0: Tensor, eps: float,
               state: dict[str, Tensor], result: AttackResult) -> Tensor:
        """Score the last iterate (gradient-free forwards, counted) of the samples not yet fooled, then answer."""
        idx = (~state["hit"]).nonzero().flatten()
        if len(idx):
            with torch.no_grad():
                outs = [m(xa[idx]) for m in models]
            result.forwards += len(idx) * len(models)
            values = torch.stack([self.objective(o, y[idx], self.steps) for o in outs]).mean(0)
            hits = None
            if self.task.success_type:
                hits = torch.stack([self.success(o, y[idx]) for o in outs]).all(0)
            self.keep_best(xa[idx], values, hits, state, idx)
        return self.current(xa, state)
