"""DI-FGSM (Xie et al. 2019): random resize-and-pad of the input before each gradient (input diversity).

For segmentation the label map goes through the same resize (nearest) and pad (ignore label), so
every pixel keeps its own label; for classification the labels pass through unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from robustgrid.attacks.mifgsm import MIFGSM
from robustgrid.attacks.registry import register_attack
from robustgrid.core import check_float
from robustgrid.models.segmentation_task import IGNORE


def resize_pad(x: Tensor, size: tuple[int, int], out: tuple[int, int], top: int, left: int, *,
               labels: bool = False) -> Tensor:
    """Resize the last two dims to ``size`` and pad to ``out`` with (top, left) margins; images get
    bilinear resizing and zeros, label maps nearest resizing and the ignore label."""
    pad = (left, out[1] - size[1] - left, top, out[0] - size[0] - top)
    if labels:
        y = F.interpolate(x[:, None].float(), size=size, mode="nearest")[:, 0].to(x.dtype)
        return F.pad(y, pad, value=IGNORE)
    return F.pad(F.interpolate(x, size=size, mode="bilinear", align_corners=False), pad, value=0.0)


@register_attack("di")
class DIFGSM(MIFGSM):
    """DI-FGSM input diversity: random resize-and-pad with probability p (Xie et al. 2019); decay > 0 = M-DI2-FGSM."""

    name = "di"

    def __init__(self, *, diversity_prob: float = 0.5, resize_rate: float = 0.9, decay: float = 0.0,
                 **params: object) -> None:
        self.diversity_prob = check_float(self.name, "diversity_prob", diversity_prob, 0.0, 1.0)
        self.resize_rate = check_float(self.name, "resize_rate", resize_rate, 0.0, low_open=True)
        super().__init__(decay=decay, **params)

    def view(self, x: Tensor, y: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        """One random transform per batch, drawn as torchattacks' DIFGSM does; aspect ratio kept.

        resize_rate < 1 (default 0.9) keeps the input size, which segmenters needing multiples of 32 require."""
        h, w = x.shape[-2:]
        lo, hi = sorted((w, int(w * self.resize_rate)))
        rnd = int(torch.randint(lo, hi, (1,), generator=gen)) if hi > lo else lo
        size, out = (round(h * rnd / w), rnd), (round(h * hi / w), hi)
        top = int(torch.randint(0, max(out[0] - size[0], 1), (1,), generator=gen))
        left = int(torch.randint(0, max(out[1] - size[1], 1), (1,), generator=gen))
        if float(torch.rand(1, generator=gen)) >= self.diversity_prob:
            return x, y
        y_out = resize_pad(y, size, out, top, left, labels=True) if y.dim() == 3 else y
        return resize_pad(x, size, out, top, left), y_out
