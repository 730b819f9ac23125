"""The torchattacks adapter: our norm and seed reach torchattacks, run options it cannot honour are refused."""

from __future__ import annotations

import pytest
import torch
import torchattacks

from robustgrid.attacks import build_attack
from robustgrid.core import RobustgridError


def test_the_run_seed_reaches_attacks_that_reseed_themselves(zoo_resnet, fmnist_batch):
    """APGD reseeds the global RNG from its own seed parameter: the adapter passes the run's seed there."""
    x, y = fmnist_batch
    attack = build_attack("torchattacks:APGD", eps=0.1, steps=3)
    runs = {s: attack.run(zoo_resnet.module, x, y, seed=s).x_adv for s in (1, 2)}
    for s, adv in runs.items():
        assert torch.equal(adv, torchattacks.APGD(zoo_resnet.module, eps=0.1, steps=3, seed=s)(x, y))
    assert not torch.equal(runs[1], runs[2])


def test_the_budget_norm_reaches_attacks_that_take_one(zoo_resnet, fmnist_batch):
    x, y = fmnist_batch
    adv = build_attack("torchattacks:APGD", norm="l2", eps=0.5, steps=3)(zoo_resnet.module, x, y, seed=0)
    ref = torchattacks.APGD(zoo_resnet.module, norm="L2", eps=0.5, steps=3, seed=0)(x, y)
    assert torch.equal(adv, ref)
    assert (adv - x).flatten(1).norm(dim=1).max() <= 0.5 + 1e-5 and (adv - x).abs().max() > 0.1


def test_early_stop_is_not_applied_and_a_query_attack_takes_no_gradient(zoo_resnet, fmnist_batch):
    x, y = fmnist_batch
    attack = build_attack("torchattacks:Square", eps=0.1, n_queries=20)
    stop = attack.run(zoo_resnet.module, x, y, seed=4, early_stop=True)
    plain = attack.run(zoo_resnet.module, x, y, seed=4)
    assert torch.equal(stop.x_adv, plain.x_adv) and stop.forwards == plain.forwards > len(x)
    assert stop.grad_evals == 0  # Square predicts with autograd on, but never differentiates


def test_run_options_it_cannot_honour_are_one_line_errors(zoo_resnet, fmnist_batch):
    x, y = fmnist_batch
    pgd = build_attack("torchattacks:PGD", steps=4)
    with pytest.raises(RobustgridError, match=r"cannot average gradients over .* draws \(eot_samples=2\)"):
        pgd.run(zoo_resnet.module, x, y, seed=0, eot_samples=2)
    with pytest.raises(RobustgridError, match=r"checkpoints must lie in 1..4 \(steps\), got \[5\]"):
        pgd.run(zoo_resnet.module, x, y, seed=0, checkpoints=[5])
    with pytest.raises(RobustgridError, match="torchattacks:PGD attacks a single model, got 2 sources"):
        pgd.run([zoo_resnet.module] * 2, x, y, seed=0)
    with pytest.raises(RobustgridError, match=r"Square has no steps parameter, so .* at checkpoints \[2\]"):
        build_attack("torchattacks:Square", steps=4).check_run(checkpoints=[2, 4])
