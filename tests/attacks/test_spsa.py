"""SPSA: its finite differences estimate the true gradient, and it attacks any task through the objective."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from robustgrid.attacks import build_attack
from robustgrid.attacks.base import AttackResult
from robustgrid.attacks.query import Oracle
from robustgrid.models.data import build_dataset
from robustgrid.models.iqa_task import quantize8
from robustgrid.models.segmenters import segmentation_metrics
from robustgrid.models.tasks import build_task
from robustgrid.models.zoo import zoo_target


def test_the_estimate_points_along_the_autograd_gradient_and_costs_two_queries_a_pair():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 5)).eval()
    x = 0.2 + 0.6 * torch.rand(3, 1, 8, 8)  # away from 0 and 1, so no probe is clipped
    y = torch.tensor([0, 1, 2])
    attack = build_attack("spsa", samples=600, delta=1e-3)
    result = AttackResult(x_adv=x)
    oracle = Oracle(model, x, 10 ** 6, (), result)
    est = attack.estimate(oracle, x, torch.arange(3), y, 600, torch.Generator().manual_seed(0))
    xg = x.clone().requires_grad_(True)
    true = torch.autograd.grad(attack.task.score_objective(model(xg), y).sum(), xg)[0]
    cos = torch.nn.functional.cosine_similarity(est.flatten(1), true.flatten(1))
    assert (cos > 0.85).all(), cos  # Rademacher noise of 64 dims over 600 pairs: expected cosine about 0.95
    assert result.queries == 2 * 600 * 3 and (oracle.spent == 1200).all()


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_spsa_lowers_the_zoo_classifiers_accuracy_within_budget(norm, zoo_resnet, fmnist_batch):
    x, y = fmnist_batch[0][:32], fmnist_batch[1][:32]
    eps = 0.1 if norm == "linf" else 1.5
    res = build_attack("spsa", norm=norm, eps=eps, steps=300, samples=16, lr=0.02 if norm == "linf" else 0.05).run(
        zoo_resnet.module, x, y, seed=0, early_stop=True)
    d = (res.x_adv - x).flatten(1)
    assert (d.abs().amax(1) if norm == "linf" else d.norm(dim=1)).max() <= eps + 1e-5
    with torch.no_grad():
        clean, adv = ((zoo_resnet.module(t).argmax(1) == y).float().mean() for t in (x, res.x_adv))
    assert adv < clean - 0.2, (clean, adv)


def test_spsa_lowers_a_zoo_segmenters_miou_as_queries_grow():
    from robustgrid.models.data.scenes import make_scenes

    model = zoo_target("scenes-deeplab", allow_train=False).module
    x, y = make_scenes("test", range(8))
    attack = build_attack("spsa", eps=16 / 255, steps=150, samples=8, lr=0.02, task="segmentation")
    res = attack.run(model, x, y, seed=0, checkpoints=[1, 50, 100, 150])
    mious = [segmentation_metrics(model, res.checkpoints[k], y)["miou"] for k in (1, 50, 100, 150)]
    assert all(b <= a + 1e-9 for a, b in zip(mious, mious[1:])) and mious[-1] < mious[0] - 0.02, mious


def test_spsa_shifts_a_zoo_iqa_models_scores_further_as_queries_grow():
    model = zoo_target("iqa-cnniqa", allow_train=False).module
    data = build_dataset("skimage-iqa", split="test")
    x, y = data.images[:16], data.labels[:16]
    task = build_task("iqa")
    attack = build_attack("spsa", eps=4 / 255, steps=120, samples=8, task=task)
    res = attack.run(model, x, y, seed=0, checkpoints=[20, 60, 120])
    with torch.no_grad():
        clean = task.outcome(model(x), y)
        s = task.attack_labels([model], x, y).numpy()
        shifts = [np.mean(s * (task.outcome(model(quantize8(res.checkpoints[k])), y) - clean)) for k in (20, 60, 120)]
    assert shifts[0] > 0 and all(b > a for a, b in zip(shifts, shifts[1:])), shifts
