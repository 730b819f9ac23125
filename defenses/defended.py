"""A target module behind a purifier, so any purifier works in front of any nn.Module without the grid."""

from __future__ import annotations

from torch import Tensor, nn

from robustgrid.defenses.base import Purifier


class Defended(nn.Module):
    """``model(purifier(x))``: the defended pipeline an adaptive attack differentiates end to end."""

    def __init__(self, model: nn.Module, purifier: Purifier) -> None:
        super().__init__()
        self.model = model
        self.purifier = purifier

    def forward(self, x: Tensor) -> Tensor:
        return self.model(self.purifier(x))
