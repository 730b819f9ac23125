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
