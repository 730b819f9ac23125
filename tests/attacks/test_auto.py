"""The ``auto`` cascade: the samples it passes on, its costs, at least each stage's harm, AutoAttack, bad inputs.

Square is another engineer's attack: the tests that need the real one skip while it is not registered; the cascade's
own bookkeeping is checked with ``RandomSigns``, a weak but real score-based random search registered in its place.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
import torch
from torch import Tensor

from robustgrid.attacks import ATTACKS, build_attack
from robustgrid.attacks.base import Attack, AttackResult, Models, OnCheckpoint, as_models
from robustgrid.core import RobustgridError
from robustgrid.models.iqa_task import quality


class RandomSigns(Attack):
    """Score access: ``steps`` random corners of the Linf ball per image, keeping the one of largest objective."""

    name = "random-signs"
    access = "score"
    seen: list[int] = []  # batch sizes it was given, in order

    def run(self, models: Models, x: Tensor, y: Tensor, *, seed: int, eps: float | None = None,
            checkpoints: Sequence[int] = (), on_checkpoint: OnCheckpoint | None = None, early_stop: bool = False,
            eot_samples: int = 1) -> AttackResult:
        model, eps = as_models(models)[0], self.eps if eps is None else eps
        RandomSigns.seen.append(len(x))
        gen = torch.Generator().manual_seed(seed)
        y = self.task.attack_labels([model], x, y)
        with torch.no_grad():
            best, value = x.clone(), self.task.objective(model(x), y)
            for _ in range(self.steps):
                cand = torch.clamp(x + eps * torch.randint(0, 2, x.shape, generator=gen).mul(2).sub(1), 0, 1)
                v = self.task.objective(model(cand), y)
                best[v > value], value = cand[v > value], torch.maximum(v, value)
        return AttackResult(x_adv=best, queries=len(x) * (self.steps + 1))


def without_square(monkeypatch) -> None:
    """Unregister 'square' for this test only."""
    entries = dict(ATTACKS._entries)
    entries.pop("square", None)
    monkeypatch.setattr(ATTACKS, "_entries", entries)


def stand_in_square(monkeypatch) -> type[RandomSigns]:
    """Register ``RandomSigns`` as 'square' for this test only, in place of the real one."""
    without_square(monkeypatch)
    ATTACKS.register("square")(RandomSigns)
    RandomSigns.seen = []
    return RandomSigns


@pytest.fixture
def fake_square(monkeypatch) -> type[RandomSigns]:
    return stand_in_square(monkeypatch)


def correct(model, x, y) -> Tensor:
    with torch.no_grad():
        return model(x).argmax(1) == y


def test_classification_passes_on_only_the_samples_still_robust(zoo_resnet, fmnist_batch, fake_square):
    x, y = fmnist_batch
    m = zoo_resnet.module
    res = build_attack("auto", eps=0.02, steps=5, queries=3, n_target_classes=3).run(m, x, y, seed=0)
    # independent: the stages alone, each on what the one before left robust
    ce = build_attack("apgd", eps=0.02, steps=5).run(m, x, y, seed=0)
    left = correct(m, ce.x_adv, y).nonzero().flatten()
    t = build_attack("apgd-t", eps=0.02, steps=5, n_target_classes=3).run(m, x[left], y[left], seed=0)
    still = int(correct(m, t.x_adv, y[left]).sum())
    assert fake_square.seen == [still] and 0 < still <= len(left) < len(x)
    assert res.grad_evals == ce.grad_evals + t.grad_evals and res.queries == still * 4
    assert correct(m, res.x_adv, y).sum() <= correct(m, ce.x_adv, y).sum()
    assert (res.x_adv - x).abs().max() <= 0.02 + 1e-6


def test_segmentation_is_per_image_at_least_as_harmful_as_each_stage_alone():
    from robustgrid.models.data.scenes import make_scenes
    from robustgrid.models.zoo import zoo_target

    target = zoo_target("scenes-fpn", allow_train=False)
    x, y = make_scenes("test", range(6))
    m, task = target.module, build_attack("auto", task="segmentation").task

    def image_miou(adv: Tensor) -> np.ndarray:
        with torch.no_grad():
            out = task.outcome(m(adv), y)
        return np.array([task.metrics(out[i:i + 1], y[i:i + 1].numpy())["miou"] for i in range(len(y))])

    def miou(adv: Tensor) -> float:
        with torch.no_grad():
            return task.metrics(task.outcome(m(adv), y), y.numpy())["miou"]

    auto = build_attack("auto", eps=4 / 255, steps=5, task="segmentation").run(m, x, y, seed=0)
    stages = [build_attack("apgd", loss=loss, eps=4 / 255, steps=5, task="segmentation")(m, x, y, seed=0)
              for loss in ("task", "margin")]
    assert auto.grad_evals == 2 * 5 * len(x)
    assert all((image_miou(auto.x_adv) <= image_miou(s) + 1e-12).all() for s in stages)  # what the cascade picks by
    # Over the set, mIoU comes from one pooled confusion matrix, not a mean of the images' values, so taking each
    # image's worse stage need not beat the stronger stage's pooled mIoU (six-class fpn: 0.124 against 0.127 and
    # 0.120); losing to both stages would mean a wrong pick, and it must break the model.
    assert miou(auto.x_adv) <= max(miou(s) for s in stages) + 1e-12 and miou(auto.x_adv) < miou(x) - 0.1


@pytest.mark.parametrize("square", ["random-signs", "registered"])
def test_iqa_shifts_each_score_at_least_as_far_as_each_stage_alone(square, monkeypatch):
    from robustgrid.models.data import build_dataset
    from robustgrid.models.zoo import zoo_target

    if square == "random-signs":
        stand_in_square(monkeypatch)
    m = zoo_target("iqa-resnet", allow_train=False).module
    ds = build_dataset("skimage-iqa", split="test")
    x, y = ds.images[:6], ds.labels[:6]

    def shift(adv: Tensor) -> Tensor:
        with torch.no_grad():
            return (quality(m(adv)) - quality(m(x))).abs()

    cascade = build_attack("auto", eps=2 / 255, steps=4, queries=20, task="iqa")
    auto = cascade.run(m, x, y, seed=0)
    alone = [build_attack("apgd", eps=2 / 255, steps=4, task="iqa")(m, x, y, seed=0),
             cascade.query_attack()(m, x, y, seed=0)]
    assert all((shift(auto.x_adv) >= shift(a) - 1e-4).all() for a in alone)
    assert auto.queries > 0 and auto.grad_evals == 4 * len(x)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["fmnist-resnet", "fmnist-mobilenet", "fmnist-vit"])
def test_auto_is_at_least_as_strong_as_autoattack_standard(target, capsys):
    import torchattacks

    from robustgrid.models.data import build_dataset
    from robustgrid.models.zoo import zoo_target

    ds = build_dataset("fashion-mnist", split="test", size=200, seed=0)
    m = zoo_target(target, allow_train=False).module
    ours = build_attack("auto", eps=0.02).run(m, ds.images, ds.labels, seed=0)
    ref = torchattacks.AutoAttack(m, norm="Linf", eps=0.02, version="standard", n_classes=10, seed=0)
    got = correct(m, ours.x_adv, ds.labels).float().mean()
    want = correct(m, ref(ds.images, ds.labels), ds.labels).float().mean()
    with capsys.disabled():
        print(f"\nauto on {target}, 200 images, Linf 0.02: ours {got:.3f}, AutoAttack (standard) {want:.3f}")
    assert got <= want


def test_auto_bad_inputs_are_one_line_errors(zoo_resnet, fmnist_batch, monkeypatch):
    x, y = fmnist_batch
    with pytest.raises(RobustgridError, match=r"^auto has no iterates at checkpoints \[2, 5\]; its only checkpoint "
                                              r"is steps \(10\)$"):
        build_attack("auto", steps=10).run(zoo_resnet.module, x, y, seed=0, checkpoints=[2, 5, 10])
    with pytest.raises(RobustgridError, match=r"^auto: queries must be an integer >= 1, got 0$"):
        build_attack("auto", queries=0)
    without_square(monkeypatch)
    with pytest.raises(RobustgridError, match=r"^auto on classification needs the 'square' attack, which is not "
                                              r"registered; registered: "):
        build_attack("auto", steps=2).run(zoo_resnet.module, x, y, seed=0)
