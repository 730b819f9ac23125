"""A user's own attack as a small hook over the shared loop, registered with ``register_attack``: PGD whose
sources see the iterate plus random +-sigma noise each step (a cheap smoothing of the loss surface)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from robustgrid.attacks import GradientAttack, register_attack
from robustgrid.core import check_float


@register_attack("rademacher-pgd")
class RademacherPGD(GradientAttack):
    """PGD on x + sigma * r with r uniform in {-1, +1} per pixel, redrawn every step."""

    name = "rademacher-pgd"

    def __init__(self, *, sigma: float = 0.02, **params: Any) -> None:
        super().__init__(**params)
        self.sigma = check_float("rademacher-pgd", "sigma", sigma, 0.0, low_open=True)

    def view(self, x: Tensor, y: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        r = torch.randint(0, 2, x.shape, generator=gen, device=x.device).to(x.dtype) * 2 - 1
        return x + self.sigma * r, y
