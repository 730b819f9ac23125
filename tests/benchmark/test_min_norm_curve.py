"""A minimum-norm attack's curve at every eps from one run: the grid stores its per-sample norms, and the curve the
report draws from them is the attack's own minimal norms, checked against the attack run by hand."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest

from robustgrid.benchmark import parse_config, run_grid
from robustgrid.benchmark.curves import key_of, min_norm_accuracy, min_norm_curves
from robustgrid.benchmark.plots import MIN_NORM_LABEL, budget_figure, plt
from robustgrid.benchmark.runner import configure_attack, prepare
from robustgrid.benchmark.store import Store
from robustgrid.benchmark.threats import get_threat

N, EPS = 24, (0.0, 0.05, 0.15)

TOML = f"""
seed = 0

[[suite]]
name = "mn"
task = "classification"
dataset = {{ name = "fashion-mnist", split = "test", size = {N} }}
targets = ["fmnist-resnet"]
threats = ["whitebox"]
budget = {{ norm = "linf", eps = {list(EPS)} }}
batch_size = {N}

[[suite.attacks]]
name = "fmn"
steps = 10

[[suite.attacks]]
name = "pgd"
steps = 5
"""


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    out = tmp_path_factory.mktemp("min-norm")
    cfg = parse_config(tomllib.loads(TOML))
    run_grid(cfg, out, progress=False, report=False)
    store = Store(out / "cells.sqlite", readonly=True)
    try:
        yield cfg, store, store.cells()
    finally:
        store.close()


def test_only_minimum_norm_cells_store_norms_and_they_lie_in_the_ball(grid):
    _, store, cells = grid
    for c in cells:
        norms = store.norms(c.key)
        assert (norms is not None) is (c.attack == "fmn")
        if norms is not None:
            assert norms.shape == (N,) and float(norms.max()) <= c.eps + 1e-6


def test_the_curve_is_the_attacks_own_minimal_norms_at_every_eps(grid):
    cfg, store, cells = grid
    curves = min_norm_curves(store, cells)
    (key,) = [k for k in curves if k.attack == "fmn"]
    p = prepare(cfg.suites[0], cfg.seed, cfg.raw)
    (unit,) = [u for u in p.units if u.attack.name == "fmn" and u.eps == max(EPS)]
    attack, options = configure_attack(p, unit)
    x, y = next(p.data.batches(N, 0, N))
    models = get_threat(unit.threat).attack_modules(p.targets, p.defenses, unit)
    res = attack.run(models, x, y, seed=unit.seed, eps=unit.eps, checkpoints=unit.checkpoints, **options)
    norms = res.min_norms.numpy()
    norms = np.where(norms <= unit.eps + 1e-6, norms, np.inf)  # found beyond the budget: not broken within it
    xs, ys = curves[key]
    grid_eps = np.linspace(0, max(EPS), 31)
    drawn = [ys[np.searchsorted(xs, e, side="right") - 1] for e in grid_eps]
    assert np.allclose(drawn, min_norm_accuracy(norms, grid_eps), atol=1.5 / N)  # one sample at a norm's edge
    assert all(a >= b for a, b in zip(ys, ys[1:]))  # never rises
    top = next(c for c in cells if key_of(c) == key and c.eps == max(EPS) and c.steps == 10)
    assert ys[-1] == pytest.approx(top.value)  # at the largest budget: the stored cell itself


def test_the_budget_plot_draws_the_minimum_norm_curve_beside_the_per_budget_ones(grid):
    _, store, cells = grid
    curves = min_norm_curves(store, cells)
    fig = budget_figure(cells, "mn", "whitebox", "accuracy", {}, min_norm=curves)
    try:
        fmn = next(ax for ax in fig.axes if ax.get_title().startswith("fmn"))
        dotted = [line for line in fmn.get_lines() if line.get_linestyle() == ":"]
        assert len(dotted) == 1 and max(dotted[0].get_xdata()) == pytest.approx(max(EPS))
        assert MIN_NORM_LABEL in [t.get_text() for t in fig.legends[0].get_texts()]
        pgd = next(ax for ax in fig.axes if ax.get_title().startswith("pgd"))
        assert not [line for line in pgd.get_lines() if line.get_linestyle() == ":"]
    finally:
        plt.close(fig)
