"""FMN (Pintor et al. 2021): the fast minimum-norm attack, Linf and L2, on the shared loop through its hooks.

Each step moves along the L2-normalised gradient of the logit margin (cosine-annealed step size, as Foolbox's
reference implementation) and projects onto a per-sample ball of radius eps_k: eps_k shrinks by (1 - gamma) towards
the best adversarial norm while the iterate fools the model, grows by (1 + gamma) after an adversarial was found,
and before one is found jumps to the linearised distance to the boundary; gamma is cosine-annealed to 0.001.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from robustgrid.attacks.base import AttackResult
from robustgrid.attacks.loop import GradientAttack, flat_norm
from robustgrid.attacks.losses import least_classes, margin
from robustgrid.attacks.registry import register_attack
from robustgrid.core import check_choice, check_float
from robustgrid.models.tasks import Task


def cosine(start: float, end: float, step: int, steps: int) -> float:
    """Cosine annealing from ``start`` at step 1 towards ``end`` after ``steps``."""
    return end + (start - end) * (1 + math.cos(math.pi * (step - 1) / steps)) / 2


@register_attack("fmn", tasks=("classification",))
class FMN(GradientAttack):
    """FMN, Linf or L2: the smallest adversarial perturbation by adaptive norm constraints (Pintor et al. 2021).

    ``x_adv`` is the smallest adversarial found if its norm is at most the run's eps, else the iterate within eps
    of the largest margin, and x0 where none fooled the model; ``min_norms`` holds the smallest norm (inf: none).
    A run at eps 0 computes nothing, as every loop attack: its x_adv is x0 and its ``min_norms`` None (not searched).
    """

    name = "fmn"
    minimum_norm = True
    freezes_fooled = False  # a fooled sample keeps shrinking its perturbation
    per_sample_eps = False  # its answer at the run's eps takes one eps; the budget search groups by budget

    def __init__(self, *, gamma: float = 0.05, max_step: float = 1.0, min_step: float | None = None,
                 norm: str = "linf", eps: float = 8 / 255, steps: int = 100,
                 task: str | Task = "classification") -> None:
        super().__init__(norm=norm, eps=eps, steps=steps, random_start=False, task=task)
        check_choice(self.name, "task", self.task.name, ("classification",))
        self.gamma = check_float(self.name, "gamma", gamma, 0.0, 1.0, low_open=True)
        self.max_step = check_float(self.name, "max_step", max_step, 0.0, low_open=True)
        self.min_step = (self.max_step / 100 if min_step is None
                         else check_float(self.name, "min_step", min_step, 0.0, self.max_step))

    def objective(self, outputs: Tensor, y: Tensor, step: int) -> Tensor:
        least_classes(self.name, "margin", outputs, 2)
        return margin(outputs, y)

    def size(self, delta: Tensor) -> Tensor:
        """Per-sample norm of the threat model."""
        return delta.flatten(1).abs().amax(1) if self.norm == "linf" else delta.flatten(1).norm(dim=1)

    def init_state(self, x0: Tensor) -> dict[str, Tensor]:
        n = len(x0)
        inf = torch.full((n,), math.inf, device=x0.device)
        return {"x0": x0, "radius": inf, "best_norm": inf.clone(), "best": x0.clone(), "answer": x0.clone(),
                "found": torch.zeros(n, dtype=torch.bool, device=x0.device), "value": torch.zeros(n, device=x0.device),
                "inside_value": torch.full((n,), -math.inf, device=x0.device), "inside": x0.clone(),
                "worst": self.size(torch.maximum(x0, 1 - x0))}

    def observe(self, step: int, xa: Tensor, grad: Tensor, values: Tensor, hits: Tensor | None,
                state: dict[str, Tensor], idx: Tensor) -> tuple[Tensor, Tensor]:
        """Keep the smallest adversarial iterate and adapt each radius eps_k."""
        delta = xa - state["x0"][idx]
        lp = self.size(delta)
        smaller = hits & (lp <= state["best_norm"][idx])
        state["best_norm"][idx[smaller]], state["best"][idx[smaller]] = lp[smaller], xa[smaller]
        found = state["found"][idx] | hits
        state["found"][idx], state["value"][idx] = found, values
        gamma = cosine(self.gamma, 0.001, step, self.steps)
        dual = grad.flatten(1).norm(p=1 if self.norm == "linf" else 2, dim=1)
        to_boundary = values.abs() / dual.clamp_min(1e-12)
        radius = state["radius"][idx]
        # before a first success the radius grows from the larger of the iterate's norm and the last radius: the
        # [0, 1] box can clip the iterate well inside the ball, and growing from its norm alone then stalls
        reach = torch.maximum(lp, torch.where(radius.isinf(), 0.0, radius)) + to_boundary
        radius = torch.where(hits, torch.minimum(radius * (1 - gamma), state["best_norm"][idx]),
                             torch.where(found, radius * (1 + gamma), reach))
        state["radius"][idx] = torch.minimum(radius, state["worst"][idx])
        return xa, grad

    def advance(self, xa: Tensor, grad: Tensor, x0: Tensor, eps: float, alpha: float, step: int,
                state: dict[str, Tensor], idx: Tensor) -> Tensor:
        """Keep the answer at budget ``eps``; step along the L2-normalised gradient into the eps_k ball."""
        inside = (self.size(xa - x0) <= eps + 1e-6) & (state["value"][idx] > state["inside_value"][idx])
        state["inside"][idx[inside]], state["inside_value"][idx[inside]] = xa[inside], state["value"][idx[inside]]
        within = state["found"][idx] & (state["best_norm"][idx] <= eps + 1e-6)
        answer = torch.where(within.view(-1, 1, 1, 1), state["best"][idx],
                             torch.where(state["found"][idx].view(-1, 1, 1, 1), state["inside"][idx], x0))
        state["answer"][idx] = self.project(answer, x0, eps)
        lr = cosine(self.max_step, self.min_step, step, self.steps)
        radius = state["radius"][idx].view(-1, *([1] * (xa.dim() - 1)))
        return self.project(xa + lr * grad / (flat_norm(grad) + 1e-12), x0, radius)

    def current(self, xa: Tensor, state: dict[str, Tensor]) -> Tensor:
        return state["answer"].clone()

    def finish(self, models: list[nn.Module], xa: Tensor, y: Tensor, x0: Tensor, eps: float,
               state: dict[str, Tensor], result: AttackResult) -> Tensor:
        """The answer at the run's eps, and each sample's smallest adversarial norm (the last step's update is
        never scored, as in the reference)."""
        result.min_norms = torch.where(state["found"], state["best_norm"], math.inf)
        return state["answer"].clone()
