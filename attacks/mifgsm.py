"""MI-FGSM (Dong et al. 2018): sign of an accumulated, L1-normalised gradient momentum."""

from __future__ import annotations

import torch
from torch import Tensor

from robustgrid.attacks.loop import GradientAttack
from robustgrid.attacks.registry import register_attack
from robustgrid.core import check_float


@register_attack("mifgsm")
class MIFGSM(GradientAttack):
    """Momentum iterative FGSM; decay 1.0, no random start by default (Dong et al. 2018)."""

    name = "mifgsm"

    def __init__(self, *, decay: float = 1.0, random_start: bool = False, **params: object) -> None:
        super().__init__(random_start=random_start, **params)
        self.decay = check_float(self.name, "decay", decay)

    def init_state(self, x0: Tensor) -> dict[str, Tensor]:
        return {"momentum": torch.zeros_like(x0)}

    def direction(self, grad: Tensor, state: dict[str, Tensor], idx: Tensor) -> Tensor:
        # L1 normalisation as in the paper (mean |g|); the floor only matters for an all-zero
        # gradient, where it keeps the step at zero instead of NaN
        g = grad / grad.abs().mean(dim=tuple(range(1, grad.dim())), keepdim=True).clamp_min(1e-30)
        g = g + self.decay * state["momentum"][idx]
        state["momentum"][idx] = g
        return super().direction(g, state, idx)

