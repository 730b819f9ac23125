"""Robust accuracy from per-sample minimal norms (a minimum-norm attack's result), on synthetic norms."""

from __future__ import annotations

import numpy as np
import pytest

from robustgrid.benchmark.curves import min_norm_accuracy, min_norm_steps
from robustgrid.core import RobustgridError


def test_min_norm_accuracy_counts_the_samples_whose_minimal_norm_exceeds_eps():
    rng = np.random.default_rng(0)
    norms = np.concatenate([rng.exponential(0.05, 200), [0.0, 0.0, np.inf, np.nan]])
    eps = [0.0, 0.01, 0.03, 0.1, 1.0]
    expected = [sum(1 for v in norms if not v <= e) / len(norms) for e in eps]  # NaN compares false: robust
    assert min_norm_accuracy(norms, eps) == pytest.approx(expected)
    got = min_norm_accuracy(norms, sorted(rng.uniform(0, 0.3, 50)))
    assert all(a >= b for a, b in zip(got, got[1:]))  # a step curve that never rises


def test_min_norm_steps_drop_at_each_distinct_norm():
    points, acc = min_norm_steps(np.array([0.0, 0.2, 0.1, 0.1, np.inf]))
    assert points == [0.0, 0.1, 0.2]
    assert acc == pytest.approx([0.8, 0.4, 0.2])  # broken at eps once the minimal norm is <= eps


def test_negative_norms_are_refused():
    with pytest.raises(RobustgridError, match=r"minimal norms must be >= 0 \(inf or NaN: not broken\), got -0.1"):
        min_norm_accuracy(np.array([0.2, -0.1]), [0.1])
