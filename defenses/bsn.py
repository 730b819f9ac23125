"""The FBI-Net-style blind-spot network (METHODS.md 3.4): every output pixel is predicted from its context only.

Receptive field: the first 3x3 conv hides the centre; the 5x5 "knight-move" ring conv reads layer-1 features
whose 3x3 supports all miss the centre; the X-shaped 3x3 convs with dilation 3 only add offsets (3a, 3b) with
a = b mod 2, which never lead back to it. Everything else (PReLU, averaging, 1x1 convs) is per pixel. Zero
padding keeps the property at the borders (reflect padding would mirror the centre pixel back in).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from robustgrid.core import check_int

CENTRE_MASK = ((1, 1, 1), (1, 0, 1), (1, 1, 1))
RING_MASK = ((0, 1, 0, 1, 0), (1, 0, 0, 0, 1), (0, 0, 1, 0, 0), (1, 0, 0, 0, 1), (0, 1, 0, 1, 0))
X_MASK = ((1, 0, 1), (0, 1, 0), (1, 0, 1))
DILATION = 3


class MaskedConv2d(nn.Conv2d):
    """A zero-padded conv whose kernel is multiplied by a fixed 0/1 mask in every forward pass.

    The mask is a non-persistent buffer: it comes from the code, never from a checkpoint, and masked taps
    receive zero gradient, so no training or loaded weight can open the blind spot.
    """

    def __init__(self, in_chans: int, out_chans: int, mask: tuple[tuple[int, ...], ...], dilation: int = 1) -> None:
        k = len(mask)
        super().__init__(in_chans, out_chans, k, padding=dilation * (k // 2), dilation=dilation)
        self.register_buffer("mask", torch.tensor(mask, dtype=torch.float32), persistent=False)
        with torch.no_grad():
            self.weight.mul_(self.mask)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.weight * self.mask, self.bias)


class ResidualModule(nn.Module):
    """Per-pixel refinement PReLU((x + 1x1-PReLU-1x1(x)) / 2), as in FBI-Net."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(width, width, 1), nn.PReLU(width), nn.Conv2d(width, width, 1))
        self.act = nn.PReLU(width)

    def forward(self, x: Tensor) -> Tensor:
        return self.act((x + self.body(x)) / 2)


class BlindSpotLayer(nn.Module):
    """One masked conv on the blind-spot branch, merged into the running branch by averaging (not layer 1)."""

    def __init__(self, conv: MaskedConv2d, width: int, first: bool) -> None:
        super().__init__()
        self.conv = conv
        self.act = nn.PReLU(width)
        self.merge_act = nn.Identity() if first else nn.PReLU(width)
        self.residual = ResidualModule(width)

    def forward(self, branch: Tensor, running: Tensor | None) -> tuple[Tensor, Tensor]:
        branch = self.act(self.conv(branch))
        merged = branch if running is None else self.merge_act((branch + running) / 2)
        return branch, self.residual(merged)


class BlindSpotNet(nn.Module):
    """FBI-Net blind-spot network: ``depth`` masked layers of ``width`` channels, output = mean of layer outputs."""

    cpu_chunk = 32  # images per pass on CPU: activations stay in cache (a 512-image forward is ~3x slower per image)

    def __init__(self, in_chans: int = 1, width: int = 32, depth: int = 6) -> None:
        super().__init__()
        self.in_chans = check_int("bsn", "in_chans", in_chans, 1)
        self.width = check_int("bsn", "width", width, 1)
        self.depth = check_int("bsn", "depth", depth, 2)
        convs = [MaskedConv2d(in_chans, width, CENTRE_MASK), MaskedConv2d(width, width, RING_MASK)]
        convs += [MaskedConv2d(width, width, X_MASK, DILATION) for _ in range(depth - 2)]
        self.layers = nn.ModuleList(BlindSpotLayer(c, width, first=i == 0) for i, c in enumerate(convs))
        self.head = nn.Sequential(nn.PReLU(width), ResidualModule(width), nn.Conv2d(width, in_chans, 1))

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type == "cpu" and len(x) > self.cpu_chunk:
            return torch.cat([self.forward_batch(c) for c in x.split(self.cpu_chunk)])
        return self.forward_batch(x)

    def forward_batch(self, x: Tensor) -> Tensor:
        """The network on one batch; channels-last because on CPU the dilated conv's backward is ~8x faster."""
        branch, running, total = x.contiguous(memory_format=torch.channels_last), None, 0.0
        for layer in self.layers:
            branch, running = layer(branch, running)
            total = total + running
        return self.head(total / self.depth).contiguous()  # callers may .view() the output

    def architecture(self) -> dict[str, Any]:
        """What determines the network's shape (part of every recipe hash)."""
        return {"arch": "fbi-net-bsn", "in_chans": self.in_chans, "width": self.width, "depth": self.depth,
                "dilation": DILATION}
