"""Tiny segmenters for fast attack tests: real convolutions, no training."""

from __future__ import annotations

import pytest
import torch
from torch import nn


class TinySegmenter(nn.Module):
    """Two 3x3 convolutions: logits (B, C, H, W) with real spatial context."""

    def __init__(self, classes: int = 4, kernel: int = 3) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 8, kernel, padding=kernel // 2), nn.Tanh(),
                                 nn.Conv2d(8, classes, kernel, padding=kernel // 2))
        with torch.no_grad():  # confident logits, so attacks have something to break
            for p in self.parameters():
                p.mul_(4.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@pytest.fixture
def tiny_segmenter() -> nn.Module:
    torch.manual_seed(0)
    return TinySegmenter().eval().requires_grad_(False)


@pytest.fixture
def pixelwise_segmenter() -> nn.Module:
    """1x1 convolutions only: each pixel's logits depend on that pixel alone."""
    torch.manual_seed(0)
    return TinySegmenter(kernel=1).eval().requires_grad_(False)


@pytest.fixture
def seg_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Four random 16x16 images with label maps in 0..3 and some ignored pixels."""
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(4, 3, 16, 16, generator=gen)
    y = torch.randint(0, 4, (4, 16, 16), generator=gen)
    y[:, 0, :3] = 255
    return x, y
