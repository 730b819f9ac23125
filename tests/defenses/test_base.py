"""Registry, the identity defense, the Defended wrapper and BPDA's straight-through gradient."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from robustgrid.core import RobustgridError
from robustgrid.defenses import BPDA, Defended, Purifier, bpda, build_defense, list_defenses
from robustgrid.defenses.gaussian import GaussianSmoothing


class Jitter(Purifier):
    """A randomised, non-differentiable test purifier: rounds to 8 bits after uniform jitter."""

    name = "jitter"
    differentiable = False
    randomized = True

    def purify(self, x: Tensor) -> Tensor:
        return torch.round((x + torch.rand_like(x) / 255) * 255) / 255


def test_registry_lists_builds_and_rejects_unknown_names() -> None:
    names = [name for name, _ in list_defenses()]
    assert {"none", "gaussian", "ncis"} <= set(names)
    assert all(description for _, description in list_defenses())
    with pytest.raises(RobustgridError, match="did you mean gaussian"):
        build_defense("gausian")
    with pytest.raises(RobustgridError, match="no parameter 'sigmaa'; did you mean sigma"):
        build_defense("gaussian", sigmaa=1.0)


def test_describe_names_the_defense_and_its_parameters() -> None:
    assert build_defense("none").describe() == {"name": "none", "differentiable": True, "randomized": False}
    assert build_defense("gaussian", sigma=0.5, iterations=3).describe() == {
        "name": "gaussian", "differentiable": True, "randomized": False, "kernel_size": 3, "sigma": 0.5,
        "iterations": 3}


def test_none_is_the_identity_and_keeps_gradients() -> None:
    x = torch.rand(2, 3, 4, 4, requires_grad=True)
    y = build_defense("none")(x)
    assert torch.equal(y, x)
    (grad,) = torch.autograd.grad(y.sum(), x)
    assert torch.equal(grad, torch.ones_like(x))


def test_input_layout_is_checked() -> None:
    with pytest.raises(RobustgridError, match=r"gaussian expects float NCHW images, got .* shape \(3, 4, 4\)"):
        build_defense("gaussian")(torch.rand(3, 4, 4))
    with pytest.raises(RobustgridError, match="torch.uint8"):
        build_defense("none")(torch.zeros(1, 1, 4, 4, dtype=torch.uint8))


def test_defended_is_model_after_purifier() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 5))
    purifier = GaussianSmoothing(3, 1.0, 2)
    x = torch.rand(4, 3, 8, 8, requires_grad=True)
    defended = Defended(model, purifier)
    torch.testing.assert_close(defended(x), model(purifier(x)), rtol=0, atol=0)
    (grad,) = torch.autograd.grad(defended(x)[:, 1].sum(), x)
    # the exact gradient is the purifier's Jacobian (a symmetric blur) applied to the model's gradient
    z = purifier(x).detach().requires_grad_(True)
    (grad_z,) = torch.autograd.grad(model(z)[:, 1].sum(), z)
    (expected,) = torch.autograd.grad(purifier(x), x, grad_z)
    torch.testing.assert_close(grad, expected)
    assert not torch.allclose(grad, grad_z)


def test_bpda_forward_is_the_purifier_backward_is_the_identity() -> None:
    torch.manual_seed(0)
    purifier = GaussianSmoothing(5, 1.5, 3)
    x = torch.rand(2, 1, 10, 10, requires_grad=True)
    y = bpda(purifier)(x)
    assert torch.equal(y, purifier(x))
    upstream = torch.randn_like(y)
    (grad,) = torch.autograd.grad(y, x, upstream)
    assert torch.equal(grad, upstream)


def test_bpda_through_a_model_uses_the_gradient_at_the_purified_point() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3))
    purifier = Jitter()
    x = torch.rand(3, 1, 4, 4, requires_grad=True)
    torch.manual_seed(1)
    out = Defended(model, bpda(purifier))(x)
    torch.manual_seed(1)
    z = purifier(x).detach().requires_grad_(True)  # same randomness: same purified point
    torch.testing.assert_close(out, model(z), rtol=0, atol=0)
    (grad,) = torch.autograd.grad(out[:, 0].sum(), x)
    (grad_z,) = torch.autograd.grad(model(z)[:, 0].sum(), z)
    assert torch.equal(grad, grad_z)


def test_bpda_keeps_the_randomness_flag_and_describes_its_inner_purifier() -> None:
    wrapped = bpda(Jitter())
    assert isinstance(wrapped, BPDA) and wrapped.randomized and wrapped.differentiable
    assert wrapped.describe()["name"] == "bpda(jitter)"
    assert wrapped.describe()["inner"] == {"name": "jitter", "differentiable": False, "randomized": True}
    assert not bpda(build_defense("none")).randomized
