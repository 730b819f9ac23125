"""Our loop against torchattacks on the same model, inputs and random start: identical images."""

from __future__ import annotations

import pytest
import torch
import torchattacks

from robustgrid.attacks import build_attack


@pytest.mark.parametrize("seed", [0, 1])
def test_pgd_matches_torchattacks(zoo_resnet, fmnist_batch, seed):
    x, y = fmnist_batch
    ours = build_attack("pgd", eps=0.1, steps=10, step_size=0.02)(zoo_resnet.module, x, y, seed=seed)
    torch.manual_seed(seed)
    ref = torchattacks.PGD(zoo_resnet.module, eps=0.1, alpha=0.02, steps=10, random_start=True)(x, y)
    assert (ours - ref).abs().max().item() <= 1e-6
    assert (ours - x).abs().max().item() > 0.05  # the attack actually moved the images


def test_mifgsm_matches_torchattacks(zoo_resnet, fmnist_batch):
    x, y = fmnist_batch
    ours = build_attack("mifgsm", eps=0.1, steps=10, step_size=0.02, decay=1.0)(zoo_resnet.module, x, y)
    ref = torchattacks.MIFGSM(zoo_resnet.module, eps=0.1, alpha=0.02, steps=10, decay=1.0)(x, y)
    assert (ours - ref).abs().max().item() <= 1e-6


def test_pgd_l2_matches_torchattacks(zoo_resnet, fmnist_batch):
    x, y = fmnist_batch
    ours = build_attack("pgd", norm="l2", eps=1.0, steps=5, step_size=0.3)(zoo_resnet.module, x, y, seed=3)
    torch.manual_seed(3)
    ref = torchattacks.PGDL2(zoo_resnet.module, eps=1.0, alpha=0.3, steps=5, random_start=True)(x, y)
    assert (ours - ref).abs().max().item() <= 1e-5
    assert (ours - x).flatten(1).norm(dim=1).max().item() <= 1.0 + 1e-5


def test_torchattacks_adapter_runs_their_code(zoo_resnet, fmnist_batch):
    x, y = fmnist_batch
    res = build_attack("torchattacks:PGD", eps=0.1, steps=4, alpha=0.03).run(zoo_resnet.module, x, y, seed=5,
                                                                             checkpoints=[2])
    torch.manual_seed(5)
    ref = torchattacks.PGD(zoo_resnet.module, eps=0.1, alpha=0.03, steps=4)(x, y)
    assert torch.equal(res.x_adv, ref)
    assert res.grad_evals == len(x) * (4 + 2)  # the checkpoint costs its own run: counted honestly
    assert not zoo_resnet.module.training  # the target is left in eval mode (BatchNorm statistics frozen)
