"""The report's figures read at a glance: a shaded bootstrap band per curve, the envelope dashed and named,
log budgets for L2 with the clean point kept, one legend that covers no panel, axes named from the data."""

from __future__ import annotations

import dataclasses
import math

import pytest
from matplotlib.collections import PolyCollection

from robustgrid.benchmark.plots import BAND_LABEL, ENVELOPE_LABEL, budget_figure, iteration_figure, plt
from robustgrid.benchmark.records import CellRow
from robustgrid.benchmark.stats import Interval


def cell(attack: str, eps: float, steps: int, value: float, *, target: str = "t", norm: str = "linf",
         threat: str = "whitebox") -> CellRow:
    key = f"{attack}|{target}|{norm}|{eps}|{steps}"
    return CellRow(key=key, unit=key, suite="s", task="classification", dataset="d", attack=attack,
                   attack_spec="{}", sources=(target,), threat=threat, norm=norm, eps=eps, steps=steps,
                   target=target, defense="none", seed=0, metric="accuracy", value=value, n=100, grad_evals=0,
                   naive_grad_evals=0, eval_seconds=0.0, clean_key="c", provenance="p", created=0.0, metrics={},
                   access="gradient", queries=0)


def grid(norm: str = "linf", budgets: tuple[float, ...] = (0.0, 0.05, 0.1)) -> list[CellRow]:
    """Two targets, PGD at checkpoints 1, 2, 4 and FGSM (one step), accuracy falling with budget and steps."""
    out = []
    for target in ("a", "b"):
        for eps in budgets:
            out += [cell("pgd", eps, k, max(0.9 - 4 * eps * k, 0.0), target=target, norm=norm) for k in (1, 2, 4)]
            out.append(cell("fgsm", eps, 1, 0.9 - 3 * eps, target=target, norm=norm))
    return out


def bands(cells: list[CellRow], half: float = 0.05) -> dict[str, Interval]:
    return {c.key: Interval(c.value, c.value - half, c.value + half, 0.95, 200) for c in cells}


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def panels(fig) -> list:
    return [ax for ax in fig.axes if ax.get_visible()]


def test_budget_bands_are_shaded_between_the_bootstrap_bounds_of_each_point():
    cells = grid()
    fig = budget_figure(cells, "s", "whitebox", "accuracy", {}, bands(cells))
    pgd = next(ax for ax in panels(fig) if ax.get_title().startswith("pgd"))
    (a, b) = [c for c in pgd.collections if isinstance(c, PolyCollection)]  # one band per curve (targets a, b)
    for band, target in zip((a, b), "ab", strict=True):
        finals = sorted((c for c in cells if c.attack == "pgd" and c.steps == 4 and c.target == target),
                        key=lambda c: c.eps)
        verts = band.get_paths()[0].vertices
        for c in finals:  # the polygon spans exactly [low, high] at each budget
            ys = [y for x, y in verts if math.isclose(x, c.eps)]
            assert min(ys) == pytest.approx(c.value - 0.05) and max(ys) == pytest.approx(c.value + 0.05)
    # a lone point (FGSM's iteration curve, one checkpoint) gets an error bar instead of an invisible band
    fgsm = next(ax for ax in panels(iteration_figure(cells, "s", "whitebox", "accuracy", bands(cells)))
                if ax.get_title().startswith("fgsm"))
    assert fgsm.containers and not [c for c in fgsm.collections if isinstance(c, PolyCollection)]


def test_without_bands_nothing_is_shaded_and_the_legend_does_not_promise_a_band():
    fig = budget_figure(grid(), "s", "whitebox", "accuracy", {})
    assert all(not isinstance(c, PolyCollection) for ax in panels(fig) for c in ax.collections)
    assert BAND_LABEL not in [t.get_text() for t in fig.legends[0].get_texts()]


def test_the_envelope_is_dashed_and_named_and_the_plain_curve_solid():
    cells = grid()
    env = {c.key: c.value - 0.1 for c in cells}
    fig = budget_figure(cells, "s", "whitebox", "accuracy", env, bands(cells))
    for ax in panels(fig):
        styles = [line.get_linestyle() for line in ax.get_lines()]
        assert styles.count("--") == styles.count("-") == 2  # per target: plain solid, envelope dashed
        attack = ax.get_title().split()[0]
        full = max(c.steps for c in cells if c.attack == attack)
        want = [[env[c.key] for c in sorted(cells, key=lambda c: c.eps) if (c.attack, c.target, c.steps) ==
                 (attack, target, full)] for target in "ab"]
        assert sorted(list(line.get_ydata()) for line in ax.get_lines() if line.get_linestyle() == "--") == want
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert ENVELOPE_LABEL == "envelope (broken at any budget <= eps)" and ENVELOPE_LABEL in labels
    assert BAND_LABEL in labels and {"a", "b"} <= set(labels)


def test_l2_budgets_are_log_scaled_with_eps_zero_kept_and_linf_stays_linear():
    l2 = budget_figure(grid("l2", (0.0, 0.1, 0.5, 2.0)), "s", "whitebox", "accuracy", {})
    for ax in panels(l2):
        assert ax.get_xscale() == "symlog"
        assert ax.xaxis.get_transform().linthresh == 0.1  # linear only below the smallest positive budget
        assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "0.1", "0.5", "2"]
        assert ax.get_xlabel() == "eps (l2)"
        (x0, *_), = {tuple(line.get_xdata()) for line in ax.get_lines()}
        assert x0 == 0.0 and ax.get_xlim()[0] <= 0.0  # the clean point is drawn
    assert all(ax.get_xscale() == "linear" for ax in panels(budget_figure(grid(), "s", "whitebox", "accuracy", {})))
    forced = budget_figure(grid(), "s", "whitebox", "accuracy", {}, log_budget=True)
    assert all(ax.get_xscale() == "symlog" for ax in panels(forced))
    # only the clean budget: nothing to log-scale, no error
    assert all(ax.get_xscale() == "linear" for ax in panels(budget_figure(
        grid("l2", (0.0,)), "s", "whitebox", "accuracy", {})))


def test_one_legend_below_the_panels_covers_no_data_and_is_readable():
    cells = [cell(c.attack, c.eps, c.steps, c.value, target=t) for t in ("alpha", "beta", "gamma", "delta")
             for c in grid() if c.target == "a"]  # four curves a panel
    for fig in (budget_figure(cells, "s", "whitebox", "accuracy", {c.key: c.value for c in cells}, bands(cells)),
                iteration_figure(cells, "s", "whitebox", "accuracy", bands(cells))):
        fig.canvas.draw()
        assert all(ax.get_legend() is None for ax in fig.axes)
        (legend,) = fig.legends
        box = legend.get_window_extent()
        assert not any(box.overlaps(ax.get_window_extent()) for ax in panels(fig))
        assert all(t.get_fontsize() >= 8 for t in legend.get_texts())
        assert all(lbl.get_fontsize() >= 8 for ax in panels(fig) for lbl in ax.get_xticklabels())


def test_the_iteration_axis_is_named_by_the_data():
    cells = grid()
    fig = iteration_figure(cells, "s", "whitebox", "accuracy")
    assert {ax.get_xlabel() for ax in panels(fig)} == {"iterations"}
    queried = iteration_figure([dataclasses.replace(c, access="score") if c.attack == "pgd" else c for c in cells],
                               "s", "whitebox", "accuracy")  # the default axis reads the cells' access
    assert {ax.get_title().split()[0]: ax.get_xlabel() for ax in panels(queried)} == \
        {"pgd": "queries", "fgsm": "iterations"}
    pgd = next(ax for ax in panels(fig) if ax.get_title().startswith("pgd"))
    assert pgd.get_xscale() == "log" and [t.get_text() for t in pgd.get_xticklabels()] == ["1", "2", "4"]
    assert pgd.get_title() == "pgd (whitebox, eps=0.1)"  # the curve at the largest budget
    assert sorted(tuple(line.get_ydata()) for line in pgd.get_lines()) == \
        [tuple(max(0.9 - 0.4 * k, 0.0) for k in (1, 2, 4))] * 2


def test_nothing_to_draw_gives_no_figure():
    assert budget_figure(grid(), "s", "transfer", "accuracy", {}) is None
    assert iteration_figure(grid(), "other", "whitebox", "accuracy") is None
