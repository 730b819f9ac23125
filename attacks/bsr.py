"""BSR (Wang et al. 2024, METHODS.md 7.2): block shuffle and rotation, the closest public block-transform attack.

Each of ``copies`` transformed samples per step: cut the image along a random axis into ``blocks`` strips of
random lengths and shuffle them; turn each strip by its own angle drawn from U(-max_angle, max_angle) degrees
(bilinear, zero fill), then cut it along the other axis into random-length pieces and shuffle those (the order of
the reference code). The copies' gradients are averaged (their losses summed, up to scale) on an MI-FGSM base.
Label maps (segmentation) follow every move; pixels rotated in from outside get the ignore label.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from robustgrid.attacks.mifgsm import MIFGSM
from robustgrid.attacks.registry import register_attack
from robustgrid.attacks.segtrans import random_lengths
from robustgrid.core import RobustgridError, check_float, check_int
from robustgrid.models.segmentation_task import IGNORE


def rotate(x: Tensor, degrees: float, *, labels: bool = False) -> Tensor:
    """Turn NCHW images (bilinear, zero fill) or N1HW float label maps (nearest, IGNORE fill) about their centre."""
    if degrees == 0:
        return x  # exact: grid_sample's interpolation would round
    h, w = x.shape[-2:]
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    theta = torch.tensor([[c, -s * h / w, 0.0], [s * w / h, c, 0.0]], dtype=x.dtype, device=x.device)
    grid = F.affine_grid(theta.expand(len(x), 2, 3), list(x.shape), align_corners=False)
    if not labels:
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    inside = F.grid_sample(torch.ones_like(x), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    moved = F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return torch.where(inside > 0.5, moved, torch.full_like(x, IGNORE))


def shuffled(parts: tuple[Tensor, ...], order: list[int], dim: int) -> Tensor:
    return torch.cat([parts[i] for i in order], dim=dim)


def block_shuffle_rotate(x: Tensor, y: Tensor | None, blocks: int, max_angle: float,
                         gen: torch.Generator) -> tuple[Tensor, Tensor | None]:
    """One BSR transform of images ``x`` (NCHW) and, if given, label maps ``y`` (N1HW float), same moves for both."""
    first = 2 + int(torch.randint(0, 2, (1,), generator=gen, device=gen.device))
    second = 5 - first
    lengths = random_lengths(x.shape[first], blocks, gen)
    order = torch.randperm(blocks, generator=gen, device=gen.device).tolist()
    xs = [x.split(lengths, first)[i] for i in order]
    ys = [y.split(lengths, first)[i] for i in order] if y is not None else [None] * blocks
    out_x, out_y = [], []
    for sx, sy in zip(xs, ys, strict=True):
        draw = torch.empty(1, device=gen.device).uniform_(-max_angle, max_angle, generator=gen)
        angle = float(draw) if max_angle else 0.0
        sx = rotate(sx, angle)
        pieces = random_lengths(sx.shape[second], blocks, gen)
        inner = torch.randperm(blocks, generator=gen, device=gen.device).tolist()
        out_x.append(shuffled(sx.split(pieces, second), inner, second))
        if sy is not None:
            out_y.append(shuffled(rotate(sy, angle, labels=True).split(pieces, second), inner, second))
    return torch.cat(out_x, first), (torch.cat(out_y, first) if y is not None else None)


@register_attack("bsr")
class BSR(MIFGSM):
    """BSR: MI-FGSM on the mean gradient of ``copies`` block-shuffled and rotated samples (Wang et al. 2024).

    Defaults as published: blocks=3 strips per axis, max_angle=24 degrees, copies=20, decay=1.0.
    """

    name = "bsr"

    def __init__(self, *, blocks: int = 3, max_angle: float = 24.0, copies: int = 20, **params: object) -> None:
        self.blocks = check_int(self.name, "blocks", blocks, 1)
        self.max_angle = check_float(self.name, "max_angle", max_angle, 0.0, 180.0)
        if "samples" in params:
            raise RobustgridError("bsr takes copies (transformed samples per step), not samples")
        self.copies = check_int(self.name, "copies", copies, 1)
        super().__init__(samples=self.copies, **params)

    def view(self, x: Tensor, y: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        """One fresh transform per call; segmentation label maps move with their pixels."""
        h, w = x.shape[-2:]
        if min(h, w) < self.blocks:
            raise RobustgridError(f"bsr blocks {self.blocks} exceed the {h}x{w} images")
        maps = y[:, None].to(x.dtype) if y.dim() == 3 else None
        xt, yt = block_shuffle_rotate(x, maps, self.blocks, self.max_angle, gen)
        return xt, (yt[:, 0].round().to(y.dtype) if yt is not None else y)
