"""Central finite differences as an independent reference for autograd gradients through purifiers."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor


def check_gradient(fn: Callable[[Tensor], Tensor], x: Tensor, h: float = 1e-6, rel: float = 1e-6) -> Tensor:
    """Assert that the autograd gradient of s(x) = <w, fn(x)> (random w) matches central differences.

    Checked along random directions and along single pixels (corner, edge, centre); ``x`` must be float64.
    Returns the gradient, so callers can check that it is non-zero where it should be.
    """
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(fn(x).shape, generator=gen, dtype=x.dtype)
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad((fn(xg) * w).sum(), xg)
    directions = [torch.randn(x.shape, generator=gen, dtype=x.dtype) for _ in range(3)]
    for idx in ((0, 0, 0, 0), (0, -1, 0, x.shape[-1] // 2), (0, 0, x.shape[-2] // 2, x.shape[-1] // 2)):
        directions.append(torch.zeros_like(x))
        directions[-1][idx] = 1.0
    with torch.no_grad():
        for u in directions:
            numeric = float(((fn(x + h * u) - fn(x - h * u)) * w).sum()) / (2 * h)
            assert float((grad * u).sum()) == pytest.approx(numeric, rel=rel, abs=1e-9)
    return grad
