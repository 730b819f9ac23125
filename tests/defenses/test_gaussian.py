"""Gaussian smoothing: a normalised kernel, exact gradients, and the noise reduction theory predicts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustgrid.defenses import build_defense
from robustgrid.defenses.gaussian import GaussianSmoothing
from robustgrid.models.filters import gaussian_kernel
from tests.defenses.finite_diff import check_gradient


def reference_kernel_1d(k: int, sigma: float) -> np.ndarray:
    """The normalised 1-D Gaussian; the 2-D kernel is its outer product (independent numpy reference)."""
    a = np.arange(k) - (k - 1) / 2
    g = np.exp(-(a**2) / (2 * sigma**2))
    return g / g.sum()


@pytest.mark.parametrize(("k", "sigma"), [(3, 0.5), (5, 1.0), (7, 1.5)])
def test_kernel_is_normalised_gaussian(k: int, sigma: float) -> None:
    kernel = gaussian_kernel(k, sigma)
    assert kernel.shape == (k, k)
    assert float(kernel.sum()) == pytest.approx(1.0, abs=1e-12)
    g = reference_kernel_1d(k, sigma)
    np.testing.assert_allclose(kernel.numpy(), np.outer(g, g), rtol=1e-12)


def test_constant_image_is_unchanged_and_range_kept() -> None:
    gs = GaussianSmoothing(kernel_size=5, sigma=1.5, iterations=3)
    const = torch.full((2, 3, 16, 16), 0.37)
    torch.testing.assert_close(gs(const), const, atol=1e-6, rtol=0)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    y = gs(x)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    assert y.std() < 0.5 * x.std()  # it does smooth


@pytest.mark.parametrize("iterations", [1, 2])
def test_variance_of_sign_noise_shrinks_as_theory_predicts(iterations: int) -> None:
    """Var(G^T * r) = sum((G * ... * G)^2) Var(r) for i.i.d. r; for T = 1 that is sum(G^2)."""
    eps, k, sigma = 0.03, 5, 1.0
    gen = torch.Generator().manual_seed(0)
    noise = eps * (2 * torch.randint(0, 2, (1, 1, 600, 600), generator=gen).double() - 1)
    out = GaussianSmoothing(k, sigma, iterations)(noise)[..., 20:-20, 20:-20]  # away from reflected borders
    g = reference_kernel_1d(k, sigma)
    for _ in range(iterations - 1):
        g = np.convolve(g, reference_kernel_1d(k, sigma))  # T-fold self-convolution, still separable
    predicted = float((np.outer(g, g) ** 2).sum())
    assert predicted == pytest.approx({1: 0.0825, 2: 0.0421}[iterations], abs=5e-4)
    assert float(out.var() / eps**2) == pytest.approx(predicted, rel=0.04)
    assert float(out.mean()) == pytest.approx(0.0, abs=5e-4)


def test_gradient_matches_finite_differences() -> None:
    gs = GaussianSmoothing(kernel_size=3, sigma=0.8, iterations=2)
    grad = check_gradient(gs, torch.rand(1, 2, 6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))
    assert grad.abs().min() > 0  # every pixel influences the output: nothing is detached


@pytest.mark.parametrize(("params", "name"), [
    ({"sigma": -1.0}, "sigma"), ({"sigma": 0.0}, "sigma"), ({"sigma": float("nan")}, "sigma"),
    ({"sigma": float("inf")}, "sigma"), ({"sigma": "1"}, "sigma"),
    ({"kernel_size": 4}, "kernel_size"), ({"kernel_size": 1}, "kernel_size"), ({"kernel_size": 5.0}, "kernel_size"),
    ({"kernel_size": True}, "kernel_size"), ({"iterations": 0}, "iterations"), ({"iterations": -2}, "iterations"),
    ({"iterations": 1.5}, "iterations"),
])
def test_bad_params_name_the_parameter(params: dict, name: str) -> None:
    from robustgrid.core import RobustgridError

    with pytest.raises(RobustgridError, match=rf"^gaussian: {name} must be .*, got ") as err:
        build_defense("gaussian", **params)
    assert "\n" not in str(err.value)


def test_too_small_image_is_a_clear_error() -> None:
    from robustgrid.core import RobustgridError

    with pytest.raises(RobustgridError, match="kernel_size 5"):
        GaussianSmoothing(kernel_size=5)(torch.rand(1, 1, 2, 8))
