"""A user's own purifier: bit-depth reduction (feature squeezing, Xu et al. 2018), registered with
``register_defense``. Rounding has no useful gradient, so it declares itself non-differentiable: the grid then
refuses the adaptive threat for it and attacks it with BPDA instead."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from robustgrid.core import check_int
from robustgrid.defenses import Purifier, register_defense


@register_defense("bitdepth")
class BitDepth(Purifier):
    """Bit-depth reduction to ``bits`` bits per channel (deterministic, not differentiable)."""

    differentiable = False

    def __init__(self, bits: int = 3) -> None:
        super().__init__()
        self.bits = check_int("bitdepth", "bits", bits, 1)

    def purify(self, x: Tensor) -> Tensor:
        levels = 2**self.bits - 1
        return torch.round(x * levels) / levels

    def params(self) -> dict[str, Any]:
        return {"bits": self.bits}
