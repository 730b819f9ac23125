"""VMI-FGSM (Wang and He, CVPR 2021): MI-FGSM whose gradient is tuned by the previous step's gradient variance,
the mean gradient over ``neighbours`` uniform draws within ``beta`` * eps of the iterate minus the gradient there."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from robustgrid.attacks.base import AttackResult
from robustgrid.attacks.mifgsm import MIFGSM
from robustgrid.attacks.registry import register_attack
from robustgrid.core import check_float, check_int


@register_attack("vmifgsm")
class VMIFGSM(MIFGSM):
    """Variance-tuned MI-FGSM (Wang and He 2021); N = ``neighbours`` (paper: 20) within ``beta`` eps (paper: 1.5).

    1 + N gradients a step, 1 at the last (nothing uses its variance; torchattacks pays N more there)."""

    name = "vmifgsm"

    def __init__(self, *, neighbours: int = 20, beta: float = 1.5, **params: Any) -> None:
        super().__init__(**params)
        self.neighbours = check_int(self.name, "neighbours", neighbours, 1)
        self.beta = check_float(self.name, "beta", beta, 0.0)
        self.tune_draws = self.neighbours

    def init_state(self, x0: Tensor) -> dict[str, Tensor]:
        return {**super().init_state(x0), "variance": torch.zeros_like(x0)}

    def tune(self, models: list[nn.Module], xa: Tensor, y: Tensor, x0: Tensor, grad: Tensor, eps: float | Tensor,
             gen: torch.Generator, result: AttackResult, state: dict[str, Tensor], idx: Tensor, draws: int,
             step: int) -> tuple[Tensor, int]:
        """The pass's gradient plus the last variance; then, except at the last step (nothing would use it), this
        step's variance for the next one (unclipped neighbours, as the paper and torchattacks draw them)."""
        tuned = grad + state["variance"][idx]
        if step == self.steps:
            return tuned, 0
        around = torch.zeros_like(xa)
        for _ in range(self.neighbours):
            shift = torch.empty_like(xa).uniform_(-1, 1, generator=gen) * (self.beta * eps)
            around += self.gradient(models, xa + shift, y, x0, gen, result, False, draws=draws)[0]
        state["variance"][idx] = around / self.neighbours - grad
        return tuned, self.neighbours * draws
