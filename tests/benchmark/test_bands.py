"""Bootstrap bands of the curves: each cell's interval is the percentile interval of its metric over seeded
resamples of its samples, the same draws for every cell of a dataset, reproducible from the store alone."""

from __future__ import annotations

import numpy as np
import pytest

from robustgrid.benchmark.bands import cell_bands
from robustgrid.benchmark.store import Store


@pytest.fixture(scope="module")
def store(grid_store):
    s = Store(grid_store / "cells.sqlite", readonly=True)
    yield s
    s.close()


def test_each_band_is_the_percentile_interval_of_resampled_accuracy(store):
    cells = store.cells()
    got = cell_bands(store, cells, resamples=300, seed=7)
    assert set(got) == {c.key for c in cells}
    labels = store.labels("tiny", cells[0].dataset)
    # independent reference: accuracy of each draw of sample indices, numpy's generator seeded alike
    idx = np.random.default_rng(7).integers(0, len(labels), size=(300, len(labels)))
    widths = []
    for c in cells:
        correct = (store.outcome(c.key) == labels).astype(float)
        low, high = np.quantile(correct[idx].mean(1), [0.025, 0.975])
        band = got[c.key]
        assert correct.mean() == pytest.approx(c.value)  # the band sits on the plotted point
        assert band.estimate == c.value and band.resamples == 300 and band.level == 0.95
        assert (band.low, band.high) == pytest.approx((low, high))
        assert band.low <= c.value <= band.high
        widths.append(band.high - band.low)
    assert max(widths) > 0  # some cell is neither always nor never right


def test_bands_are_deterministic_and_widen_with_the_confidence_level(store):
    cells = store.cells()[:12]
    a, b = cell_bands(store, cells), cell_bands(store, cells)
    assert a == b
    wide = cell_bands(store, cells, level=0.99)
    for c in cells:
        assert wide[c.key].low <= a[c.key].low and a[c.key].high <= wide[c.key].high
    other = cell_bands(store, cells, seed=1)
    assert any(other[c.key] != a[c.key] for c in cells)  # the seed matters


def _outcomes(task: str, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random per-sample outcomes, labels and clean outcomes of ``task``."""
    if task == "classification":
        y = rng.integers(0, 5, n)
        return (np.where(rng.random(n) < 0.6, y, rng.integers(0, 5, n)), y,
                np.where(rng.random(n) < 0.8, y, rng.integers(0, 5, n)))
    if task == "segmentation":
        y = rng.integers(0, 4, (n, 6, 6))
        y[0] = 255  # a scene of ignored pixels only
        return rng.integers(0, 4, (n, 6, 6)), y, y.copy()
    clean = rng.uniform(0.2, 0.8, n)
    return clean + rng.normal(0, 0.1, n), rng.uniform(0, 1, n), clean


@pytest.mark.parametrize(("task", "metric"), [("classification", "accuracy"),
                                              ("classification", "attack_success_rate"), ("segmentation", "miou"),
                                              ("iqa", "score_stability")])
def test_the_vectorised_bootstrap_of_the_primary_metric_is_the_per_resample_one(task, metric):
    """Each task's all-at-once draws equal one ``resampler`` call per draw, the base class's way."""
    from robustgrid.models.tasks import Task, build_task

    rng = np.random.default_rng(3)
    outcome, y, clean = _outcomes(task, rng, 12)
    idx = rng.integers(0, 12, size=(50, 12))
    t = build_task(task)
    np.testing.assert_allclose(t.bootstrap(outcome, y, clean, metric, idx),
                               Task.bootstrap(t, outcome, y, clean, metric, idx), rtol=1e-12, atol=1e-12)
