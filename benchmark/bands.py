"""Bootstrap bands of the report's curves: per cell, the percentile interval of its primary metric.

Each cell's per-sample outcomes are resampled with the task's own code (``Task.bootstrap``), the same seeded
draws of sample indices for every cell of one evaluated dataset (whole groups where the dataset has them: the
patches of one IQA photograph are not independent), so a band is reproducible from the store alone
and neighbouring points of a curve move together as a paired comparison would.
"""

from __future__ import annotations

from collections import defaultdict

from robustgrid.benchmark.records import CellRow
from robustgrid.benchmark.stats import Interval, percentile_interval, resample_indices
from robustgrid.benchmark.store import Store
from robustgrid.models.tasks import build_task

BAND_RESAMPLES = 200  # enough for a drawn 95% band; the transfer tables use 1000 for their printed intervals


def cell_bands(store: Store, cells: list[CellRow], resamples: int = BAND_RESAMPLES, seed: int = 0,
               level: float = 0.95) -> dict[str, Interval]:
    """The bootstrap interval of every cell's primary metric, by cell key (NaN bounds where undefined)."""
    by_data: dict[tuple[str, str], list[CellRow]] = defaultdict(list)
    for c in cells:
        by_data[c.suite, c.dataset].append(c)
    out: dict[str, Interval] = {}
    for (suite, dataset), group in sorted(by_data.items()):
        labels = store.labels(suite, dataset)
        idx = resample_indices(len(labels), resamples, seed, store.groups(suite, dataset))
        for c in group:
            draws = build_task(c.task).bootstrap(c.outcome(store), labels, store.clean_for(c), c.metric, idx)
            out[c.key] = percentile_interval(c.value, draws, level)
    return out
