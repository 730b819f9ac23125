"""Square Attack: as strong as torchattacks' Square on the zoo classifier, and task-generic through the objective."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchattacks
from torchattacks.attacks.square import Square as ReferenceSquare

from robustgrid.attacks import build_attack
from robustgrid.attacks.square import pattern, rectangles
from robustgrid.models.data import build_dataset
from robustgrid.models.iqa_task import quantize8
from robustgrid.models.segmenters import segmentation_metrics
from robustgrid.models.tasks import build_task
from robustgrid.models.zoo import zoo_target

TA_NORMS = {"linf": "Linf", "l2": "L2"}


def robust_accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def versus_torchattacks(model, x, y, norm: str, eps: float, queries: int, seeds: int = 1) -> tuple[float, float]:
    """Robust accuracy under ours and under torchattacks' Square at the same budget, each averaged over ``seeds``.

    Our budget counts every query of the search: the start and then one per iteration. torchattacks' n_queries
    counts iterations after its start (plus a clean check it makes first), so n_queries = queries - 1 runs the
    same search length."""
    attack = build_attack("square", norm=norm, eps=eps, steps=queries)
    ours = [robust_accuracy(model, attack.run(model, x, y, seed=s, early_stop=True).x_adv, y) for s in range(seeds)]
    ref = [robust_accuracy(model, torchattacks.Square(model, norm=TA_NORMS[norm], eps=eps, n_queries=queries - 1,
                                                      seed=s)(x, y), y) for s in range(seeds)]
    return float(np.mean(ours)), float(np.mean(ref))


@pytest.mark.slow
@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.05), ("l2", 1.0)])
def test_robust_accuracy_is_within_two_points_of_torchattacks_on_500_images(norm, eps, zoo_resnet, capsys):
    """Means over 3 seeds each. One seed moves robust accuracy by about a point on 500 images (Linf 0.05, 4 seeds,
    2026-12-02: ours 0.372-0.396, torchattacks 0.386-0.402), and another CPU's rounding acts like another seed
    (one seed gave 0.396 against 0.396 on one machine and 0.378 against 0.396 on another, same code), so a
    one-seed 1-point bound failed across machines; 3-seed means differ by about 0.009 in both norms."""
    ds = build_dataset("fashion-mnist", split="test", size=500, seed=0)
    ours, ref = versus_torchattacks(zoo_resnet.module, ds.images, ds.labels, norm, eps, 300, seeds=3)
    with capsys.disabled():
        print(f"\nsquare {norm} {eps:g}, 500 images, 300 queries, 3 seeds: ours {ours:.3f}, torchattacks {ref:.3f}")
    assert abs(ours - ref) <= 0.02, (ours, ref)


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.05), ("l2", 1.0)])
def test_robust_accuracy_is_near_torchattacks_on_a_small_run(norm, eps, zoo_resnet, fmnist_batch):
    """64 images, 60 queries, 3 seeds: one seed of either implementation lands up to 5 images from another here
    (measured: ours 40-45, torchattacks 44-46 of 64 still robust at Linf 0.05), so the means over 3 seeds are held
    to 4 images; the 500-image test above holds 3-seed means to 2 points."""
    ours, ref = versus_torchattacks(zoo_resnet.module, *fmnist_batch, norm, eps, 60, seeds=3)
    clean = robust_accuracy(zoo_resnet.module, *fmnist_batch)
    assert abs(ours - ref) <= 4 / 64 + 1e-9 and ours < clean - 0.1, (ours, ref, clean)


def test_patterns_are_the_papers(zoo_resnet):
    """The L2 patterns equal torchattacks' (its loop over rings) for odd and even sizes, and have unit norm."""
    ref = ReferenceSquare(zoo_resnet.module)
    ref.device = torch.device("cpu")
    for a, b in [(3, 5), (4, 4), (6, 7), (12, 12)]:
        assert torch.allclose(rectangles(a, b), ref.eta_rectangles(a, b), atol=1e-6)
    eta = pattern(7, torch.Generator().manual_seed(0))
    assert eta.norm() == pytest.approx(1.0) and (eta[:3] > 0).all() ^ (eta[:, :3] > 0).all()


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_budget_and_range_hold(norm, zoo_resnet, fmnist_batch):
    x, y = fmnist_batch
    eps = 0.05 if norm == "linf" else 1.0
    adv = build_attack("square", norm=norm, eps=eps, steps=30).run(zoo_resnet.module, x, y, seed=3).x_adv
    d = (adv - x).flatten(1)
    assert (d.abs().amax(1) if norm == "linf" else d.norm(dim=1)).max() <= eps + 1e-5
    assert adv.min() >= 0 and adv.max() <= 1 and d.abs().amax() > 0


def test_square_lowers_a_zoo_segmenters_miou_as_queries_grow():
    from robustgrid.models.data.scenes import make_scenes

    model = zoo_target("scenes-fpn", allow_train=False).module
    x, y = make_scenes("test", range(8))
    res = build_attack("square", eps=8 / 255, steps=80, task="segmentation").run(model, x, y, seed=0,
                                                                                checkpoints=[1, 20, 40, 80])
    mious = [segmentation_metrics(model, x, y)["miou"]] + [segmentation_metrics(model, res.checkpoints[k], y)["miou"]
                                                          for k in (1, 20, 40, 80)]
    assert all(b <= a + 1e-9 for a, b in zip(mious, mious[1:])) and mious[-1] < mious[0] - 0.05, mious


def test_square_shifts_a_zoo_iqa_models_scores_further_as_queries_grow():
    model = zoo_target("iqa-resnet", allow_train=False).module
    data = build_dataset("skimage-iqa", split="test")
    x, y = data.images[:16], data.labels[:16]
    task = build_task("iqa")
    res = build_attack("square", eps=4 / 255, steps=60, task=task).run(model, x, y, seed=0, checkpoints=[10, 30, 60])
    with torch.no_grad():
        clean = task.outcome(model(x), y)
        s = task.attack_labels([model], x, y).numpy()
        shifts = [np.mean(s * (task.outcome(model(quantize8(res.checkpoints[k])), y) - clean)) for k in (10, 30, 60)]
    assert shifts[0] > 0 and all(b > a for a, b in zip(shifts, shifts[1:])), shifts
