"""The committed IQA zoo: loads without training, reproduces its recorded test SROCC, and breaks under attack."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from robustgrid.attacks import build_attack
from robustgrid.models.cache import COMMITTED, recipe_hash
from robustgrid.models.data import build_dataset
from robustgrid.models.iqa_task import quantize8, srocc
from robustgrid.models.iqa_zoo import IQA_ZOO, pairwise_rank_loss, predict
from robustgrid.models.tasks import build_task
from robustgrid.models.zoo import ZOO, zoo_target

MIN_TEST_SROCC = 0.6  # every zoo model; recorded (models/weights/iqa-*.json): cnniqa 0.625, resnet 0.809, nfnet 0.811


@pytest.fixture(scope="module")
def test_split():
    return build_dataset("skimage-iqa", split="test")


@pytest.mark.parametrize("name", sorted(IQA_ZOO))
def test_committed_model_reproduces_recorded_srocc(name: str, test_split) -> None:
    target = zoo_target(name, allow_train=False)
    recorded = json.loads((COMMITTED / f"{name}.json").read_text())
    assert target.provenance["weights_source"] == "committed"
    assert recorded["recipe_hash"] == recipe_hash(ZOO.build(name).full_recipe())
    measured = srocc(predict(target.module, test_split).numpy(), test_split.labels.numpy())
    assert measured == pytest.approx(recorded["metrics"]["test_srocc"], abs=2e-3)
    assert measured >= MIN_TEST_SROCC
    assert (target.task, target.score_range, target.lower_better, target.input_shape) == \
        ("iqa", (0.0, 100.0), False, (3, 48, 48))


AIM_TEST_SROCC = 0.8  # issue 12: targets good enough to test the seed methods


SHORT_OF_THE_AIM = {  # measured 2026-12-02 with every textured train tile (19,162 train patches), docs/iqa.md
    "iqa-cnniqa": "recorded test SROCC 0.625: the shallow CNNIQA gains least from more content (0.605 with 36 tiles)",
}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason="aim of issue 12 not "
                                                                         f"met: {SHORT_OF_THE_AIM[n]}"))
                                  if n in SHORT_OF_THE_AIM else n for n in sorted(IQA_ZOO)])
def test_recorded_test_srocc_meets_the_aim(name: str) -> None:
    assert json.loads((COMMITTED / f"{name}.json").read_text())["metrics"]["test_srocc"] >= AIM_TEST_SROCC


def test_zoo_families_and_size() -> None:
    archs = [recipe.arch for _, recipe in IQA_ZOO.values()]
    assert len(set(archs)) == len(archs) >= 3
    assert sum((COMMITTED / f"{name}.safetensors").stat().st_size for name in IQA_ZOO) < 10 * 2**20


def test_whitebox_pgd_destroys_the_ranking(test_split) -> None:
    target = zoo_target("iqa-resnet", allow_train=False)
    idx = torch.randperm(len(test_split), generator=torch.Generator().manual_seed(0))[:64]
    x, y = test_split.images[idx], test_split.labels[idx]
    task = build_task("iqa")
    x_adv = build_attack("pgd", task=task, eps=8 / 255, steps=5)(target.module, x, y, seed=0)
    with torch.no_grad():
        clean = task.outcome(target.module(x), y)
        adv = task.outcome(target.module(quantize8(x_adv)), y)
    s = task.attack_labels([target.module], x, y).numpy()
    # measured on these 64 patches (eps 8/255, 5 steps): SROCC 0.712 clean -> -0.413 attacked, mean shift 82 points
    assert srocc(clean, y.numpy()) > 0.4
    assert srocc(adv, y.numpy()) < 0.2
    assert np.mean(s * (adv - clean)) > 50  # scores pushed toward the far end of the range


def test_pairwise_rank_loss_counts_only_inverted_pairs_beyond_the_gap() -> None:
    y = torch.tensor([10.0, 50.0, 90.0, 91.0])
    assert pairwise_rank_loss(y * 0.5, y).item() == 0.0  # any increasing map of the labels ranks them right
    pred = torch.tensor([50.0, 10.0, 90.0, 80.0])  # pair (0, 1) inverted by 40 points; (2, 3) within the 2-point gap
    assert pairwise_rank_loss(pred, y).item() == pytest.approx(2 * 0.4 / 16)  # both orders of the pair, 16 pairs
    assert pairwise_rank_loss(pred, y, min_gap=0.5).item() == pytest.approx(2 * (0.4 + 0.1) / 16)
