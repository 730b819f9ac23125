"""Fixed image filters shared by attacks and purifiers: the normalised Gaussian kernel and depthwise convolution.

TI-FGSM smooths gradients and the Gaussian purifier smooths images with the same kernel; it lives here, below
both packages, so neither has to import the other.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor


def gaussian_kernel(kernel_size: int, sigma: float, dtype: torch.dtype = torch.float64) -> Tensor:
    """The normalised k x k kernel G(a, b) ~ exp(-(a^2 + b^2) / (2 sigma^2)) on pixel offsets a, b; sum(G) = 1.

    A 1 x 1 kernel is [[1]] for any sigma (including 0).
    """
    if kernel_size == 1:
        return torch.ones(1, 1, dtype=dtype)
    a = torch.arange(kernel_size, dtype=torch.float64) - (kernel_size - 1) / 2
    g = torch.exp(-(a**2) / (2 * sigma**2))
    g2 = torch.outer(g, g)
    return (g2 / g2.sum()).to(dtype)


def depthwise_conv2d(x: Tensor, kernel: Tensor, padding: Literal["zeros", "reflect"]) -> Tensor:
    """Every channel of NCHW ``x`` convolved with one 2-D ``kernel`` (odd size), output the size of the input."""
    c, k = x.shape[1], kernel.shape[-1]
    weight = kernel.to(dtype=x.dtype, device=x.device).expand(c, 1, k, k)
    if padding == "zeros":
        return F.conv2d(x, weight, padding=k // 2, groups=c)
    pad = k // 2
    return F.conv2d(F.pad(x, (pad, pad, pad, pad), mode="reflect"), weight, groups=c)
