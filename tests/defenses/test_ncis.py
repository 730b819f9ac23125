"""NCIS: the three combination modes, exact gradients, bad parameters, and the zoo's committed BSNs."""

from __future__ import annotations

import functools
import json

import pytest
import torch
from torch import Tensor, nn

from robustgrid.core import RobustgridError
from robustgrid.defenses import build_defense
from robustgrid.defenses.bsn import BlindSpotNet
from robustgrid.defenses.bsn_zoo import BSN_ZOO
from robustgrid.defenses.gaussian import GaussianSmoothing, smooth
from robustgrid.defenses.ncis import NCIS
from robustgrid.models.cache import COMMITTED
from robustgrid.models.filters import gaussian_kernel
from tests.defenses.finite_diff import check_gradient


class Affine(nn.Module):
    """A stand-in 'BSN' with a known output, to check how NCIS composes it with smoothing."""

    in_chans = 1

    def forward(self, x: Tensor) -> Tensor:
        return 0.5 * x + 0.2


@pytest.mark.parametrize("iterations", [1, 3])
def test_modes_compose_bsn_and_smoothing_as_documented(iterations: int) -> None:
    x = torch.rand(2, 1, 9, 9, generator=torch.Generator().manual_seed(0))
    gs = GaussianSmoothing(kernel_size=3, sigma=0.7, iterations=1)
    f = Affine()
    steps = {"bsn": f, "alternate": lambda v: f(gs(v)), "mix": lambda v: 0.3 * f(v) + 0.7 * gs(v)}
    for mode, step in steps.items():
        expected = x
        for _ in range(iterations):
            expected = step(expected)
        ncis = NCIS(bsn=Affine(), mode=mode, iterations=iterations, alpha=0.3, kernel_size=3, sigma=0.7)
        torch.testing.assert_close(ncis(x), expected.clamp(0, 1))


def test_one_channel_bsn_is_applied_to_each_colour_channel() -> None:
    torch.manual_seed(0)
    bsn = BlindSpotNet(in_chans=1, width=4, depth=3)
    ncis = NCIS(bsn=bsn, in_chans=3, mode="bsn")
    x = torch.rand(2, 3, 12, 12)
    expected = torch.cat([bsn(x[:, c:c + 1]) for c in range(3)], dim=1).clamp(0, 1)
    torch.testing.assert_close(ncis(x), expected)
    with pytest.raises(RobustgridError, match="expects 3-channel images, got 1"):
        ncis(x[:, :1])
    with pytest.raises(RobustgridError, match="in_chans=1 does not fit a BSN trained on 3-channel"):
        NCIS(bsn=BlindSpotNet(in_chans=3, width=4, depth=3), in_chans=1)


def centred_bsn() -> BlindSpotNet:
    """A small random BSN in double precision whose outputs lie inside [0, 1] (so the final clamp is inactive)."""
    torch.manual_seed(0)
    bsn = BlindSpotNet(in_chans=1, width=4, depth=3).double()
    with torch.no_grad():
        bsn.head[-1].bias.add_(0.5 - bsn(torch.full((1, 1, 5, 5), 0.5, dtype=torch.float64)).mean())
    return bsn


@pytest.mark.parametrize("mode", ["bsn", "alternate", "mix"])
def test_gradient_matches_finite_differences(mode: str) -> None:
    ncis = NCIS(bsn=centred_bsn(), mode=mode, iterations=2, kernel_size=3, sigma=1.0)
    x = 0.25 + 0.5 * torch.rand(1, 1, 7, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    grad = check_gradient(ncis, x)
    assert int((grad != 0).sum()) == 42  # nothing is detached: every pixel carries gradient


def test_parameters_are_frozen_but_inputs_get_gradients() -> None:
    ncis = NCIS(bsn=BlindSpotNet(in_chans=1, width=4, depth=3))
    assert not any(p.requires_grad for p in ncis.parameters()) and not ncis.bsn.training
    assert ncis.describe()["bsn"]["arch"] == "fbi-net-bsn"
    assert ncis.describe()["mode"] == "alternate" and ncis.describe()["iterations"] == 2
    assert ncis.describe()["kernel_size"] == 3 and ncis.describe()["sigma"] == 1.0  # BSN after GS by default
    assert "alpha" not in ncis.describe()  # parameters the mode ignores do not split result keys


@pytest.mark.parametrize(("params", "name"), [
    ({"mode": "median"}, "mode"), ({"iterations": 0}, "iterations"), ({"iterations": 2.0}, "iterations"),
    ({"alpha": 1.5}, "alpha"), ({"alpha": float("nan")}, "alpha"), ({"kernel_size": 2}, "kernel_size"),
    ({"sigma": 0}, "sigma"), ({"in_chans": 0}, "in_chans"),
])
def test_bad_params_name_the_parameter(params: dict, name: str) -> None:
    with pytest.raises(RobustgridError, match=rf"^ncis: {name} must be .*, got ") as err:
        build_defense("ncis", bsn=Affine(), **params)
    assert "\n" not in str(err.value)


def test_bad_recipe_and_conflicting_sources_are_errors() -> None:
    with pytest.raises(RobustgridError, match="bsn recipe: width must be an integer >= 1, got 0"):
        build_defense("ncis", recipe={"width": 0})
    with pytest.raises(RobustgridError, match="bsn recipe has no parameter 'widht'; did you mean width"):
        build_defense("ncis", recipe={"widht": 8})
    with pytest.raises(RobustgridError, match="either bsn or dataset"):
        build_defense("ncis", bsn=Affine(), dataset="fashion-mnist")
    with pytest.raises(RobustgridError, match="unknown unlabeled image set 'fashion-mnst'; did you mean fashion-mnist"):
        build_defense("ncis", dataset="fashion-mnst")


@functools.cache
def committed_ncis(dataset: str) -> NCIS:
    """NCIS with the zoo's committed BSN for ``dataset``, its default; never trains (fails if weights are stale)."""
    return build_defense("ncis", dataset=dataset, allow_train=False)


class BlindSpotGaussian(nn.Module):
    """3x3 Gaussian smoothing (sigma 1) without its centre tap: a blind-spot smoother with no training."""

    def forward(self, x: Tensor) -> Tensor:
        kernel = gaussian_kernel(3, 1.0)
        kernel[1, 1] = 0
        return smooth(x, kernel / kernel.sum())


@pytest.mark.parametrize("dataset", sorted(BSN_ZOO))
def test_committed_weights_load_without_training_and_reproduce_their_test_mse(dataset: str) -> None:
    import robustgrid.defenses.bsn_training as training

    recipe = BSN_ZOO[dataset].recipe
    try:
        test = training.unlabeled_images(dataset, "test", recipe.test_images, recipe.seed)
    except RobustgridError as exc:
        pytest.skip(f"{dataset} not available: {exc}")
    recorded = json.loads((COMMITTED / f"{training.weights_name(dataset)}.json").read_text())
    assert (COMMITTED / f"{training.weights_name(dataset)}.safetensors").stat().st_size < 2_000_000

    ncis = committed_ncis(dataset)
    bsn = ncis.describe()["bsn"]
    assert (bsn["recipe_hash"], bsn["sha256"]) == (recorded["recipe_hash"], recorded["sha256"])
    assert ncis.in_chans == test.shape[1]
    metrics = training.evaluate_bsn(ncis.bsn, test, recipe.noise_std, recipe.seed)
    assert metrics["mse"] == pytest.approx(recorded["metrics"]["test_mse"], rel=1e-3)
    assert metrics["clean_mse"] == pytest.approx(recorded["metrics"]["test_clean_mse"], rel=1e-3)
    # a trained BSN predicts pixels from context far better than the mean image, and better than a hand-made
    # smoother that also never sees the pixel (measured: 0.0078 vs 0.0172, 0.0055 vs 0.0057, 0.0018 vs 0.0019)
    assert metrics["clean_mse"] < 0.15 * float(test.var())
    reference = training.evaluate_bsn(BlindSpotGaussian(), test, recipe.noise_std, recipe.seed)
    assert reference["noise_mse"] == metrics["noise_mse"]  # the same noise draws
    assert metrics["clean_mse"] < reference["clean_mse"]


@pytest.mark.parametrize("dataset", sorted(BSN_ZOO))
def test_committed_purifier_changes_clean_images_little_and_passes_gradient(dataset: str) -> None:
    from robustgrid.defenses.unlabeled import unlabeled_images

    ncis = committed_ncis(dataset)
    x = unlabeled_images(dataset, "test", 32, seed=1)
    with torch.no_grad():
        change = float((ncis(x) - x).abs().mean())
    assert 0 < change < 0.08  # measured (mode alternate): fashion-mnist 0.065, fmnist-scenes 0.054, skimage-iqa 0.043
    xg = x[:4].clone().requires_grad_(True)
    w = torch.randn(xg.shape, generator=torch.Generator().manual_seed(0))
    (grad,) = torch.autograd.grad((ncis(xg) * w).sum(), xg)
    assert float((grad != 0).float().mean()) > 0.9  # nothing is detached: almost every pixel carries gradient
