"""The Attack contract: every attack implements it, and whether an attack transforms its input is derived."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from robustgrid.attacks import ATTACKS, Attack, GradientAttack, build_attack
from robustgrid.attacks.pgd import PGD
from robustgrid.core import RobustgridError

# what each attack's view really does: DI resizes and pads, SegTrans remaps blocks, BSR shuffles and turns
# them, SEGA adds noise when it smooths; TI smooths the gradient (not the input), SegPGD reweights the loss,
# MI-FGSM adds momentum, VMI-FGSM differentiates its neighbours in ``tune`` (its pass sees the iterate)
TRANSFORMS_INPUT = {"di", "segtrans", "bsr", "sega", "sega-nosign", "sega-nomask", "sega-agreement"}
IDENTITY_VIEW = {"pgd", "ifgsm", "fgsm", "mifgsm", "vmifgsm", "ti", "segpgd", "sega-nosmooth", "apgd", "apgd-t", "fmn"}
CASCADES = {"auto"}  # runs other attacks in turn, not a loop of its own
QUERY = {"square", "spsa", "hsj"}  # query attacks: they never differentiate the model (tests/attacks/test_query.py)


def test_every_attack_implements_the_contract():
    assert set(ATTACKS.names()) == TRANSFORMS_INPUT | IDENTITY_VIEW | CASCADES | QUERY  # a new attack joins a set
    for name in ATTACKS.names():
        assert isinstance(build_attack(name), Attack if name in CASCADES | QUERY else GradientAttack)
        assert isinstance(build_attack(name), GradientAttack) is (name not in CASCADES | QUERY)
        assert (build_attack(name).access == "gradient") is (name not in QUERY)
    adapter = build_attack("torchattacks:PGD")
    assert isinstance(adapter, Attack) and not isinstance(adapter, GradientAttack)  # it runs torchattacks' loop


@pytest.mark.parametrize("name", sorted(TRANSFORMS_INPUT | IDENTITY_VIEW))
def test_transforms_input_is_true_exactly_where_the_view_changes_the_images(name):
    params = {"diversity_prob": 1.0} if name == "di" else {}
    attack = build_attack(name, **params)
    x, y = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)), torch.tensor([1, 2])
    gen = torch.Generator().manual_seed(1)
    changed = any(not torch.equal(attack.view(x, y, gen)[0], x) for _ in range(3))
    assert attack.transforms_input is (name in TRANSFORMS_INPUT) is changed


def test_transforms_input_follows_an_overridden_view_without_a_flag():
    class Jitter(PGD):
        def view(self, x: Tensor, y: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
            return x + 0.01 * torch.randn(x.shape, generator=gen), y

    class Signless(PGD):
        def direction(self, grad: Tensor, state: dict[str, Tensor], idx: Tensor) -> Tensor:
            return grad

    assert Jitter().transforms_input and not Signless().transforms_input


def test_a_view_that_transforms_checks_early_stop_with_extra_forwards(zoo_resnet, fmnist_batch):
    """Under a view the gradient pass sees other images, so success is checked by a forward of the iterate."""
    x, y = fmnist_batch
    plain = build_attack("mifgsm", eps=0.1, steps=3).run(zoo_resnet.module, x, y, seed=0, early_stop=True)
    di = build_attack("di", eps=0.1, steps=3).run(zoo_resnet.module, x, y, seed=0, early_stop=True)
    assert plain.forwards == 0 and di.forwards == di.grad_evals > 0


def test_run_options_are_checked():
    attack = build_attack("pgd", steps=4)
    with pytest.raises(RobustgridError, match="eot_samples must be an integer >= 1, got 0"):
        attack.check_run(eot_samples=0)
    with pytest.raises(RobustgridError, match=r"checkpoints must lie in 1..4 \(steps\), got \[5\]"):
        attack.check_run(checkpoints=[2, 5])
    with pytest.raises(RobustgridError, match="pgd has no parameter 'early_stop'"):
        build_attack("pgd", early_stop=True)  # a run option, not a parameter of the attack
