"""SEGA: the smoothed-gradient estimator, the content mask and the agreement variant, sign placements, cost, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from robustgrid.attacks import build_attack
from robustgrid.attacks.sega import SEGA
from robustgrid.attacks.sega_masks import content_mask, local_variance
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


def test_pixel_content_mask_zeroes_exactly_the_flat_positions() -> None:
    """block=1 is the pixel-wise rule: 0 exactly where the clean image's local luma variance is below threshold."""
    gen = torch.Generator().manual_seed(0)
    x0 = torch.full((1, 3, 10, 12), 0.5)
    x0[..., 6:] = torch.rand(1, 3, 10, 6, generator=gen)  # textured right part, flat left part
    var = reference_local_variance(x0[0].double().numpy(), 3)
    np.testing.assert_allclose(local_variance(x0, 3)[0, 0].numpy(), var, atol=1e-6)
    attack = SEGA(vis_window=3, vis_threshold=1e-3, mask_block=1)
    g = torch.randn(1, 3, 10, 12, generator=gen)
    d = attack.combine([g], x0)
    flat = var < 1e-3
    assert flat[:, :4].all() and not flat[:, 8:].any()  # both kinds of region exist
    assert (d[0][:, torch.from_numpy(flat)] == 0).all()
    assert torch.equal(d[0][:, torch.from_numpy(~flat)], g.sign()[0][:, torch.from_numpy(~flat)])


def reference_tile_mask(img: np.ndarray, window: int, threshold: float, block: int, dilate: int) -> np.ndarray:
    """Loop-based content mask: mean local variance per tile (partial edge tiles too), threshold, dilate tiles."""
    var = reference_local_variance(img, window)
    h, w = var.shape
    th, tw = -(-h // block), -(-w // block)
    keep = np.array([[var[i * block:(i + 1) * block, j * block:(j + 1) * block].mean() >= threshold
                      for j in range(tw)] for i in range(th)])
    grown = keep.copy()
    for i in range(th):
        for j in range(tw):
            grown[i, j] = keep[max(i - dilate, 0):i + dilate + 1, max(j - dilate, 0):j + dilate + 1].any()
    return np.kron(grown, np.ones((block, block)))[:h, :w]


@pytest.mark.parametrize(("block", "dilate"), [(4, 0), (4, 1), (5, 0)])
def test_content_mask_keeps_textured_tiles_and_drops_flat_ones(block: int, dilate: int) -> None:
    """A flat canvas with one textured square object: kept tiles cover the object (plus the dilation margin)."""
    gen = torch.Generator().manual_seed(1)
    x0 = torch.full((2, 3, 24, 22), 0.6)
    x0[:, :, 8:16, 4:12] = torch.rand(2, 3, 8, 8, generator=gen)
    mask = content_mask(x0, 3, 1e-3, block, dilate)
    expected = reference_tile_mask(x0[0].double().numpy(), 3, 1e-3, block, dilate)
    np.testing.assert_array_equal(mask[0, 0].numpy(), expected)
    assert mask[0, 0, 8:16, 4:12].all() and mask[0, 0, :, 20:].sum() == 0  # the object kept, far flat sky dropped
    assert 0 < mask.mean() < 1


def test_content_mask_forms_regions_where_the_agreement_mask_is_salt_and_pepper() -> None:
    """On real test patches the content mask has a few connected regions; a sign-agreement map has many."""
    from scipy import ndimage

    from robustgrid.attacks.sega_masks import agreement_mask
    from robustgrid.models.data.registry import build_dataset

    x0 = build_dataset("skimage-iqa", "test", size=16).images
    gen = torch.Generator().manual_seed(0)
    grads = [torch.randn(x0.shape, generator=gen) for _ in range(2)]
    content = content_mask(x0, 5, 4e-4)[:, 0].numpy()
    agree = agreement_mask(grads, torch.full((2,), 0.5), 0.5)[:, 0].numpy()  # one channel's map
    n_content = [ndimage.label(m)[1] for m in content]
    n_agree = [ndimage.label(m)[1] for m in agree]
    assert max(n_content) <= 6 and min(n_agree) > 30
    per_tile = content.reshape(16, 6, 8, 6, 8)
    assert (per_tile.min(axis=(2, 4)) == per_tile.max(axis=(2, 4))).all()  # constant on every 8 x 8 tile


def test_with_two_sources_the_agreement_mask_makes_the_sign_placements_identical() -> None:
    """tau = 0.5 with K = 2 or 3 keeps only unanimous pixels, where both placements agree; K = 4 keeps 3:1 votes."""
    gen = torch.Generator().manual_seed(3)
    x0 = torch.rand(2, 3, 6, 6, generator=gen)
    for k, same in ((2, True), (3, True), (4, False)):
        grads = [torch.randn(2, 3, 6, 6, generator=gen) for _ in range(k)]
        a = build_attack("sega-agreement", vis_mask=False, sign="average-then-sign").combine(grads, x0)
        b = build_attack("sega-agreement", vis_mask=False, sign="sign-then-average").combine(grads, x0)
        assert torch.equal(a, b) == same
        plain_a = build_attack("sega", vis_mask=False, sign="average-then-sign").combine(grads, x0)
        plain_b = build_attack("sega", vis_mask=False, sign="sign-then-average").combine(grads, x0)
        assert not torch.equal(plain_a, plain_b)  # without the agreement mask the placements differ for any K


def test_agreement_mask_zeroes_exactly_where_the_vote_is_below_tau() -> None:
    gen = torch.Generator().manual_seed(2)
    grads = [torch.randn(2, 3, 5, 5, generator=gen) for _ in range(4)]
    x0 = torch.rand(2, 3, 5, 5, generator=gen)
    for tau, keep_if in ((0.5, lambda v: v >= 2), (0.75, lambda v: v == 4)):
        d = SEGA(vis_mask=False, sem_mask=True, tau=tau).combine(grads, x0)
        votes = np.abs(sum(np.sign(g.numpy()) for g in grads))  # 4 = unanimous, 2 = three to one, 0 = a tie
        keep = keep_if(votes)
        assert (d.numpy()[~keep] == 0).all()
        np.testing.assert_array_equal(d.numpy()[keep], np.sign(sum(g.numpy() for g in grads))[keep])
        assert 0 < keep.mean() < 1


def test_masks_and_budget_hold_in_a_full_run() -> None:
    shape = (3, 8, 16)
    gen = torch.Generator().manual_seed(4)
    x = torch.full((2, *shape), 0.4)
    x[..., 8:] = torch.rand(2, 3, 8, 8, generator=gen)
    models = [Quadratic(5, shape, 10.0), Quadratic(6, shape, 10.0)]
    attack = build_attack("sega", eps=8 / 255, steps=5, samples=2, sigma=0.05, mask_block=4)
    x_adv = attack.run(models, x, torch.zeros(2), seed=0).x_adv
    delta = x_adv - x
    assert delta.abs().max() <= 8 / 255 + 1e-6 and delta.abs().max() > 0
    keep = content_mask(x, 5, 4e-4, 4)
    assert not keep[..., :4].any() and keep[..., 8:].all()
    assert (delta.abs().amax(1, keepdim=True)[keep == 0] == 0).all()  # nothing ever added in flat tiles


@pytest.mark.parametrize(("params", "match"), [
    ({"sigma": 0.0}, "sigma must be a finite number > 0"),
    ({"sigma": -0.1}, "sigma must be a finite number > 0"),
    ({"samples": 0}, r"samples \(noise draws N\) must be an integer >= 1"),
    ({"sign": "both"}, "sign placement must be one of average-then-sign, sign-then-average, got 'both'"),
    ({"tau": 1.5}, r"tau must be a finite number in \[0, 1\], got 1.5"),
    ({"weights": [1, -1]}, "weights must be non-negative"),
    ({"mask_block": 0}, "mask_block must be an integer >= 1, got 0"),
    ({"mask_dilate": -1}, "mask_dilate must be an integer >= 0, got -1"),
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

    for name in ("sega", "sega-nosmooth", "sega-nosign", "sega-nomask", "sega-agreement"):
        assert ATTACKS.entry(name).meta["tasks"] == ("iqa",)
