"""HopSkipJump: as strong as ART's, from the top-1 label alone, and an image counts as broken only within eps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from robustgrid.attacks import build_attack
from robustgrid.core import RobustgridError
from robustgrid.models.data import build_dataset


class Counting(nn.Module):
    """Counts rows through the model; ART hands it float64 arrays after its blends, so it casts to float32."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.rows = model, 0

    def forward(self, x: Tensor) -> Tensor:
        self.rows += len(x)
        return self.model(x.float())


class TopOne(nn.Module):
    """Only the top-1 label of the model, as one-hot outputs: all a decision-based attack may see."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        logits = self.model(x)
        return nn.functional.one_hot(logits.argmax(1), logits.shape[1]).float()


def correctly_classified(model: nn.Module, n: int) -> tuple[Tensor, Tensor]:
    """The images among the first ``n`` test images the model gets right (ART attacks its own predictions)."""
    ds = build_dataset("fashion-mnist", split="test", size=n, seed=0)
    with torch.no_grad():
        ok = model(ds.images).argmax(1) == ds.labels
    return ds.images[ok], ds.labels[ok]


def versus_art(model: nn.Module, x: Tensor, y: Tensor, norm: str, max_iter: int, init_eval: int,
               max_eval: int, monkeypatch: pytest.MonkeyPatch, seeds: int = 3) -> tuple[float, float, float, float]:
    """Median norm found by ours (mean over ``seeds``) and by ART's HopSkipJump (seeded) at the same total queries,
    and both query totals.

    ART has no query budget: it runs ``max_iter`` iterations of a binary search (about log2(1/theta) queries), a
    gradient estimate of min(init_eval sqrt(t + 1), max_eval) queries and a geometric search, after a random start
    and a binary blend to the boundary. So ART's rows are counted (the closing binary search included), less the
    two per image of its success report (its clean prediction stays: ours spends that query too), and ours gets
    their mean per image as its budget, with the same init_eval and max_eval."""
    from art.attacks.evasion import HopSkipJump
    from art.estimators.classification import PyTorchClassifier

    counted = Counting(model)
    classifier = PyTorchClassifier(counted, nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]), nb_classes=10,
                                   clip_values=(0.0, 1.0))
    np.random.seed(0)  # ART's estimates draw from the global generator, its random starts from an unseeded one
    seeded = np.random.RandomState
    monkeypatch.setattr(np.random, "RandomState", lambda seed=None: seeded(0 if seed is None else seed))
    art = HopSkipJump(classifier, norm=2 if norm == "l2" else np.inf, max_iter=max_iter, init_eval=init_eval,
                      max_eval=max_eval, init_size=100, verbose=False)
    adv = art.generate(x.numpy(), y.numpy())
    # ART ends each iteration on its geometric step, the paper (and ours, which keeps the closest adversarial) on a
    # binary search back to the boundary: ART's own binary search closes its last iteration the paper's way
    adv = torch.from_numpy(np.stack([art._binary_search(a, o, int(t), art.norm, 0.0, 1.0) if (a != o).any() else a
                                     for a, o, t in zip(adv, x.numpy(), y.numpy())]))
    art_queries = counted.rows - 2 * len(x)
    attack = build_attack("hsj", norm=norm, steps=math.ceil(art_queries / len(x)), init_evals=init_eval,
                          max_evals=max_eval)
    ours = [attack.run(model, x, y, seed=s) for s in range(seeds)]
    d = (adv - x).flatten(1)
    art_norms = d.norm(dim=1) if norm == "l2" else d.abs().amax(1)
    return (float(np.mean([r.min_norms.median() for r in ours])), float(art_norms.median()),
            max(r.queries for r in ours), art_queries)


@pytest.mark.slow
@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_median_norm_is_within_ten_percent_of_arts(norm, zoo_resnet, monkeypatch):
    x, y = correctly_classified(zoo_resnet.module, 24)
    ours, art, q_ours, q_art = versus_art(zoo_resnet.module, x, y, norm, 20, 20, 100, monkeypatch)
    assert abs(ours - art) <= 0.1 * art and q_ours <= q_art + len(x), (ours, art, q_ours, q_art)


def test_median_norm_is_near_arts_on_a_small_run(zoo_resnet, monkeypatch):
    """12 images, 8 iterations: the median over 12 random-start searches spreads by +-15% from seed to seed (ours,
    measured: 1.79-2.58), so ours is averaged over 3 seeds and held to 20% of ART's here."""
    x, y = correctly_classified(zoo_resnet.module, 14)
    ours, art, q_ours, q_art = versus_art(zoo_resnet.module, x, y, "l2", 8, 10, 50, monkeypatch)
    assert abs(ours - art) <= 0.2 * art and q_ours <= q_art + len(x), (ours, art, q_ours, q_art)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_it_sees_only_the_top_1_label(norm, zoo_resnet, fmnist_batch):
    x, y = fmnist_batch[0][:8], fmnist_batch[1][:8]
    attack = build_attack("hsj", norm=norm, eps=1.0 if norm == "l2" else 0.1, steps=120, init_evals=10)
    full, top = (attack.run(m, x, y, seed=2) for m in (zoo_resnet.module, TopOne(zoo_resnet.module)))
    assert torch.equal(full.x_adv, top.x_adv) and torch.equal(full.min_norms, top.min_norms)


def test_an_image_is_broken_only_by_an_adversarial_within_eps(zoo_resnet, fmnist_batch):
    x, y = fmnist_batch[0][:16], fmnist_batch[1][:16]
    attack = build_attack("hsj", steps=150, init_evals=10)
    runs = {eps: attack.run(zoo_resnet.module, x, y, seed=1, eps=eps, checkpoints=[50, 150]) for eps in (0.8, 2.0)}
    assert torch.equal(runs[0.8].min_norms, runs[2.0].min_norms)  # the search does not depend on eps
    norms = runs[2.0].min_norms
    assert torch.isfinite(norms).all()
    for eps, res in runs.items():
        broken = norms <= eps
        moved = (res.x_adv != x).flatten(1).any(1)
        assert torch.equal(moved, broken & (norms > 0))
        assert torch.allclose((res.x_adv - x).flatten(1).norm(dim=1)[broken], norms[broken], atol=1e-5)
        with torch.no_grad():
            assert (zoo_resnet.module(res.x_adv[broken]).argmax(1) != y[broken]).all()
            wrong = [int((zoo_resnet.module(res.checkpoints[k]).argmax(1) != y).sum()) for k in (50, 150)]
        assert wrong[0] <= wrong[1] == int(broken.sum())
    assert int((norms <= 0.8).sum()) < int((norms <= 2.0).sum())


@pytest.mark.parametrize("task", ["segmentation", "iqa"])
def test_it_refuses_a_task_without_a_top_1_decision(task):
    with pytest.raises(RobustgridError, match=rf"^hsj needs a top-1 decision per image \(task classification\), "
                                              rf"not task '{task}'$"):
        build_attack("hsj", task=task)
