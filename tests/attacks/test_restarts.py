"""PGD random restarts: each sample keeps its best restart, exactly the union of the single runs' successes."""

from __future__ import annotations

import pytest
import torch

from robustgrid.attacks import build_attack
from robustgrid.core import RobustgridError


@pytest.fixture
def weak_classifier() -> torch.nn.Module:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.Tanh(), torch.nn.AdaptiveAvgPool2d(2),
                                torch.nn.Flatten(), torch.nn.Linear(16, 5))
    return model.eval().requires_grad_(False)


def test_restarts_keep_per_sample_the_best_of_the_independent_runs(weak_classifier) -> None:
    x = torch.rand(64, 1, 10, 10, generator=torch.Generator().manual_seed(1))
    y = weak_classifier(x).argmax(1)  # every sample starts correctly classified
    kw = {"eps": 0.04, "steps": 2, "rel_step_size": 0.3}  # short steps: where the random start lands matters
    single = [build_attack("pgd", **kw).run(weak_classifier, x, y, seed=5 + r, checkpoints=[1, 2]) for r in range(3)]
    both = build_attack("pgd", restarts=3, **kw).run(weak_classifier, x, y, seed=5, checkpoints=[1, 2])
    with torch.no_grad():
        fooled = torch.stack([weak_classifier(s.x_adv).argmax(1) != y for s in single])
        loss = torch.stack([torch.nn.functional.cross_entropy(weak_classifier(s.x_adv), y, reduction="none")
                            for s in single])
        got = weak_classifier(both.x_adv).argmax(1) != y
    assert torch.equal(got, fooled.any(0)) and fooled.any(0).sum() > fooled[0].sum()  # the restarts add successes
    first = fooled.float().argmax(0)
    chosen = torch.where(fooled.any(0), first, loss.argmax(0))
    for i in range(len(x)):
        assert torch.equal(both.x_adv[i], single[chosen[i]].x_adv[i])
        assert torch.equal(both.checkpoints[1][i], single[chosen[i]].checkpoints[1][i])  # one run's curve
    assert both.grad_evals == 3 * single[0].grad_evals and both.grad_evals_at[1] == 3 * single[0].grad_evals_at[1]


def test_under_early_stop_fooled_samples_are_not_attacked_again(weak_classifier) -> None:
    x = torch.rand(64, 1, 10, 10, generator=torch.Generator().manual_seed(2))
    y = weak_classifier(x).argmax(1)
    kw = {"eps": 0.04, "steps": 2, "rel_step_size": 0.3}
    one = build_attack("pgd", **kw).run(weak_classifier, x, y, seed=0, early_stop=True)
    three = build_attack("pgd", restarts=3, **kw).run(weak_classifier, x, y, seed=0, early_stop=True)
    with torch.no_grad():
        assert (weak_classifier(three.x_adv).argmax(1) != y).sum() >= (weak_classifier(one.x_adv).argmax(1) != y).sum()
    assert one.grad_evals < three.grad_evals < 3 * one.grad_evals  # restarts 2 and 3 skip the fooled samples


def test_restarts_need_a_random_start() -> None:
    with pytest.raises(RobustgridError, match="restarts=2 needs random_start = true") as info:
        build_attack("ifgsm", restarts=2)
    assert "\n" not in str(info.value)
    with pytest.raises(RobustgridError, match="restarts must be an integer >= 1, got 0"):
        build_attack("pgd", restarts=0)
