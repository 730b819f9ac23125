"""SegTrans (Song et al. 2025, METHODS.md 2.2 and 7.2): attack several region-remapped enhanced samples per step.

Each step draws ``copies`` enhanced samples: the image (and its label map) is cut into regions whose positions
are randomly permuted, and the copies' gradients are averaged before a momentum (MI-FGSM) step. Two region
partitions: ``grid``, an m x m regular grid of equal blocks (optionally flipped or turned), and ``strips``,
BSR-style random-size strips: the image is cut along one axis (chosen at random) into m strips of random
lengths, which are shuffled, and each strip is cut along the other axis into m random-length pieces, which are
shuffled too. Only local semantics survive, the abstract's explanation of transfer. A remap is a pixel
permutation, so autograd returns each gradient to the original layout exactly; a step costs ``copies``
gradient evaluations (copies=1 costs what MI-FGSM costs).
"""

from __future__ import annotations

import torch
from torch import Tensor

from robustgrid.attacks.mifgsm import MIFGSM
from robustgrid.attacks.registry import register_attack
from robustgrid.core import RobustgridError, check_choice, check_int

REMAPS = ("shuffle", "shuffle+flip", "shuffle+rotate")
PARTITIONS = ("grid", "strips")


def random_lengths(n: int, parts: int, gen: torch.Generator) -> list[int]:
    """``parts`` random positive lengths summing to ``n``: the cuts are distinct random points of 1..n-1."""
    cuts = (torch.randperm(n - 1, generator=gen, device=gen.device)[:parts - 1] + 1).sort().values.tolist()
    return [b - a for a, b in zip([0, *cuts], [*cuts, n], strict=True)]


def strip_permutation(h: int, w: int, strips: int, gen: torch.Generator,
                      device: torch.device | str = "cpu") -> Tensor:
    """Flat index map (h*w,) of the ``strips`` partition (module docstring): shuffled random-length strips
    along a random first axis, each cut into shuffled random-length pieces along the other axis."""
    idx = torch.arange(h * w, device=device).view(h, w)
    first = int(torch.randint(0, 2, (1,), generator=gen, device=gen.device))
    if first:
        idx = idx.t()
    rows = list(idx.split(random_lengths(idx.shape[0], strips, gen), dim=0))
    rows = [rows[i] for i in torch.randperm(len(rows), generator=gen, device=gen.device).tolist()]
    out = []
    for strip in rows:
        pieces = strip.split(random_lengths(strip.shape[1], strips, gen), dim=1)
        out.append(torch.cat([pieces[i] for i in torch.randperm(len(pieces), generator=gen,
                                                                device=gen.device).tolist()], dim=1))
    perm = torch.cat(out, dim=0)
    return (perm.t() if first else perm).flatten()


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
class SegTrans(MIFGSM):
    """SegTrans: MI-FGSM on the mean gradient of ``copies`` region-remapped enhanced samples (Song et al. 2025).

    grid: regions per axis (m); partition: "grid" (m x m equal blocks) or "strips" (random-size strips);
    remap_kind: what happens to grid blocks besides moving; copies: enhanced samples per step (8 as in the
    METHODS 7.2 probe); decay: the momentum (0 with random_start=True is the PGD-based one-remap reading).
    """

    name = "segtrans"

    def __init__(self, *, grid: int = 4, remap_kind: str = "shuffle", partition: str = "grid", copies: int = 8,
                 decay: float = 1.0, **params: object) -> None:
        self.grid = check_int(self.name, "grid", grid, 1)
        self.remap_kind = check_choice(self.name, "remap_kind", remap_kind, REMAPS)
        self.partition = check_choice(self.name, "partition", partition, PARTITIONS)
        if self.partition == "strips" and self.remap_kind != "shuffle":
            raise RobustgridError(f"segtrans partition 'strips' only shuffles, got remap_kind={remap_kind!r}")
        if "samples" in params:
            raise RobustgridError("segtrans takes copies (enhanced samples per step), not samples")
        self.copies = check_int(self.name, "copies", copies, 1)
        super().__init__(decay=decay, samples=self.copies, **params)

    def view(self, x: Tensor, y: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        """One fresh remap per call (one enhanced sample), applied to the images and their label maps."""
        h, w = x.shape[-2:]
        if h < self.grid or w < self.grid:
            raise RobustgridError(f"segtrans grid {self.grid} is larger than the {h}x{w} images")
        if self.partition == "strips":
            perm = strip_permutation(h, w, self.grid, gen, x.device)
        else:
            perm = block_permutation(h, w, self.grid, gen, self.remap_kind == "shuffle+flip", x.device,
                                     rotate=self.remap_kind == "shuffle+rotate")
        return remap(x, perm), (remap(y, perm) if y.dim() == 3 else y)
