"""The blind-spot network never lets an output pixel see its own input pixel, whatever its weights."""

from __future__ import annotations

import pytest
import torch

from robustgrid.defenses.bsn import BlindSpotNet

H = W = 20
POSITIONS = [(0, 0), (0, W - 1), (H - 1, 0), (H - 1, W - 1), (0, 7), (11, W - 1), (10, 10), (3, 5)]


def input_gradient(net: BlindSpotNet, x: torch.Tensor, c: int, i: int, j: int) -> torch.Tensor:
    """d out[0, c, i, j] / d x for every input pixel and channel."""
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(net(x)[0, c, i, j], x)
    return grad[0]


@pytest.fixture(scope="module")
def net() -> BlindSpotNet:
    torch.manual_seed(0)
    return BlindSpotNet(in_chans=2, width=8, depth=5).double()


@pytest.mark.parametrize("c", [0, 1])
@pytest.mark.parametrize(("i", "j"), POSITIONS)
def test_output_pixel_never_sees_its_input_pixel(net: BlindSpotNet, c: int, i: int, j: int) -> None:
    x = torch.rand(1, 2, H, W, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    grad = input_gradient(net, x, c, i, j)
    assert torch.equal(grad[:, i, j], torch.zeros(2, dtype=torch.float64))  # exactly zero, all channels
    for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (1, 1)):  # the context is seen
        if 0 <= i + di < H and 0 <= j + dj < W:
            assert (grad[:, i + di, j + dj] != 0).all()
    assert int((grad.abs().sum(0) != 0).sum()) > 100  # a wide receptive field, not only the 3x3 ring


def test_weights_cannot_open_the_blind_spot() -> None:
    """Masks come from code (not the state dict) and are applied in forward, so any loaded weights keep it."""
    torch.manual_seed(0)
    net = BlindSpotNet(in_chans=1, width=4, depth=4).double()
    assert not any("mask" in k for k in net.state_dict())
    net.load_state_dict({k: torch.ones_like(v) for k, v in net.state_dict().items()})
    x = torch.rand(1, 1, 12, 12, dtype=torch.float64)
    for i, j in ((0, 0), (5, 6), (11, 11)):
        grad = input_gradient(net, x, 0, i, j)
        assert grad[0, i, j] == 0 and grad.abs().sum() > 0


def test_masked_taps_get_no_gradient() -> None:
    torch.manual_seed(0)
    net = BlindSpotNet(in_chans=1, width=4, depth=3)
    net(torch.rand(2, 1, 12, 12)).square().mean().backward()
    for layer in net.layers:
        conv = layer.conv
        assert torch.equal(conv.weight.grad * (1 - conv.mask), torch.zeros_like(conv.weight))
        assert torch.equal(conv.weight * (1 - conv.mask), torch.zeros_like(conv.weight))  # zeroed at init


def test_output_is_contiguous_nchw_and_chunking_changes_nothing() -> None:
    """Channels-last and CPU chunking are internal speed choices; callers get a plain tensor they can .view()."""
    torch.manual_seed(0)
    net = BlindSpotNet(in_chans=3, width=4, depth=3)
    x = torch.rand(40, 3, 9, 7)  # more than cpu_chunk images: computed in chunks
    y = net(x)
    assert y.shape == (40, 3, 9, 7) and y.is_contiguous()
    torch.testing.assert_close(y, net.forward_batch(x), rtol=1e-5, atol=1e-6)
