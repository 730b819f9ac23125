"""TI-FGSM (Dong et al. 2019): smooth the gradient with a Gaussian kernel before the sign.

Averaging the gradient over small translations makes the perturbation less specific to the
surrogate's exact receptive fields, which helps it transfer.
"""

from __future__ import annotations

from torch import Tensor

from robustgrid.attacks.mifgsm import MIFGSM
from robustgrid.attacks.registry import register_attack
from robustgrid.core import check_float, check_int
from robustgrid.models.filters import depthwise_conv2d, gaussian_kernel


def ti_kernel(size: int, nsig: float) -> Tensor:
    """TI's float32 kernel: the Gaussian sampled on [-nsig, nsig] (the paper's code), sigma = (size-1)/(2 nsig) px."""
    return gaussian_kernel(size, (size - 1) / (2 * nsig)).float()


def smooth(grad: Tensor, kernel: Tensor) -> Tensor:
    """Depthwise 'same' convolution of an NCHW gradient with a 2-D kernel (zero padding)."""
    return depthwise_conv2d(grad, kernel, "zeros")


@register_attack("ti")
class TIFGSM(MIFGSM):
    """TI-FGSM: Gaussian-smoothed gradient before the sign (Dong et al. 2019); decay > 0 = TI-MI-FGSM."""

    name = "ti"

    def __init__(self, *, kernel_size: int = 7, nsig: float = 3.0, decay: float = 0.0, **params: object) -> None:
        kernel_size = check_int(self.name, "kernel_size", kernel_size, 1, odd=True)
        nsig = check_float(self.name, "nsig", nsig, 0.0, low_open=True)
        super().__init__(decay=decay, **params)
        self.kernel = ti_kernel(kernel_size, nsig)

    def direction(self, grad: Tensor, state: dict[str, Tensor], idx: Tensor) -> Tensor:
        return super().direction(smooth(grad, self.kernel), state, idx)
