"""SegTrans (Song et al. 2025, reconstructed in METHODS.md 2.2): attack region-remapped enhanced samples.

Each gradient evaluation sees the image (and its label map) cut into an m x m grid of blocks whose
positions are randomly permuted (and optionally flipped or rotated). Only local semantics survive, which is the
paper's explanation of better transfer. A remap is a pixel permutation, so autograd returns the
gradient to the original layout exactly, and the cost per step equals PGD's.
"""

from __future__ import annotations

import torch
from torch import Tensor

from robustgrid.attacks.pgd import PGD
from robustgrid.attacks.registry import register_attack
from robustgrid.core import RobustgridError, check_choice, check_int

REMAPS = ("shuffle", "shuffle+flip", "shuffle+rotate")


def block_permutation(h: int, w: int, grid: int, gen: torch.Generator, flip: bool = False,
                      device: torch.device | str = "cpu", *, rotate: bool = False) -> Tensor:
    """Flat index map (h*w,): output pixel p shows input pixel perm[p]. The grid x grid blocks of the
    top-left (h - h % grid, w - w % grid) area change places, each flipped at random if ``flip`` and
    turned by a random multiple of 90 degrees if ``rotate`` (of 180 degrees for non-square blocks);
    leftover border pixels stay where they are."""
    bh, bw = h // grid, w // grid
    idx = torch.arange(h * w, device=device).view(h, w)
    out = idx.clone()
    cells = grid * grid
    order = torch.randperm(cells, generator=gen, device=gen.device).tolist()
    flips = torch.randint(0, 4, (cells,), generator=gen, device=gen.device).tolist() if flip else [0] * cells
    turns = [0] * cells
    if rotate:
        turns = torch.randint(0, 4, (cells,), generator=gen, device=gen.device).tolist()
        if bh != bw:  # a quarter turn would change the block's shape
            turns = [2 * (t % 2) for t in turns]
    for dst, (src, f, k) in enumerate(zip(order, flips, turns, strict=True)):
        block = idx[src // grid * bh:(src // grid + 1) * bh, src % grid * bw:(src % grid + 1) * bw]
        if f & 1:
            block = block.flip(1)
        if f & 2:
            block = block.flip(0)
        if k:
            block = torch.rot90(block, k, (0, 1))
        out[dst // grid * bh:(dst // grid + 1) * bh, dst % grid * bw:(dst % grid + 1) * bw] = block
    return out.flatten()


def remap(x: Tensor, perm: Tensor) -> Tensor:
    """Re-index the last two (H, W) dims of images or label maps by a flat pixel permutation."""
    return x.flatten(-2)[..., perm].view(x.shape)


def unremap(x: Tensor, perm: Tensor) -> Tensor:
    """Inverse of ``remap``: puts every pixel back where it came from."""
    inverse = torch.empty_like(perm).scatter_(0, perm, torch.arange(len(perm), device=perm.device))
    return remap(x, inverse)


@register_attack("segtrans")
class SegTrans(PGD):
    """SegTrans: PGD on randomly block-remapped enhanced samples, same cost as PGD (Song et al. 2025)."""

    name = "segtrans"

    def __init__(self, *, grid: int = 4, remap_kind: str = "shuffle", **params: object) -> None:
        self.grid = check_int(self.name, "grid", grid, 1)
        self.remap_kind = check_choice(self.name, "remap_kind", remap_kind, REMAPS)
        super().__init__(**params)

    def view(self, x: Tensor, y: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        """One fresh remap per call (per enhanced sample), applied to the images and their label maps."""
        h, w = x.shape[-2:]
        if h < self.grid or w < self.grid:
            raise RobustgridError(f"segtrans grid {self.grid} is larger than the {h}x{w} images")
        perm = block_permutation(h, w, self.grid, gen, self.remap_kind == "shuffle+flip", x.device,
                                 rotate=self.remap_kind == "shuffle+rotate")
        return remap(x, perm), (remap(y, perm) if y.dim() == 3 else y)
