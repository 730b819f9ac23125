"""The classification margin that score-based query attacks maximise, and the tasks' score objectives."""

from __future__ import annotations

import torch

from robustgrid.models.tasks import build_task, margin


def test_margin_is_the_best_wrong_logit_minus_the_true_one():
    logits = torch.randn(50, 7, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 7, (50,), generator=torch.Generator().manual_seed(1))
    ref = torch.tensor([max(float(r[j]) for j in range(7) if j != t) - float(r[t]) for r, t in zip(logits, y)])
    assert torch.allclose(margin(logits, y), ref)
    assert torch.equal(margin(logits, y) > 0, build_task("classification").success(logits, y))


def test_score_objectives():
    """Classification's is the margin (bounded, unlike cross-entropy); the other tasks keep their objective."""
    logits, y = torch.tensor([[2.0, 0.5, -1.0]]), torch.tensor([0])
    assert build_task("classification").score_objective(logits, y).item() == -1.5
    seg = build_task("segmentation")
    out, labels = torch.randn(2, 4, 5, 5), torch.randint(0, 4, (2, 5, 5))
    assert torch.equal(seg.score_objective(out, labels), seg.objective(out, labels))
