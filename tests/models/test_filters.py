"""One Gaussian kernel: TI-FGSM and the Gaussian purifier both take it from models.filters, and neither moved."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from robustgrid.attacks import build_attack
from robustgrid.defenses import build_defense
from robustgrid.defenses.bsn import BlindSpotNet
from robustgrid.models.filters import depthwise_conv2d, gaussian_kernel


def ti_kernel_before(size: int, nsig: float) -> torch.Tensor:
    """attacks/ti.py's own kernel before it moved (the TI paper's code): a Gaussian sampled on [-nsig, nsig]."""
    t = torch.linspace(-nsig, nsig, size, dtype=torch.float64)
    k1 = torch.exp(-0.5 * t ** 2)
    k = torch.outer(k1, k1)
    return (k / k.sum()).float()


def purifier_kernel_before(k: int, sigma: float) -> torch.Tensor:
    """defenses/gaussian.py's own kernel before it moved."""
    a = torch.arange(k, dtype=torch.float64) - (k - 1) / 2
    g = torch.exp(-(a**2) / (2 * sigma**2))
    g2 = torch.outer(g, g)
    return g2 / g2.sum()


@pytest.mark.parametrize(("size", "nsig"), [(1, 3.0), (5, 3.0), (7, 3.0), (15, 3.0), (9, 1.5), (31, 4.0)])
def test_ti_uses_the_shared_kernel_and_it_is_bit_identical_to_before(size: int, nsig: float) -> None:
    ti = build_attack("ti", kernel_size=size, nsig=nsig)
    assert torch.equal(ti.kernel, gaussian_kernel(size, (size - 1) / (2 * nsig)).float())
    assert torch.equal(ti.kernel, ti_kernel_before(size, nsig))  # the committed TI results stay valid


@pytest.mark.parametrize(("k", "sigma", "iterations"), [(3, 1.0, 1), (5, 1.5, 2), (7, 0.8, 3)])
def test_gaussian_purifier_uses_the_shared_kernel_and_its_output_is_unchanged(k: int, sigma: float,
                                                                              iterations: int) -> None:
    gs = build_defense("gaussian", kernel_size=k, sigma=sigma, iterations=iterations)
    assert torch.equal(gs.kernel, gaussian_kernel(k, sigma))
    assert torch.equal(gs.kernel, purifier_kernel_before(k, sigma))
    x = torch.rand(2, 3, 12, 10, generator=torch.Generator().manual_seed(0))
    expected, weight, pad = x, purifier_kernel_before(k, sigma).float().expand(3, 1, k, k), k // 2
    for _ in range(iterations):  # the purifier's formula before the move, written out
        expected = F.conv2d(F.pad(expected, (pad, pad, pad, pad), mode="reflect"), weight, groups=3)
    assert torch.equal(gs(x), expected)


def test_ncis_smooths_with_the_shared_kernel_too() -> None:
    ncis = build_defense("ncis", bsn=BlindSpotNet(in_chans=1, width=4, depth=2), kernel_size=5, sigma=1.2)
    assert torch.equal(ncis.kernel, gaussian_kernel(5, 1.2))


def test_kernel_is_a_normalised_symmetric_gaussian() -> None:
    kernel = gaussian_kernel(7, 1.3)
    assert kernel.dtype == torch.float64 and float(kernel.sum()) == pytest.approx(1.0, abs=1e-12)
    assert torch.equal(kernel, kernel.T) and torch.equal(kernel, kernel.flip(0)) and kernel[3, 3] == kernel.max()
    # the ratio of neighbouring taps is exp(-(2a + 1) / (2 sigma^2)) along an axis
    assert float(kernel[3, 4] / kernel[3, 3]) == pytest.approx(torch.exp(torch.tensor(-1 / (2 * 1.3**2))).item())
    assert torch.equal(gaussian_kernel(1, 0.0), torch.ones(1, 1, dtype=torch.float64))


def test_depthwise_conv2d_keeps_the_size_and_pads_as_asked() -> None:
    kernel = gaussian_kernel(3, 1.0)
    impulse = torch.zeros(1, 2, 5, 5, dtype=torch.float64)
    impulse[:, :, 2, 2] = 1.0
    out = depthwise_conv2d(impulse, kernel, "zeros")
    assert out.shape == impulse.shape and torch.equal(out[0, 1, 1:4, 1:4], kernel)  # the impulse response
    const = torch.full((1, 1, 4, 6), 0.3, dtype=torch.float64)
    torch.testing.assert_close(depthwise_conv2d(const, kernel, "reflect"), const)  # reflect: borders keep their level
    assert depthwise_conv2d(const, kernel, "zeros")[0, 0, 0, 0] < 0.3  # zero padding darkens them
