"""BPDA (Athalye et al. 2018): the purifier in the forward pass, the identity in the backward pass."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from robustgrid.defenses.base import Purifier


class _StraightThrough(torch.autograd.Function):
    """Forward: ``purifier(x)``; backward: the incoming gradient unchanged (d purifier / dx := I)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, purifier: Purifier) -> Tensor:  # runs with autograd off
        return purifier(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


class BPDA(Purifier):
    """Wraps a purifier so that gradients pass straight through it, for attacks treating it as a black box."""

    differentiable = True  # by construction, with the identity as surrogate Jacobian

    def __init__(self, purifier: Purifier) -> None:
        super().__init__()
        self.inner = purifier
        self.name = f"bpda({purifier.name})"
        self.randomized = purifier.randomized  # EOT is still needed for a random inner purifier

    def purify(self, x: Tensor) -> Tensor:
        return _StraightThrough.apply(x, self.inner)

    def params(self) -> dict[str, Any]:
        return {"inner": self.inner.describe()}


def bpda(purifier: Purifier) -> BPDA:
    """``purifier`` with the identity as its backward pass (the grid's ``bpda`` threat model)."""
    return BPDA(purifier)
