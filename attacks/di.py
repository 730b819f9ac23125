"""DI-FGSM (Xie et al. 2019): random resize-and-pad of the input before each gradient (input diversity).

For segmentation the label map goes through the same resize (nearest) and pad (ignore label), so
every pixel keeps its own label; for classification the labels pass through unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from robustgrid.attacks import register_attack
from robustgrid.attacks.mifgsm import MIFGSM
from robustgrid.models.segmentation_task import IGNORE
from torch import Tensor

from robustgrid.core import RobustgridError


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
        if not 0.0 <= diversity_prob <= 1.0:
            raise RobustgridError(f"diversity_prob must lie in [0, 1], got {diversity_prob!r}")
        if not resize_rate > 0:
            raise RobustgridError(f"resize_rate must be > 0, got {resize_rate!r}")
        super().__init__(decay=decay, **params)
        self.diversity_prob, self.resize_rate = float(diversity_prob), float(resize_rate)

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
