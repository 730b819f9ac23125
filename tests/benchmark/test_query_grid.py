"""The query threats through the real grid: tiny query attacks (``query_attacks.py``) on a committed target, bare
and behind a deterministic and a randomised, non-differentiable purifier; what the store and the report say."""

from __future__ import annotations

import dataclasses
import json
import tomllib

import numpy as np
import pytest
import torch

from robustgrid.benchmark import parse_config, run_grid
from robustgrid.benchmark.plots import iteration_plot
from robustgrid.benchmark.runner import configure_attack, prepare, run_shard, shard_jobs
from robustgrid.benchmark.sanity import CONVERGENCE_TOLERANCE, TOLERANCE
from robustgrid.benchmark.store import Store
from robustgrid.defenses import Defended
from robustgrid.models.oracle import ScoreOracle
from tests.benchmark import query_attacks
from tests.benchmark.test_report import md_table

N, EPS, STEPS = 16, 0.3, 8

QUERY_TOML = f"""
seed = 0

[[suite]]
name = "query"
task = "classification"
dataset = {{ name = "fashion-mnist", split = "test", size = {N} }}
targets = ["fmnist-resnet"]
defenses = ["none", "gaussian", "test-noisy-round"]
threats = ["whitebox", "score"]
budget = {{ norm = "linf", eps = [0.0, {EPS}], checkpoints = [2, 4] }}
batch_size = {N}

[[suite.attacks]]
name = "test-random-search"
steps = {STEPS}

[[suite.attacks]]
name = "test-flip-search"
steps = {STEPS}

[[suite]]
name = "label"
task = "classification"
dataset = {{ name = "fashion-mnist", split = "test", size = {N} }}
targets = ["fmnist-resnet"]
defenses = ["none", "test-noisy-round"]
threats = ["decision"]
budget = {{ norm = "linf", eps = [0.0, {EPS}], checkpoints = [2, 4] }}
batch_size = {N}

[[suite.attacks]]
name = "test-flip-search"
steps = {STEPS}

[[suite]]
name = "gradient"
task = "classification"
dataset = {{ name = "fashion-mnist", split = "test", size = {N} }}
targets = ["fmnist-resnet"]
threats = ["whitebox"]
budget = {{ norm = "linf", eps = [0.0, {EPS}] }}
batch_size = {N}

[[suite.attacks]]
name = "pgd"
steps = 1
step_size = 0.001  # far too small a step: the query attacks on the same data beat it (query>gradient)
random_start = false
"""


@pytest.fixture(scope="module")
def query_grid(tmp_path_factory):
    """The store and report of the query grid (the test attacks registered only while it runs)."""
    out = tmp_path_factory.mktemp("query-grid")
    with pytest.MonkeyPatch.context() as mp:
        query_attacks.register(mp)
        run_grid(parse_config(tomllib.loads(QUERY_TOML)), out, progress=False)
    store = Store(out / "cells.sqlite", readonly=True)
    try:
        yield out, store.cells(), store.units()
    finally:
        store.close()


def test_query_cells_sit_bare_and_behind_every_purifier_where_the_attack_queried(query_grid):
    _, cells, _ = query_grid
    where = {(c.suite, c.threat, c.attack, c.defense) for c in cells}
    assert {w for w in where if w[1] == "score"} == {("query", "score", a, d) for a in ("test-random-search",
                                                     "test-flip-search") for d in ("none", "gaussian",
                                                                                   "test-noisy-round")}
    assert {w for w in where if w[1] == "decision"} == {("label", "decision", "test-flip-search", d)
                                                        for d in ("none", "test-noisy-round")}
    assert {c.access for c in cells if c.attack == "test-random-search"} == {"score"}
    assert {c.access for c in cells if c.attack == "test-flip-search"} == {"decision"}


def test_query_cells_store_their_queries_and_no_gradient_evaluations(query_grid):
    _, cells, units = query_grid
    assert {c.suite for c in cells if not c.query_attack} == {"gradient"}
    cells = [c for c in cells if c.query_attack]
    assert {c.steps for c in cells} == {2, 4, STEPS}  # the checkpoints are query counts
    for c in cells:
        assert c.grad_evals == c.naive_grad_evals == 0
        if c.eps == 0:
            assert c.queries == 0
        else:  # step 1 queries every image; then one query per image still attacked and step
            assert N <= c.queries <= c.steps * N
    for c in cells:
        later = [d for d in cells if d.unit == c.unit and d.target == c.target and d.defense == c.defense
                 and d.threat == c.threat and d.steps > c.steps]
        assert all(d.queries >= c.queries for d in later)
    by_unit = {u.key: u for u in units}
    for c in cells:
        if c.steps == STEPS:
            assert by_unit[c.unit].queries == c.queries and by_unit[c.unit].grad_evals == 0


def test_behind_a_randomised_purifier_no_query_unit_early_stops(query_grid, monkeypatch):
    """Success on one noisy draw is not success on the evaluated one: every image spends its whole budget."""
    _, cells, _ = query_grid
    noisy = [c for c in cells if c.defense == "test-noisy-round" and c.eps > 0 and c.threat != "whitebox"]
    assert noisy and all(c.queries == c.steps * N for c in noisy)
    query_attacks.register(monkeypatch)
    cfg = parse_config(tomllib.loads(QUERY_TOML))
    p = prepare(cfg.suites[0], cfg.seed, cfg.raw)
    stops = {(u.threat, u.defense): configure_attack(p, u)[1]["early_stop"] for u in p.units}
    assert stops == {("whitebox", "none"): True, ("score", "none"): True, ("score", "gaussian"): True,
                     ("score", "test-noisy-round"): False}


def test_a_query_unit_behind_a_randomised_purifier_gives_the_stored_outcomes_again(query_grid, monkeypatch):
    """The purifier's draws during the attack come from the unit's seed, so a re-run reproduces the store."""
    _, cells, _ = query_grid
    query_attacks.register(monkeypatch)
    cfg = parse_config(tomllib.loads(QUERY_TOML))
    p = prepare(cfg.suites[0], cfg.seed, cfg.raw)
    (unit,) = [u for u in p.units if u.threat == "score" and u.defense == "test-noisy-round" and u.eps > 0
               and u.attack.name == "test-random-search"]
    stored = {c.steps: c for c in cells if c.unit == unit.key}
    store = Store(query_grid[0] / "cells.sqlite", readonly=True)
    try:
        for _ in range(2):
            (job,) = shard_jobs(p, 0, unit)
            result = run_shard(p, unit, job)
            for k, c in stored.items():
                outcome = result.outcomes[unit.eps, k, "fmnist-resnet", "test-noisy-round"]
                assert np.array_equal(outcome, store.outcome(c.key))
                # the kept proposals themselves, not only their labels: their L2 distances from the clean images
                assert float(np.mean(result.pairs[unit.eps, k, "l2"])) == c.metrics["mean_l2"]
    finally:
        store.close()


@pytest.mark.parametrize("defense", ["none", "gaussian"])
def test_a_score_cell_is_the_attack_run_on_an_oracle_of_the_purifier_and_target(query_grid, defense):
    """Re-run the unit's attack by hand on ``ScoreOracle(target behind purifier)`` with its seed: same accuracy at
    every query checkpoint, same queries."""
    from robustgrid.defenses import build_defense
    from robustgrid.models.data import build_dataset
    from robustgrid.models.zoo import zoo_target

    _, cells, _ = query_grid
    mine = sorted((c for c in cells if c.threat == "score" and c.attack == "test-random-search"
                   and c.defense == defense and c.eps == EPS), key=lambda c: c.steps)
    data = build_dataset("fashion-mnist", split="test", size=N)
    x, y = next(data.batches(N))
    model = zoo_target("fmnist-resnet", allow_train=False).module
    pipeline = model if defense == "none" else Defended(model, build_defense(defense))
    attack = query_attacks.RandomSearch(eps=EPS, steps=STEPS)
    oracle = ScoreOracle(pipeline)
    res = attack.run([oracle], x, y, seed=mine[0].seed, checkpoints=(2, 4, STEPS), early_stop=True)
    assert oracle.queries == res.queries == mine[-1].queries
    for c in mine:
        with torch.inference_mode():
            accuracy = float(np.mean(pipeline(res.checkpoints[c.steps]).argmax(1).numpy() == y.numpy()))
        assert c.value == pytest.approx(accuracy, abs=1e-12) and c.queries == res.queries_at[c.steps]


def test_the_leaderboard_has_score_and_decision_columns_and_ranks_by_the_worst_of_everything(query_grid):
    out, _, units = query_grid
    md = (out / "leaderboard.md").read_text(encoding="utf-8")
    label, query = (md_table(part, "| rank |") for part in md.split("\n## ")[2:4])  # suites in name order
    assert {"decision @0.3", "worst @0.3"} <= set(label[0]) and {"whitebox @0.3", "score @0.3"} <= set(query[0])
    for rows in (label, query):
        worst = [float(r["worst @0.3"]) for r in rows]
        assert worst == sorted(worst, reverse=True) and len(rows) > 1
        for r in rows:
            at_top = [float(v) for k, v in r.items() if k.endswith(" @0.3") and k != "worst @0.3" and v != "–"]
            assert r["worst @0.3"] == f"{min(at_top):.3f}"
    spent = sum(u.queries for u in units if u.suite == "query")
    assert f"Query attacks spent {spent:,} model queries (images queried)." in md


def test_a_query_attacks_iteration_curve_is_drawn_against_queries(query_grid, tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    _, cells, _ = query_grid
    labels: list[str] = []
    monkeypatch.setattr(Axes, "set_xlabel", lambda self, text, *a, **k: labels.append(text))
    iteration_plot(cells, "query", "score", "accuracy", tmp_path / "score.png")
    assert labels == ["queries", "queries"]
    # the same curves from a gradient attack are iterations
    gradient = [dataclasses.replace(c, access="gradient") for c in cells if c.suite == "query"]
    labels.clear()
    iteration_plot(gradient, "query", "score", "accuracy", tmp_path / "grad.png")
    assert labels == ["iterations", "iterations"]


def test_the_new_flags_fire_in_the_store_exactly_where_their_comparison_says(query_grid):
    """not-converged: a query curve falling by more than the tolerance over its last checkpoints; query>gradient: the
    query attacks against the weak one-step PGD of the gradient suite on the same data, bare target only."""
    out, cells, _ = query_grid
    flags = json.loads((out / "summary.json").read_text())["flags"]
    expect_nc, expect_qg = set(), set()
    pgd = {c.defense: c.value for c in cells if c.suite == "gradient" and c.eps == EPS}
    assert set(pgd) == {"none"}
    for c in cells:
        if c.eps != EPS or c.steps != STEPS:
            continue
        before = next(d for d in cells if d.unit == c.unit and d.steps == 4 and (d.target, d.defense, d.threat)
                      == (c.target, c.defense, c.threat))
        key = f"{c.suite}|{c.target}|{c.defense}|{c.threat}"
        if before.value - c.value > CONVERGENCE_TOLERANCE:
            expect_nc.add(key)
        if c.query_attack and c.defense in pgd and c.value < pgd[c.defense] - TOLERANCE:
            expect_qg.add(key)
    assert {k for k, v in flags.items() if "not-converged" in v} == expect_nc and expect_nc
    assert {k for k, v in flags.items() if "query>gradient" in v} == expect_qg
    assert expect_qg == {"query|fmnist-resnet|none|score", "query|fmnist-resnet|none|whitebox",
                         "label|fmnist-resnet|none|decision"}
