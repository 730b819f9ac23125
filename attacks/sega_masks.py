"""SEGA's perturbation filter masks (METHODS.md 7.1): a content mask of regions, and the agreement variant.

The paper's overview figure shows one binary mask computed from the clean image's content that forms solid
regions (textured skyline kept, flat sky dropped). Our rule, the content mask: the luma's local variance over a
``window`` x ``window`` box (texture hides noise: the spatial-activity precedent of IQA attacks) is averaged over
non-overlapping ``block`` x ``block`` tiles (edge tiles may be smaller); a tile is kept when that mean is
>= ``threshold``; kept tiles then grow by ``dilate`` tiles (a morphological dilation of the tile grid, which
gives small textured objects a square margin). The mask is constant on tiles, so it forms regions, never
salt-and-pepper. block=1, dilate=0 is the pixel-wise variance threshold. The sources' sign-agreement mask
(METHODS 1.4 step 5, not in the figure) is kept only for the ``sega-agreement`` variant.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor

LUMA = (0.299, 0.587, 0.114)


def local_variance(x: Tensor, window: int) -> Tensor:
    """Variance of the luma (grey for 1-channel images) over a window x window box, reflect padding, (N,1,H,W)."""
    g = x if x.shape[1] == 1 else sum(w * x[:, c:c + 1] for c, w in enumerate(LUMA))
    pad = window // 2
    gp = F.pad(g, (pad, pad, pad, pad), mode="reflect")
    mean = F.avg_pool2d(gp, window, stride=1)
    return (F.avg_pool2d(gp * gp, window, stride=1) - mean * mean).clamp_min(0)


def content_mask(x0: Tensor, window: int, threshold: float, block: int = 8, dilate: int = 0) -> Tensor:
    """The content mask (N,1,H,W) of the module docstring: tiles of mean local variance >= threshold, dilated."""
    h, w = x0.shape[-2:]
    activity = F.avg_pool2d(local_variance(x0, window), block, ceil_mode=True, count_include_pad=False)
    tiles = (activity >= threshold).to(x0)
    if dilate:
        tiles = F.max_pool2d(tiles, 2 * dilate + 1, stride=1, padding=dilate)
    return tiles.repeat_interleave(block, 2).repeat_interleave(block, 3)[..., :h, :w]


def agreement(grads: Sequence[Tensor], weights: Tensor) -> Tensor:
    """Weighted vote of the sources' gradient signs, sum_k w_k sign(g_k), entries in [-1, 1]."""
    return sum(w * g.sign() for w, g in zip(weights, grads))


def agreement_mask(grads: Sequence[Tensor], weights: Tensor, tau: float) -> Tensor:
    """M_sem: 1 where |sum_k w_k sign(g_k)| >= tau (the sources agree on the sign), else 0."""
    return (agreement(grads, weights).abs() >= tau).to(grads[0])
