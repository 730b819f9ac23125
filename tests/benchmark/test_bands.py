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
