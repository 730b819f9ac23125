"""The IQA leaderboard: ranked by score stability, which falls with the budget, with SROCC/PLCC as columns."""

from __future__ import annotations

import pytest

from robustgrid.benchmark import parse_config, run_grid
from robustgrid.benchmark.curves import final_cells
from robustgrid.benchmark.leaderboard import build_leaderboard
from robustgrid.benchmark.store import Store

GRID = {
    "seed": 0,
    "suite": [{
        "name": "iqa-tiny", "task": "iqa",
        "dataset": {"name": "skimage-iqa", "split": "test", "size": 24},
        "targets": ["iqa-cnniqa"], "threats": ["whitebox"],
        "budget": {"norm": "linf", "eps": [0.0, 0.01, 0.03]}, "batch_size": 24,
        "attacks": [{"name": "ifgsm", "steps": 3}],
    }],
}


def test_iqa_rows_rank_by_stability_and_show_the_label_correlations(tmp_path) -> None:
    run_grid(parse_config(GRID), tmp_path, progress=False, report=True)
    store = Store(tmp_path / "cells.sqlite")
    try:
        cells = store.cells()
        board = build_leaderboard(store, cells, {}, store.provenance(), {}, resamples=20)
    finally:
        store.close()
    suite = board.suites[0]
    assert suite.metric == "score_stability"
    assert suite.extra_columns == ("clean srocc", "whitebox @0.03 srocc", "clean plcc", "whitebox @0.03 plcc")
    final = {c.eps: c for c in final_cells(cells)}
    row = suite.rows[0]
    assert row.clean == pytest.approx(1.0)  # no score moves on clean images
    assert row.values[-1] == final[0.03].value < final[0.01].value < 1.0  # falls as eps grows
    assert row.extras == pytest.approx((final[0.0].metrics["srocc"], final[0.03].metrics["srocc"],
                                        final[0.0].metrics["plcc"], final[0.03].metrics["plcc"]))
    md = (tmp_path / "leaderboard.md").read_text()
    assert "clean srocc" in md and "whitebox @0.03 plcc" in md


def test_iqa_bands_resample_whole_photographs(tmp_path) -> None:
    """The store keeps each patch's source photograph and the curves' bands draw whole photographs: a band is the
    percentile interval over draws of photographs (an independent reference), not over draws of patches."""
    import numpy as np

    from robustgrid.benchmark.bands import cell_bands
    from robustgrid.benchmark.stats import percentile_interval, resample_indices
    from robustgrid.models.data import build_dataset
    from robustgrid.models.iqa_task import score_stability

    run_grid(parse_config(GRID), tmp_path, progress=False, report=False)
    store = Store(tmp_path / "cells.sqlite")
    try:
        cell = next(c for c in final_cells(store.cells()) if c.eps == 0.03)
        groups = store.groups(cell.suite, cell.dataset)
        want = build_dataset("skimage-iqa", split="test", size=24).groups.numpy()
        assert groups is not None and groups.tolist() == want.tolist() and len(set(want)) < len(want)
        band = cell_bands(store, [cell], resamples=200, seed=3)[cell.key]
        adv, clean = cell.outcome(store), store.clean_for(cell)
        draws = [score_stability(clean[i], adv[i]) for i in resample_indices(len(adv), 200, 3, groups)]
        ref = percentile_interval(cell.value, np.array(draws), 0.95)
        assert (band.low, band.high) == pytest.approx((ref.low, ref.high))
        patches = percentile_interval(cell.value, np.array([score_stability(clean[i], adv[i]) for i in
                                                            resample_indices(len(adv), 200, 3)]), 0.95)
        assert (band.low, band.high) != pytest.approx((patches.low, patches.high))
    finally:
        store.close()
