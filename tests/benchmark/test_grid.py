"""End-to-end grid on a tiny config: cells, curves, envelope, transfer reuse, report, reproducibility."""

from __future__ import annotations

import csv
import sqlite3

import numpy as np

from robustgrid.benchmark import parse_config, run_grid
from robustgrid.benchmark.curves import envelopes
from robustgrid.benchmark.store import Store


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_small_grid_end_to_end(small_config, tmp_path):
    summary = run_grid(parse_config(small_config), tmp_path, progress=False)
    # units: per attack, per eps: 2 whitebox + 2 transfer (each target as the single source)
    assert summary.generated == 2 * 3 * 4 and summary.reused == 0
    table = rows(tmp_path / "cells.csv")
    store = Store(tmp_path / "cells.sqlite")
    try:
        cells = store.cells()
        env = envelopes(store, cells)
    finally:
        store.close()
    # pgd: checkpoints 1, 2, 4 -> 3 cells per unit; fgsm: 1 cell per unit
    assert len(cells) == len(table) == 3 * (3 * 4) + 1 * (3 * 4)
    final = {(c.attack, c.threat, c.target, c.eps): c for c in cells if c.steps in (4,) or c.attack == "fgsm"}
    for attack in ("pgd", "fgsm"):
        for target in ("fmnist-resnet", "fmnist-mobilenet"):
            accs = [final[attack, "whitebox", target, e].value for e in (0.0, 0.05, 0.15)]
            assert accs[0] > 0.7 and accs[-1] < accs[0], accs
            envs = [env[final[attack, "whitebox", target, e].key] for e in (0.0, 0.05, 0.15)]
            assert all(a >= b for a, b in zip(envs, envs[1:]))  # envelope never rises
            assert all(e <= a + 1e-12 for e, a in zip(envs, accs))  # and is never above the plain curve
    # whitebox pgd breaks more than transfer pgd at the largest budget
    wb = final["pgd", "whitebox", "fmnist-resnet", 0.15].value
    tr = final["pgd", "transfer", "fmnist-resnet", 0.15].value
    assert wb <= tr
    # the report exists and names every artefact
    for name in ("leaderboard.md", "index.html", "cells.csv", "summary.json"):
        assert (tmp_path / name).is_file()
    assert list(tmp_path.glob("budget_*.png")) and list(tmp_path.glob("iterations_*.png"))
    assert list(tmp_path.glob("transfer_*.png"))
    md = (tmp_path / "leaderboard.md").read_text()
    assert "fmnist-resnet" in md and "gradient evaluations" in md
    assert {r["seed"] for r in table} and all(r["torch"] for r in table)


def test_same_config_same_numbers_and_full_reuse(small_config, tmp_path):
    cfg = parse_config(small_config)
    run_grid(cfg, tmp_path / "a", progress=False, report=False)
    run_grid(cfg, tmp_path / "b", progress=False, report=False)
    q = "SELECT key, value, grad_evals FROM cells ORDER BY key"
    a = sqlite3.connect(tmp_path / "a" / "cells.sqlite").execute(q).fetchall()
    b = sqlite3.connect(tmp_path / "b" / "cells.sqlite").execute(q).fetchall()
    assert a == b and len(a) > 0
    again = run_grid(cfg, tmp_path / "a", progress=False, report=False)
    assert again.generated == 0 and again.reused > 0


def test_early_stop_saves_gradient_evaluations(small_config, tmp_path):
    run_grid(parse_config(small_config), tmp_path, progress=False, report=False)
    con = sqlite3.connect(tmp_path / "cells.sqlite")
    wb = con.execute("SELECT grad_evals, naive_grad_evals FROM cells WHERE threat='whitebox' AND attack='pgd' "
                     "AND eps=0.15 AND steps=4").fetchall()
    tr = con.execute("SELECT grad_evals, naive_grad_evals FROM cells WHERE threat='transfer' AND attack='pgd' "
                     "AND eps=0.15 AND steps=4").fetchall()
    assert all(g < n for g, n in wb)        # early stop: fooled samples leave the batch
    assert all(g == n for g, n in tr)       # transfer runs every sample for every step
    zero = con.execute("SELECT MAX(grad_evals) FROM cells WHERE eps=0").fetchone()[0]
    assert zero == 0


def test_per_sample_outcomes_recompute_the_metric(small_config, tmp_path):
    run_grid(parse_config(small_config), tmp_path, progress=False, report=False)
    store = Store(tmp_path / "cells.sqlite")
    try:
        for c in store.cells()[:10]:
            labels = store.labels(c.suite, c.dataset)
            assert np.isclose((store.outcome(c.key) == labels).mean(), c.value)
    finally:
        store.close()
