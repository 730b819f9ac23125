"""SEGA: the smoothed-gradient estimator, both masks, both sign placements, the cost counter, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from robustgrid.attacks import build_attack
from robustgrid.attacks.sega import SEGA, local_variance
from robustgrid.core import RobustgridError


class Quadratic(nn.Module):
    """Quality 50 + sum(a x + b x^2) + c: its input gradient a + 2 b x is known in closed form."""

    def __init__(self, seed: int, shape: tuple[int, ...], c: float) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.a = torch.randn(shape, generator=g)
        self.b = torch.randn(shape, generator=g)
        self.c = c

    def forward(self, x: Tensor) -> Tensor:
        return 50 + self.c + (self.a * x + self.b * x * x).flatten(1).sum(1)

    def grad(self, x: Tensor) -> Tensor:
        return self.a + 2 * self.b * x


def capture(attack: SEGA) -> list[list[Tensor]]:
    """Record the per-source gradients the loop hands to ``combine``."""
    seen: list[list[Tensor]] = []
    combine = attack.combine
    attack.combine = lambda grads, x0: (seen.append([g.clone() for g in grads]), combine(grads, x0))[1]
    return seen


def test_smoothed_gradient_equals_independent_monte_carlo() -> None:
    shape = (3, 4, 4)
    x = torch.rand(2, *shape, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.25
    models = [Quadratic(1, shape, c=30.0), Quadratic(2, shape, c=30.0)]  # clean quality > 50: s = -1
    sigma, n, seed = 0.1, 5, 11
    attack = SEGA(sigma=sigma, samples=n, steps=1, eps=0.1, vis_mask=False, sem_mask=False)
    seen = capture(attack)
    attack.run(models, x, torch.zeros(2), seed=seed)
    # independent: the same generator, one N(0, I) draw per (source, sample), analytic gradient of -q/100
    gen = torch.Generator().manual_seed(seed)
    for k, m in enumerate(models):
        noise = [torch.randn(x.shape, generator=gen) for _ in range(n)]
        expected = torch.stack([-m.grad(x + sigma * u) / 100 for u in noise]).mean(0)
        torch.testing.assert_close(seen[0][k], expected, rtol=1e-5, atol=1e-7)


def test_smoothed_gradient_converges_to_the_gaussian_smoothed_gradient() -> None:
    """For a quadratic, E[grad f(x + sigma u)] = a + 2 b x exactly; 1000 draws land within 4 standard errors."""
    shape = (1, 3, 3)
    x = torch.full((1, *shape), 0.5)
    model = Quadratic(3, shape, c=-30.0)  # quality < 50: s = +1
    sigma, n = 0.2, 1000
    attack = SEGA(sigma=sigma, samples=n, steps=1, eps=0.1, vis_mask=False, sem_mask=False)
    seen = capture(attack)
    attack.run([model], x, torch.zeros(1), seed=0)
    exact = model.grad(x) / 100
    stderr = (2 * model.b.abs() * sigma / np.sqrt(n)) / 100
    assert ((seen[0][0] - exact).abs() <= 4 * stderr + 1e-7).all()


def test_grad_evals_are_n_per_source_per_step_per_image() -> None:
    shape = (3, 4, 4)
    x = torch.rand(5, *shape, generator=torch.Generator().manual_seed(1))
    models = [Quadratic(1, shape, 0.0), Quadratic(2, shape, 0.0)]
    res = build_attack("sega", sigma=0.05, samples=3, steps=4, eps=0.03).run(models, x, torch.zeros(5), seed=0,
                                                                           checkpoints=[2, 4])
    assert res.grad_evals == 3 * 2 * 4 * 5
    assert res.grad_evals_at == {2: 3 * 2 * 2 * 5, 4: 120}
    plain = build_attack("sega-nosmooth", samples=3, steps=4, eps=0.03).run(models, x, torch.zeros(5), seed=0)
    assert plain.grad_evals == 1 * 2 * 4 * 5  # no smoothing: one plain gradient per source


def test_eot_draws_multiply_the_smoothing_draws_and_are_counted_apart() -> None:
    """A run's eot_samples E multiplies SEGA's own N: N * E fresh noise draws per source per step, averaged."""
    shape = (3, 4, 4)
    x = torch.rand(5, *shape, generator=torch.Generator().manual_seed(1))
    models = [Quadratic(1, shape, 30.0), Quadratic(2, shape, 30.0)]  # clean quality > 50: the objective is -q/100
    attack = build_attack("sega", sigma=0.05, samples=3, steps=4, eps=0.03, vis_mask=False, sem_mask=False)
    seen = capture(attack)
    res = attack.run(models, x, torch.zeros(5), seed=7, checkpoints=[2], eot_samples=2)
    assert res.grad_evals == 5 * 4 * 2 * 3 * 2 and res.grad_evals_at == {2: 5 * 2 * 2 * 3 * 2}
    assert attack.samples == 3 and attack.draws_per_step(2) == 6 and attack.draws_per_step() == 3
    gen = torch.Generator().manual_seed(7)  # the first step: 6 draws for source 0, then 6 for source 1
    for k, m in enumerate(models):
        noise = [torch.randn(x.shape, generator=gen) for _ in range(6)]
        expected = torch.stack([-m.grad(x + 0.05 * u) / 100 for u in noise]).mean(0)
        torch.testing.assert_close(seen[0][k], expected, rtol=1e-5, atol=1e-7)
    again = attack.run(models, x, torch.zeros(5), seed=7)  # the options of one run do not stay with the attack
    assert again.grad_evals == 5 * 4 * 2 * 3
    nosmooth = build_attack("sega-nosmooth", samples=3, steps=4, eps=0.03)
    assert nosmooth.run(models, x, torch.zeros(5), seed=0, eot_samples=2).grad_evals == 5 * 4 * 2 * 1 * 2


def test_sign_placements_differ_as_defined() -> None:
    g1 = torch.tensor([3.0, -1.0, 2.0, -4.0]).view(1, 1, 2, 2)
    g2 = torch.tensor([-1.0, -1.0, -3.0, 1.0]).view(1, 1, 2, 2)
    x0 = torch.zeros(1, 1, 2, 2)
    kw = {"vis_mask": False, "sem_mask": False}
    avg_sign = SEGA(sign="average-then-sign", **kw).combine([g1, g2], x0)
    sign_avg = SEGA(sign="sign-then-average", **kw).combine([g1, g2], x0)
    assert avg_sign.flatten().tolist() == [1.0, -1.0, -1.0, -1.0]  # sign((g1 + g2) / 2)
    assert sign_avg.flatten().tolist() == [0.0, -1.0, 0.0, 0.0]    # (sign g1 + sign g2) / 2
    weighted = SEGA(sign="sign-then-average", weights=[3, 1], **kw).combine([g1, g2], x0)
    assert weighted.flatten().tolist() == [0.5, -1.0, 0.5, -0.5]   # 0.75 sign g1 + 0.25 sign g2


def test_nosign_is_the_balanced_gradient_scaled_to_unit_max() -> None:
    g1 = torch.tensor([2.0, -2.0, 0.0, 4.0]).view(1, 1, 2, 2)      # mean |g1| = 2
    g2 = torch.tensor([1.0, 1.0, -1.0, 1.0]).view(1, 1, 2, 2)      # mean |g2| = 1
    d = SEGA(signed=False, vis_mask=False, sem_mask=False).combine([g1, g2], torch.zeros(1, 1, 2, 2))
    raw = np.array([1.0, -1.0, 0.0, 2.0]) / 2 + np.array([1.0, 1.0, -1.0, 1.0]) / 2
    np.testing.assert_allclose(d.flatten().numpy(), raw / np.abs(raw).max())


def reference_local_variance(img: np.ndarray, window: int) -> np.ndarray:
    """Loop-based variance of the luma over reflect-padded windows."""
    luma = 0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2]
    r = window // 2
    p = np.pad(luma, r, mode="reflect")
    out = np.zeros_like(luma)
    for i in range(luma.shape[0]):
        for j in range(luma.shape[1]):
            out[i, j] = p[i:i + window, j:j + window].var()
    return out


def test_visual_mask_zeroes_exactly_the_flat_positions() -> None:
    gen = torch.Generator().manual_seed(0)
    x0 = torch.full((1, 3, 10, 12), 0.5)
    x0[..., 6:] = torch.rand(1, 3, 10, 6, generator=gen)  # textured right part, flat left part
    var = reference_local_variance(x0[0].double().numpy(), 3)
    np.testing.assert_allclose(local_variance(x0, 3)[0, 0].numpy(), var, atol=1e-6)
    attack = SEGA(vis_window=3, vis_threshold=1e-3, sem_mask=False)
    g = torch.randn(1, 3, 10, 12, generator=gen)
    d = attack.combine([g], x0)
    flat = var < 1e-3
    assert flat[:, :4].all() and not flat[:, 8:].any()  # both kinds of region exist
    assert (d[0][:, torch.from_numpy(flat)] == 0).all()
    assert torch.equal(d[0][:, torch.from_numpy(~flat)], g.sign()[0][:, torch.from_numpy(~flat)])


def test_agreement_mask_zeroes_exactly_where_the_vote_is_below_tau() -> None:
    gen = torch.Generator().manual_seed(2)
    grads = [torch.randn(2, 3, 5, 5, generator=gen) for _ in range(4)]
    x0 = torch.rand(2, 3, 5, 5, generator=gen)
    for tau, keep_if in ((0.5, lambda v: v >= 2), (0.75, lambda v: v == 4)):
        d = SEGA(vis_mask=False, tau=tau).combine(grads, x0)
        votes = np.abs(sum(np.sign(g.numpy()) for g in grads))  # 4 = unanimous, 2 = three to one, 0 = a tie
        keep = keep_if(votes)
        assert (d.numpy()[~keep] == 0).all()
        np.testing.assert_array_equal(d.numpy()[keep], np.sign(sum(g.numpy() for g in grads))[keep])
        assert 0 < keep.mean() < 1


def test_masks_and_budget_hold_in_a_full_run() -> None:
    shape = (3, 8, 8)
    gen = torch.Generator().manual_seed(4)
    x = torch.full((2, *shape), 0.4)
    x[..., 4:] = torch.rand(2, 3, 8, 4, generator=gen)
    models = [Quadratic(5, shape, 10.0), Quadratic(6, shape, 10.0)]
    attack = build_attack("sega", eps=8 / 255, steps=5, samples=2, sigma=0.05)
    x_adv = attack.run(models, x, torch.zeros(2), seed=0).x_adv
    delta = x_adv - x
    assert delta.abs().max() <= 8 / 255 + 1e-6 and delta.abs().max() > 0
    flat = local_variance(x, 5) < 4e-4
    assert (delta.abs().amax(1, keepdim=True)[flat] == 0).all()  # nothing ever added in flat regions


@pytest.mark.parametrize(("params", "match"), [
    ({"sigma": 0.0}, "sigma must be a finite number > 0"),
    ({"sigma": -0.1}, "sigma must be a finite number > 0"),
    ({"samples": 0}, r"samples \(noise draws N\) must be an integer >= 1"),
    ({"sign": "both"}, "sign placement must be one of average-then-sign, sign-then-average, got 'both'"),
    ({"tau": 1.5}, r"tau must be a finite number in \[0, 1\], got 1.5"),
    ({"weights": [1, -1]}, "weights must be non-negative"),
])
def test_bad_parameters_are_one_line_errors(params: dict, match: str) -> None:
    with pytest.raises(RobustgridError, match=match) as info:
        build_attack("sega", **params)
    assert "\n" not in str(info.value)


def test_weights_must_match_the_sources() -> None:
    shape = (3, 4, 4)
    models = [Quadratic(1, shape, 0.0), Quadratic(2, shape, 0.0)]
    with pytest.raises(RobustgridError, match="3 weights but the attack has 2 sources"):
        build_attack("sega", weights=[1, 1, 1], steps=1).run(models, torch.rand(1, *shape), torch.zeros(1), seed=0)


def test_sega_is_registered_for_iqa_only() -> None:
    from robustgrid.attacks import ATTACKS

    for name in ("sega", "sega-nosmooth", "sega-nosign", "sega-nomask"):
        assert ATTACKS.entry(name).meta["tasks"] == ("iqa",)
