"""The query-attack contract: every row through the model is a counted query, within the budget, never a gradient."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from robustgrid.attacks import build_attack
from robustgrid.core import RobustgridError

QUERY_ATTACKS = {"square": {"eps": 0.05}, "spsa": {"eps": 0.05, "samples": 8}, "hsj": {"eps": 1.0, "init_evals": 10}}


class Counting(nn.Module):
    """Counts the rows through the model and refuses any input that could be differentiated."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.rows = model, 0

    def forward(self, x: Tensor) -> Tensor:
        if x.requires_grad or torch.is_grad_enabled():
            raise AssertionError("a query attack ran the model where it could take a gradient")
        self.rows += len(x)
        return self.model(x)


@pytest.mark.parametrize("name", sorted(QUERY_ATTACKS))
def test_rows_through_the_model_are_the_counted_queries(name, zoo_resnet, fmnist_batch):
    x, y = fmnist_batch[0][:16], fmnist_batch[1][:16]
    model = Counting(zoo_resnet.module)
    res = build_attack(name, steps=60, **QUERY_ATTACKS[name]).run(model, x, y, seed=0, checkpoints=[10, 30, 60])
    assert model.rows == res.queries == res.forwards <= 60 * len(x) and res.grad_evals == 0
    assert res.queries_at[60] == res.queries and res.grad_evals_at == {10: 0, 30: 0, 60: 0}
    assert all(res.queries_at[k] <= k * len(x) for k in (10, 30)) and res.queries_at[10] < res.queries_at[30]
    assert torch.equal(res.checkpoints[60], res.x_adv)


@pytest.mark.parametrize("name", sorted(QUERY_ATTACKS))
def test_no_image_spends_more_than_the_budget(name, zoo_resnet, fmnist_batch):
    for i in range(4):  # one image at a time, so the wrapper's rows are that image's queries
        model = Counting(zoo_resnet.module)
        res = build_attack(name, steps=45, **QUERY_ATTACKS[name]).run(model, fmnist_batch[0][i:i + 1],
                                                                       fmnist_batch[1][i:i + 1], seed=i)
        assert model.rows == res.queries <= 45


@pytest.mark.parametrize("name", sorted(QUERY_ATTACKS))
def test_early_stop_spends_no_query_on_a_fooled_image(name, zoo_resnet, fmnist_batch):
    """An image the model already gets wrong costs one query under early stop: the one that shows it (Square's
    first query is its start, SPSA's and HopSkipJump's the clean image)."""
    x, y = fmnist_batch
    with torch.no_grad():
        wrong = (zoo_resnet.module(x).argmax(1) != y).nonzero().flatten()[:1]
    model = Counting(zoo_resnet.module)
    res = build_attack(name, steps=40, **QUERY_ATTACKS[name]).run(model, x[wrong], y[wrong], seed=0, early_stop=True)
    assert len(wrong) == 1 and res.queries == model.rows == 1
    with torch.no_grad():
        assert zoo_resnet.module(res.x_adv).argmax(1) != y[wrong]
    assert torch.equal(res.x_adv, x[wrong]) is (name != "square")


@pytest.mark.parametrize("name", sorted(QUERY_ATTACKS))
def test_a_budget_below_one_and_a_checkpoint_beyond_it_are_one_line_errors(name, zoo_resnet, fmnist_batch):
    with pytest.raises(RobustgridError, match=rf"^{name}: steps \(the query budget\) must be an integer >= 1, got 0$"):
        build_attack(name, steps=0)
    attack = build_attack(name, steps=20)
    with pytest.raises(RobustgridError, match=r"^checkpoints must lie in 1..20 \(query budget\), got \[21\]$"):
        attack.run(zoo_resnet.module, *fmnist_batch, seed=0, checkpoints=[5, 21])
    with pytest.raises(RobustgridError, match=rf"^{name} queries a single model, got 2 sources$"):
        attack.run([zoo_resnet.module] * 2, *fmnist_batch, seed=0)
    with pytest.raises(RobustgridError, match=r"takes no EOT draws \(eot_samples=3\); set eot_samples = 1$"):
        attack.check_run(eot_samples=3)


@pytest.mark.parametrize("name", sorted(QUERY_ATTACKS))
def test_query_attacks_declare_their_access(name):
    assert build_attack(name).access == ("decision" if name == "hsj" else "score")


@pytest.mark.parametrize("name", ["square", "spsa"])
def test_on_iqa_the_direction_is_a_query_of_the_budget(name):
    """IQA's attack direction needs each clean score: one query, so a budget of one leaves the images clean."""
    from robustgrid.models.zoo import zoo_target

    model = Counting(zoo_target("iqa-cnniqa", allow_train=False).module)
    x, y = torch.rand(3, 3, 48, 48, generator=torch.Generator().manual_seed(0)), torch.tensor([20.0, 50.0, 80.0])
    one = build_attack(name, eps=0.03, steps=1, task="iqa").run(model, x, y, seed=0)
    assert one.queries == model.rows == 3 and torch.equal(one.x_adv, x)
    # 7 = the direction, then Square's start and 5 windows, or SPSA's clean score and one step of 2 pairs + score
    more = build_attack(name, eps=0.03, steps=7, task="iqa", **({"samples": 2} if name == "spsa" else {}))
    assert more.run(model, x, y, seed=0).queries == 7 * 3 and model.rows == 3 + 21
