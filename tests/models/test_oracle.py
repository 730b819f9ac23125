"""Query oracles: a score oracle gives the model's outputs and never a gradient; a decision oracle its top-1 label."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustgrid.core import RobustgridError
from robustgrid.models.oracle import DecisionOracle, ScoreOracle


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 5))


def test_a_score_oracle_returns_the_models_outputs_without_a_graph_and_counts_the_images():
    model, x = _model(), torch.rand(6, 1, 4, 4)
    oracle = ScoreOracle(model)
    out = oracle(x)
    torch.testing.assert_close(out, model(x).detach())
    assert not out.requires_grad and out.grad_fn is None
    oracle(x[:2])
    assert oracle.queries == 8


def test_a_score_oracle_refuses_an_input_that_asks_for_a_gradient():
    oracle = ScoreOracle(_model())
    with pytest.raises(RobustgridError, match="^a score oracle answers queries, not gradients"):
        oracle(torch.rand(2, 1, 4, 4).requires_grad_(True))
    assert oracle.queries == 0


def test_a_decision_oracle_returns_the_one_hot_top1_label_only():
    model, x = _model(), torch.rand(7, 1, 4, 4)
    out = DecisionOracle(model)(x)
    assert torch.equal(out, F.one_hot(model(x).argmax(1), 5).float())
    assert torch.equal(out.sum(1), torch.ones(7))  # one label per image, no score
    with pytest.raises(RobustgridError, match="^a decision oracle answers queries, not gradients"):
        DecisionOracle(model)(x.requires_grad_(True))


def test_a_decision_oracle_refuses_outputs_that_are_not_class_logits():
    with pytest.raises(RobustgridError, match=r"needs class logits of shape \(N, classes\), got \(2, 3, 4, 4\)"):
        DecisionOracle(nn.Conv2d(1, 3, 1))(torch.rand(2, 1, 4, 4))
