"""Iterative Gaussian smoothing (GS, METHODS.md 3.3): the linear baseline purifier of NCIS.

A weighted local average of i.i.d. zero-mean noise keeps only a fraction sum(G^2) of its variance, so
sign-like adversarial noise is attenuated while image content varying slower than sigma survives.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from robustgrid.core import RobustgridError, check_float, check_int
from robustgrid.defenses.base import Purifier, register_defense
from robustgrid.models.filters import depthwise_conv2d, gaussian_kernel


def smooth(x: Tensor, kernel: Tensor) -> Tensor:
    """One GS step: depthwise convolution of every channel with ``kernel``, reflect padding, same size."""
    k = kernel.shape[-1]
    pad = k // 2
    if min(x.shape[-2:]) <= pad:
        raise RobustgridError(f"gaussian smoothing with kernel_size {k} needs images larger than {pad} pixels, "
                              f"got {tuple(x.shape[-2:])}")
    return depthwise_conv2d(x, kernel, "reflect")


@register_defense("gaussian")
class GaussianSmoothing(Purifier):
    """Iterative Gaussian smoothing: T depthwise k x k Gaussian convolutions (differentiable, deterministic).

    Defaults k=3, sigma=1.0, T=1 (the smallest setting of the METHODS.md 3.3 sweep that still smooths): one step
    keeps sum(G^2) = 0.126 of the variance of i.i.d. noise (std x 0.35) at the least cost in clean accuracy on
    28x28 Fashion-MNIST. For ~224 px natural photos use more: k=5, sigma=1.0-1.5, T=2-4 (sigma_eff ~ sigma
    sqrt(T), still around 1 % of the image width).
    """

    def __init__(self, kernel_size: int = 3, sigma: float = 1.0, iterations: int = 1) -> None:
        super().__init__()
        self.kernel_size = check_int("gaussian", "kernel_size", kernel_size, 3, odd=True)
        self.sigma = check_float("gaussian", "sigma", sigma, 0.0, low_open=True)
        self.iterations = check_int("gaussian", "iterations", iterations, 1)
        self.register_buffer("kernel", gaussian_kernel(self.kernel_size, self.sigma), persistent=False)

    def purify(self, x: Tensor) -> Tensor:
        for _ in range(self.iterations):
            x = smooth(x, self.kernel)
        return x

    def params(self) -> dict[str, Any]:
        return {"kernel_size": self.kernel_size, "sigma": self.sigma, "iterations": self.iterations}
