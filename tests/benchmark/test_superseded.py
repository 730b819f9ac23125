"""A store reports what its config makes now: a rerun after a data or model change replaces the old cells."""

from __future__ import annotations

import copy
import sqlite3

from robustgrid.benchmark import parse_config, run_grid
from robustgrid.benchmark.store import Store


def small(cfg: dict, *, size: int, attacks: list[str]) -> dict:
    cfg = copy.deepcopy(cfg)
    suite = cfg["suite"][0]
    suite["dataset"]["size"] = size
    suite["targets"] = ["fmnist-resnet"]
    suite["threats"] = ["whitebox"]
    suite["budget"]["eps"] = [0.0, 0.05]
    suite["attacks"] = [a for a in suite["attacks"] if a["name"] in attacks]
    return cfg


def cells_of(out):
    store = Store(out / "cells.sqlite", readonly=True)
    try:
        return store.cells()
    finally:
        store.close()


def test_a_rerun_on_other_samples_drops_the_cells_it_supersedes_and_keeps_the_rest(small_config, tmp_path):
    """Other samples (a changed dataset stands for a regenerated one or a retrained zoo: the keys change, the grid
    points do not): the old cells of every point the plan still has go, with their outcomes and units; a point the
    plan dropped stays; the report, which would refuse a suite over two sample sets, is written."""
    first = run_grid(parse_config(small(small_config, size=16, attacks=["pgd", "fgsm"])), tmp_path, progress=False)
    old = {c.key: c for c in cells_of(tmp_path)}
    assert first.dropped == 0 and len(old) == 8  # pgd: 2 budgets x steps 1, 2, 4; fgsm: 2 budgets x 1

    second = run_grid(parse_config(small(small_config, size=24, attacks=["pgd"])), tmp_path, progress=False)
    cells = cells_of(tmp_path)
    assert second.dropped == 6 and second.generated == 2 and second.reused == 0
    assert {c.attack for c in cells if c.n == 16} == {"fgsm"}  # the point the plan no longer has is kept
    assert {c.key for c in cells if c.n == 16} == {k for k, c in old.items() if c.attack == "fgsm"}
    assert sorted((c.eps, c.steps) for c in cells if c.n == 24) == [(e, t) for e in (0.0, 0.05) for t in (1, 2, 4)]
    db = sqlite3.connect(tmp_path / "cells.sqlite")
    live = {c.key for c in cells}
    for table in ("outcomes", "metrics"):
        assert {k for (k,) in db.execute(f"SELECT DISTINCT key FROM {table}")} == live
    assert {u for (u,) in db.execute("SELECT key FROM units")} == {c.unit for c in cells}
    assert (tmp_path / "leaderboard.md").is_file()

    again = run_grid(parse_config(small(small_config, size=24, attacks=["pgd"])), tmp_path, progress=False)
    assert again.dropped == 0 and again.generated == 0  # an unchanged rerun deletes nothing
