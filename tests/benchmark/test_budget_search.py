"""The per-sample budget search: each sample's minimal breaking budget against an independent reference, its cost,
its curve against the plain per-budget runs on the zoo, and how the planner, runner and leaderboard carry it."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from robustgrid.attacks import build_attack
from robustgrid.benchmark import parse_config, run_grid
from robustgrid.benchmark.budget_search import SEARCHES, binary_search, descending_search, fooled_at
from robustgrid.benchmark.curves import PROBED, envelopes, final_cells
from robustgrid.benchmark.leaderboard import budget_curves
from robustgrid.benchmark.planner import plan_suite
from robustgrid.benchmark.shards import ShardJob, ShardResult
from robustgrid.benchmark.store import Store
from robustgrid.core import RobustgridError

BUDGETS = [0.01, 0.02, 0.04, 0.08, 0.1, 0.2, 0.3]
CHECKPOINTS = [1, 2, 3]


class Threshold(nn.Module):
    """Class 1 exactly when an image's mean exceeds 0.5: an image of value v is broken from eps > 0.5 - v on."""

    def forward(self, x: Tensor) -> Tensor:
        m = x.flatten(1).mean(1, keepdim=True) - 0.5
        return torch.cat([-m, m], 1) * 100


def threshold_batch(thresholds: np.ndarray) -> tuple[Tensor, Tensor]:
    x = torch.tensor(0.5 - thresholds, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 1, 2, 2).contiguous()
    return x, torch.zeros(len(x), dtype=torch.long)


def step_attack():
    """One signed step to the ball's edge, no random start: broken at eps exactly when eps > the threshold."""
    return build_attack("pgd", eps=max(BUDGETS), steps=max(CHECKPOINTS), step_size=1.0, random_start=False)


@pytest.mark.parametrize("how", sorted(SEARCHES))
@pytest.mark.parametrize("early_stop", [True, False])
def test_search_finds_every_samples_minimal_budget(early_stop, how):
    rng = np.random.default_rng(0)
    # thresholds between the budgets, below 0 (broken clean) and above the largest (never broken)
    t = np.concatenate([rng.uniform(0.001, 0.35, 60), [-0.05, -0.01, 0.4, 0.45]])
    t = t[np.abs(t[:, None] - np.array(BUDGETS)[None]).min(1) > 1e-3]
    x, y = threshold_batch(t)
    res = SEARCHES[how](step_attack(), [Threshold()], x, y, BUDGETS, CHECKPOINTS, seed=0, early_stop=early_stop)
    expected = np.where(t < 0, -1, np.searchsorted(BUDGETS, t, side="right"))
    assert res.minimal.tolist() == expected.tolist()
    model = Threshold()
    for e in BUDGETS:
        for k in CHECKPOINTS:
            xk = res.images[e, k]
            assert float((xk - x).abs().max()) <= e + 1e-6  # every image lies in its own ball
            with torch.no_grad():
                robust = (model(xk).argmax(1) == 0).numpy()
            assert robust.tolist() == (t >= e).tolist()


def test_search_costs_log2_runs_per_sample_where_nothing_breaks():
    x, y = threshold_batch(np.full(16, 0.5))  # robust at every budget: every probe runs every step
    res = binary_search(step_attack(), [Threshold()], x, y, BUDGETS, CHECKPOINTS, seed=0)
    runs = len(BUDGETS).bit_length()  # ceil(log2(B + 1)) = 3 probes, against B = 7 plain runs
    assert sum(res.probed.values()) == 16 * runs
    assert res.grad_evals == 16 * runs * max(CHECKPOINTS)
    assert sum(res.cost[e, max(CHECKPOINTS)] for e in BUDGETS) == res.grad_evals


def test_descending_pays_one_failed_run_per_sample_below_its_first_round():
    """Each sample runs every budget from the largest down to its minimal one and fails once below it; a sample
    whose minimal budget is above the first round's (the upper half, one batch) fails at every budget there."""
    t = np.array([0.005, 0.015, 0.03, 0.05, 0.09, 0.15, 0.25, 0.5])  # minimal index 0 .. 7 (7: never broken)
    x, y = threshold_batch(t)
    res = descending_search(step_attack(), [Threshold()], x, y, BUDGETS, CHECKPOINTS, seed=0)
    minimal = np.searchsorted(BUDGETS, t, side="right")
    assert res.minimal.tolist() == minimal.tolist()
    m, head = len(BUDGETS), len(BUDGETS) // 2
    runs = [m - i + (i > 0) if i <= head else m - head for i in minimal]
    assert sum(res.probed.values()) == sum(runs)
    binary = binary_search(step_attack(), [Threshold()], x, y, BUDGETS, CHECKPOINTS, seed=0)
    assert binary.minimal.tolist() == res.minimal.tolist()


def test_search_on_the_zoo_is_no_weaker_than_the_plain_envelope():
    """Deterministic I-FGSM on fmnist-resnet: at every (budget, checkpoint) the search's robust accuracy is at most
    the envelope of one plain run per budget, for fewer gradient evaluations."""
    from robustgrid.models.data import build_dataset
    from robustgrid.models.zoo import zoo_target

    ds = build_dataset("fashion-mnist", split="test", size=48, seed=0)
    x, y = ds.images, ds.labels
    model = zoo_target("fmnist-resnet", allow_train=False).module
    budgets, checkpoints = [0.005, 0.01, 0.02, 0.04, 0.08], [1, 2, 5, 10]
    attack = build_attack("ifgsm", eps=max(budgets), steps=10, step_size=0.01)
    res = {how: search(attack, [model], x, y, budgets, checkpoints, seed=0) for how, search in SEARCHES.items()}

    def robust(xk: Tensor) -> np.ndarray:
        with torch.inference_mode():
            return (model(xk).argmax(1) == y).numpy()

    still = {k: robust(x) for k in checkpoints}
    plain_cost = 0
    for e in budgets:
        run = attack.run(model, x, y, seed=0, eps=e, checkpoints=checkpoints, early_stop=True)
        plain_cost += run.grad_evals
        for k in checkpoints:
            still[k] = still[k] & robust(run.checkpoints[k])
            for how, got in res.items():
                assert robust(got.images[e, k]).mean() <= still[k].mean(), (how, e, k)
    assert res["descending"].grad_evals <= res["binary"].grad_evals < plain_cost


@pytest.mark.parametrize("early_stop", [True, False])
def test_one_batch_per_round_gives_the_search_of_one_batch_per_budget(early_stop):
    """Deterministic I-FGSM on fmnist-resnet: running each round's probes (and the fill-ins) as one batch with a
    per-sample eps finds the same minimal budgets, samples probed and images as one run per budget probed; the
    fill-in batch may spend more (rows a smaller fill-in made unnecessary), never less."""
    from robustgrid.models.data import build_dataset
    from robustgrid.models.zoo import zoo_target

    class PerBudget(type(build_attack("ifgsm"))):
        per_sample_eps = False  # the grouping an attack without a per-sample eps gets

    ds = build_dataset("fashion-mnist", split="test", size=48, seed=0)
    x, y = ds.images, ds.labels
    model = zoo_target("fmnist-resnet", allow_train=False).module
    budgets, checkpoints = [0.005, 0.01, 0.02, 0.04, 0.08], [1, 2, 5, 10]
    params = {"eps": max(budgets), "steps": 10, "step_size": 0.01}
    batched = binary_search(build_attack("ifgsm", **params), [model], x, y, budgets, checkpoints, seed=0,
                            early_stop=early_stop)
    grouped = binary_search(PerBudget(**params), [model], x, y, budgets, checkpoints, seed=0, early_stop=early_stop)
    assert batched.minimal.tolist() == grouped.minimal.tolist()
    assert batched.probed == grouped.probed
    for point, image in grouped.images.items():
        assert torch.equal(batched.images[point], image), point
    assert batched.grad_evals >= grouped.grad_evals
    assert sum(batched.cost[e, max(checkpoints)] for e in budgets) == batched.grad_evals


def _zoo_case(n: int = 48):
    from robustgrid.models.data import build_dataset
    from robustgrid.models.zoo import zoo_target

    ds = build_dataset("fashion-mnist", split="test", size=n, seed=0)
    return ds.images, ds.labels, zoo_target("fmnist-resnet", allow_train=False).module


def test_chained_levels_run_what_the_rounds_run():
    """Deterministic I-FGSM in float64 (a shared pass's other batch size can flip a float32 gradient sign): the
    descending search whose levels start per sample as soon as they may (``_chain``) finds the same minimal
    budgets, probes the same samples, keeps the same images and pays the same gradient evaluations as the one
    that waits for whole rounds."""

    class Rounds(type(build_attack("ifgsm"))):
        def shares_passes(self, eot_samples: int = 1) -> bool:
            return False  # the round-by-round search

    x, y, model = _zoo_case()
    x, model = x.double(), copy.deepcopy(model).double()
    budgets, checkpoints = [0.005, 0.01, 0.02, 0.04, 0.08], [1, 2, 5, 10]
    params = {"eps": max(budgets), "steps": 10, "step_size": 0.01}
    chained = descending_search(build_attack("ifgsm", **params), [model], x, y, budgets, checkpoints, seed=0)
    rounds = descending_search(Rounds(**params), [model], x, y, budgets, checkpoints, seed=0)
    assert chained.minimal.tolist() == rounds.minimal.tolist() and chained.probed == rounds.probed
    assert chained.grad_evals == rounds.grad_evals and chained.cost == rounds.cost
    for point, image in rounds.images.items():
        assert torch.equal(chained.images[point], image), point


@pytest.mark.parametrize("how", sorted(SEARCHES))
def test_a_search_keeps_its_sources_outcomes_of_every_image(how):
    """The outcomes the runs' own passes saw are the source's predictions of each point's images; an ensemble
    search has none (which source's?)."""
    x, y, model = _zoo_case()
    attack = build_attack("pgd", eps=0.08, steps=10, step_size=0.01)
    budgets, checkpoints = [0.005, 0.01, 0.02, 0.04, 0.08], [1, 2, 5, 10]
    res = SEARCHES[how](attack, [model], x, y, budgets, checkpoints, seed=0)
    assert res.outcomes is not None and sorted(res.outcomes) == sorted(res.images)
    for point, image in res.images.items():
        with torch.inference_mode():
            assert (model(image).argmax(1).numpy() == res.outcomes[point]).all(), point
    assert SEARCHES[how](attack, [model, model], x, y, budgets, checkpoints, seed=0).outcomes is None


SEARCH_TOML = {
    "seed": 0,
    "suite": [{
        "name": "s", "task": "classification", "dataset": {"name": "fashion-mnist", "split": "test", "size": 24},
        "targets": ["fmnist-resnet", "fmnist-mobilenet"], "threats": ["whitebox", "transfer"],
        "budget": {"norm": "linf", "eps": [0.0, 0.02, 0.05, 0.1], "checkpoints": [1, 2], "search": "binary"},
        "batch_size": 16, "attacks": [{"name": "pgd", "steps": 4, "rel_step_size": 0.5}],
    }],
}


def test_planner_searches_only_where_source_success_is_success():
    cfg = parse_config(SEARCH_TOML)
    plain = parse_config({**SEARCH_TOML, "suite": [{**SEARCH_TOML["suite"][0],
                                                    "budget": {**SEARCH_TOML["suite"][0]["budget"],
                                                               "search": "none"}}]})
    ids = {"dataset": "d", "fmnist-resnet": "r", "fmnist-mobilenet": "m"}
    units = plan_suite(cfg.suites[0], 0, ids)
    plain_units = plan_suite(plain.suites[0], 0, ids)
    search = [u for u in units if u.budgets]
    assert {u.threat for u in search} == {"whitebox"} and all(u.budgets == (0.02, 0.05, 0.1) for u in search)
    assert len(search) == 2  # one per whitebox target, instead of three per-budget units each
    # the same grid points; the zero budget and the transfer units keep their plain keys (clean cells are shared)
    assert len({(c.target, c.threat, c.eps, c.steps) for u in units for c in u.cells}) == \
        len({(c.target, c.threat, c.eps, c.steps) for u in plain_units for c in u.cells})
    plain_keys = {c.key for u in plain_units for c in u.cells}
    kept = {c.key for u in units if not u.budgets for c in u.cells}
    assert kept <= plain_keys and any(c.eps == 0 for u in units if not u.budgets for c in u.cells)
    assert not {c.key for u in search for c in u.cells} & plain_keys
    # through a randomised purifier the search cannot decide, so the budgets stay separate
    assert not any(u.budgets for u in plan_suite(cfg.suites[0], 0, ids, randomized=frozenset({"none"})))


@pytest.mark.parametrize("how", sorted(SEARCHES))
def test_a_search_grid_stores_monotone_curves_whose_costs_add_up(tmp_path, how):
    cfg = copy.deepcopy(SEARCH_TOML)
    cfg["suite"][0]["budget"]["search"] = how
    run_grid(parse_config(cfg), tmp_path, progress=False, report=False)
    store = Store(tmp_path / "cells.sqlite")
    cells = store.cells()
    units = {u.key: u for u in store.units()}
    final = final_cells(cells)
    searched = [c for c in final if PROBED in c.metrics]
    assert searched and {c.threat for c in searched} == {"whitebox"}
    for unit in {c.unit for c in searched}:
        group = sorted((c for c in searched if c.unit == unit), key=lambda c: c.eps)
        assert all(a.value >= b.value for a, b in zip(group, group[1:]))  # the envelope never rises
        assert sum(c.grad_evals for c in group) == units[unit].grad_evals  # each probe's cost at its own budget
        assert all(0 <= c.metrics[PROBED] <= 1 for c in group)
    kinds = {(b.threat, b.kind) for b in budget_curves(final, envelopes(store, cells))}
    assert kinds == {("whitebox", "search"), ("transfer", "plain"), ("transfer", "envelope")}
    store.close()


@pytest.mark.parametrize("search, task, message", [
    ("binay", "classification", "unknown budget search 'binay'; valid: none, binary, descending"),
    ("binary", "segmentation", "budget search 'binary' needs a per-sample success, which task 'segmentation' has"),
])
def test_a_bad_budget_search_is_a_one_line_error(search, task, message):
    cfg = copy.deepcopy(SEARCH_TOML)
    cfg["suite"][0]["budget"]["search"] = search
    cfg["suite"][0]["task"] = task
    with pytest.raises(RobustgridError) as info:
        parse_config(cfg)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_shard_results_keep_budget_keys_through_bytes():
    job = ShardJob(0, "u", 0, 1, 0, 2, 0)
    result = ShardResult(job, {(0.1, 2, "fmnist-resnet", "none"): np.array([1, 2])},
                         {(1 / 255, 2, "linf"): np.array([0.5])}, {(0.1, 2): 7, (1 / 255, 2): 3}, 10, 4, 1.0, 0.5,
                         {(0.1, 2): 5}, 5, {0.1: 2})
    back = ShardResult.from_bytes(job, result.to_bytes())
    assert dataclasses.replace(back, outcomes={}, pairs={}) == dataclasses.replace(result, outcomes={}, pairs={})
    assert back.outcomes.keys() == result.outcomes.keys() and back.pairs.keys() == result.pairs.keys()


def test_fooled_at_checks_every_iterate_unless_the_run_froze_them():
    x_fool, _ = threshold_batch(np.array([-0.1, -0.1]))
    x_keep, y = threshold_batch(np.array([0.1, 0.1]))
    iterates = {1: torch.stack([x_fool[0], x_keep[1]]), 2: torch.stack([x_keep[0], x_fool[1]])}
    model = Threshold()
    got = fooled_at([model], lambda out, t: out.argmax(1) != t, iterates, y, frozen=False)
    assert {k: v.tolist() for k, v in got.items()} == {1: [True, False], 2: [False, True]}
    frozen = fooled_at([model], lambda out, t: out.argmax(1) != t, {1: iterates[2], 2: iterates[2]}, y, frozen=True)
    assert {k: v.tolist() for k, v in frozen.items()} == {1: [False, True], 2: [False, True]}
