"""TI-FGSM (Dong et al. 2019): smooth the gradient with a Gaussian kernel before the sign.

Averaging the gradient over small translations makes the perturbation less specific to the
surrogate's exact receptive fields, which helps it transfer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from robustgrid.attacks import register_attack
from robustgrid.attacks.mifgsm import MIFGSM
from torch import Tensor

from robustgrid.core import RobustgridError


def gaussian_kernel(size: int, nsig: float) -> Tensor:
    """Normalised (size, size) Gaussian sampled on [-nsig, nsig], as in the TI paper's code."""
    t = torch.linspace(-nsig, nsig, size, dtype=torch.float64)
    k1 = torch.exp(-0.5 * t ** 2)
    k = torch.outer(k1, k1)
    return (k / k.sum()).float()


def smooth(grad: Tensor, kernel: Tensor) -> Tensor:
    """Depthwise 'same' convolution of an NCHW gradient with a 2-D kernel (zero padding)."""
    c = grad.shape[1]
    weight = kernel.to(grad)[None, None].expand(c, 1, *kernel.shape)
    return F.conv2d(grad, weight, padding=kernel.shape[-1] // 2, groups=c)


@register_attack("ti")
class TIFGSM(MIFGSM):
    """TI-FGSM: Gaussian-smoothed gradient before the sign (Dong et al. 2019); decay > 0 = TI-MI-FGSM."""

    name = "ti"

    def __init__(self, *, kernel_size: int = 7, nsig: float = 3.0, decay: float = 0.0, **params: object) -> None:
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise RobustgridError(f"kernel_size must be an odd integer >= 1, got {kernel_size!r}")
        if not nsig > 0:
            raise RobustgridError(f"nsig must be > 0, got {nsig!r}")
        super().__init__(decay=decay, **params)
        self.kernel = gaussian_kernel(kernel_size, float(nsig))

    def direction(self, grad: Tensor, state: dict[str, Tensor], idx: Tensor) -> Tensor:
        return super().direction(smooth(grad, self.kernel), state, idx)
