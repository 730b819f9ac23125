"""The IQA task: mid-point direction, objective, dataset-level metrics against scipy and by hand, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from robustgrid.core import RobustgridError
from robustgrid.models.iqa_models import QualityScale, iqa_target
from robustgrid.models.iqa_task import image_ssim, krocc, plcc, quantize8, robustness_r, score_stability, srocc
from robustgrid.models.tasks import build_task

CLEAN = np.array([80.0, 20.0, 55.0, 40.0, 90.0, 10.0])
ADV = np.array([70.0, 30.0, 50.0, 45.0, 60.0, 12.0])
MOS = np.array([75.0, 25.0, 60.0, 35.0, 85.0, 5.0])


class Constant(nn.Module):
    def __init__(self, values: list[float]) -> None:
        super().__init__()
        self.values = torch.tensor(values)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.values[: len(x)] + 0 * x.flatten(1).sum(1)


def test_correlations_match_scipy_and_hand_values() -> None:
    assert srocc(CLEAN, ADV) == pytest.approx(stats.spearmanr(CLEAN, ADV)[0])
    assert plcc(CLEAN, ADV) == pytest.approx(stats.pearsonr(CLEAN, ADV)[0])
    assert krocc(CLEAN, ADV) == pytest.approx(stats.kendalltau(CLEAN, ADV)[0])
    # by hand: ranks 5 2 4 3 6 1 vs 5 2 4 3 6 1 -> identical orderings
    assert srocc(CLEAN, MOS) == pytest.approx(1.0) and krocc(CLEAN, MOS) == pytest.approx(1.0)
    assert srocc([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert plcc([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert math.isnan(srocc([1, 1, 1], [1, 2, 3]))  # undefined on a constant array


def test_robustness_r_formula_and_argument_order() -> None:
    # p=80 -> max(80, 20)=80 over |70-80|=10 ; p=20 -> max(20, 80)=80 over 10 ; ...
    expected = np.mean(np.log10(np.maximum(CLEAN, 100 - CLEAN) / (np.abs(ADV - CLEAN) + 1e-3)))
    assert robustness_r(CLEAN, ADV) == pytest.approx(expected)
    assert robustness_r([80.0], [70.0]) == pytest.approx(math.log10(80 / 10.001))
    assert robustness_r([80.0], [70.0]) != pytest.approx(robustness_r([70.0], [80.0]))  # order matters
    assert robustness_r([50.0], [50.0]) == pytest.approx(math.log10(50 / 1e-3))  # unchanged: finite


def test_metrics_are_named_and_dataset_level() -> None:
    m = build_task("iqa").metrics(ADV, MOS, CLEAN)
    assert m["srocc"] == pytest.approx(stats.spearmanr(ADV, MOS)[0])
    assert m["plcc"] == pytest.approx(stats.pearsonr(ADV, MOS)[0])
    assert m["clean_srocc"] == pytest.approx(1.0)
    assert m["srocc_clean_adv"] == pytest.approx(stats.spearmanr(CLEAN, ADV)[0])
    assert m["krocc_clean_adv"] == pytest.approx(stats.kendalltau(CLEAN, ADV)[0])
    assert m["rmse_shift"] == pytest.approx(np.sqrt(np.mean((ADV - CLEAN) ** 2)))
    assert m["mae_shift"] == pytest.approx(np.mean(np.abs(ADV - CLEAN)))
    assert m["robustness_r"] == pytest.approx(robustness_r(CLEAN, ADV))
    assert m["score_stability"] == pytest.approx(score_stability(CLEAN, ADV))
    task = build_task("iqa")
    assert (task.metric, task.success_type, task.quantize) == ("score_stability", False, True)
    assert task.columns == ("srocc", "plcc")


def test_score_stability_formula_bounds_and_monotonicity() -> None:
    # by hand: shift over the largest possible shift, max(p - 0, 100 - p)
    ratios = np.abs(ADV - CLEAN) / np.maximum(CLEAN, 100 - CLEAN)
    assert score_stability(CLEAN, ADV) == pytest.approx(1 - ratios.mean())
    assert score_stability(CLEAN, CLEAN) == 1.0
    assert score_stability([80.0, 30.0], [0.0, 100.0]) == 0.0  # every score at the far end of the range
    shifts = [score_stability(CLEAN, CLEAN + t * np.sign(50 - CLEAN)) for t in (0.0, 1.0, 3.0, 6.0)]
    assert all(a > b for a, b in zip(shifts, shifts[1:], strict=False))


def test_score_stability_falls_as_eps_grows_on_a_zoo_model() -> None:
    """White-box I-FGSM on a committed zoo model: the primary metric falls at every larger budget."""
    from robustgrid.attacks import build_attack
    from robustgrid.models.data import build_dataset
    from robustgrid.models.zoo import zoo_target

    target = zoo_target("iqa-resnet", allow_train=False)
    data = build_dataset("skimage-iqa", split="test", size=48)
    task = build_task("iqa")
    with torch.no_grad():
        clean = task.outcome(target.module(data.images), data.labels)
    values = []
    for eps in (0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255):
        attack = build_attack("ifgsm", eps=eps, steps=5, task="iqa")
        x_adv = quantize8(attack.run(target.module, data.images, data.labels, seed=0).x_adv)
        with torch.no_grad():
            adv = task.outcome(target.module(x_adv), data.labels)
        values.append(task.metrics(adv, data.labels.numpy(), clean)["score_stability"])
    assert values[0] == pytest.approx(1.0, abs=2e-3)  # only the 8-bit rounding moves clean scores
    assert all(a > b for a, b in zip(values, values[1:], strict=False)), values


def test_direction_follows_the_sources_mean_clean_score() -> None:
    task = build_task("iqa")
    x = torch.zeros(4, 3, 2, 2)
    s = task.attack_labels([Constant([90, 60, 50, 10]), Constant([20, 30, 50, 10])], x, torch.zeros(4))
    assert s.tolist() == [-1.0, 1.0, 1.0, 1.0]  # means 55, 45, 50 (middle: raise), 10
    out = torch.tensor([80.0, 20.0, 50.0, 0.0])
    assert task.objective(out, s).tolist() == pytest.approx([-0.8, 0.2, 0.5, 0.0])  # s * q / range


def test_quality_scale_maps_range_and_direction() -> None:
    x = torch.zeros(3, 1, 1, 1)
    raw = Constant([0.0, 25.0, 100.0])
    assert QualityScale(raw, (0, 100), lower_better=True)(x).tolist() == [100.0, 75.0, 0.0]  # PIQE-like
    scale = QualityScale(Constant([-1.0, 0.0, 0.1]), (-1.0, 0.1), lower_better=False)
    q = scale(x)
    assert q.tolist() == pytest.approx([0.0, 100 / 1.1, 100.0])
    assert scale.raw(q).tolist() == pytest.approx([-1.0, 0.0, 0.1])


def test_target_without_range_is_an_error() -> None:
    with pytest.raises(RobustgridError, match="declares no score_range") as info:
        iqa_target("mine", Constant([1.0]), None, False, (3, 8, 8))
    assert "\n" not in str(info.value)
    with pytest.raises(RobustgridError, match="lo < hi"):
        iqa_target("mine", Constant([1.0]), (5, 5), False, (3, 8, 8))

    class Bare:
        name, score_range = "bare", None

    with pytest.raises(RobustgridError, match="'bare' declares no score_range"):
        build_task("iqa").check_target(Bare())


def test_quantize8_and_ssim() -> None:
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    q = quantize8(x)
    assert torch.equal(q * 255, torch.round(q * 255)) and (q - x).abs().max() <= 0.5 / 255 + 1e-7
    smooth = torch.linspace(0.2, 0.8, 32).view(1, 1, 1, 32).expand(4, 3, 32, 32)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    same, mild, strong = (image_ssim(smooth, (smooth + a * noise).clamp(0, 1)) for a in (0.0, 0.02, 0.1))
    assert same.shape == (4,) and np.allclose(same, 1.0, atol=1e-4)
    assert (strong < 0.5).all() and (strong < mild).all() and (mild < 0.97).all()  # measured 0.38 and 0.94
    noisy = (x + 0.1 * noise).clamp(0, 1)
    pairs = build_task("iqa").pair_metrics(x, noisy)
    assert set(pairs) >= {"ssim", "linf", "l2"} and np.allclose(pairs["ssim"], image_ssim(x, quantize8(noisy)))


def test_bad_labels_are_rejected() -> None:
    with pytest.raises(RobustgridError, match="IQA labels must be float scores"):
        build_task("iqa").check_batch(torch.zeros(2, 3, 4, 4), torch.zeros(2, dtype=torch.long))


def test_srocc_and_plcc_equal_scipy_with_and_without_ties():
    rng = np.random.default_rng(0)
    for n, decimals in [(2, None), (7, 0), (50, 1), (300, None)]:
        a = rng.normal(size=n)
        b = a + rng.normal(size=n)
        if decimals is not None:  # many ties: average ranks must match scipy's
            a, b = np.round(a, decimals), np.round(b, decimals)
        assert srocc(a, b) == pytest.approx(stats.spearmanr(a, b)[0], abs=1e-12)
        assert plcc(a, b) == pytest.approx(stats.pearsonr(a, b)[0], abs=1e-12)
