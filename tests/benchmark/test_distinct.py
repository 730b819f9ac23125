"""Evaluating each distinct image of a curve once (``benchmark.distinct``) gives what one evaluation per point
gives, for fewer images."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from robustgrid.attacks import build_attack
from robustgrid.benchmark.budget_search import binary_search
from robustgrid.benchmark.distinct import distinct_outcomes


class Recorder:
    """An outcome function (per-row sum of pixels) that counts the rows it is given."""

    def __init__(self) -> None:
        self.rows = 0

    def __call__(self, xs: Tensor, ys: Tensor) -> np.ndarray:
        self.rows += len(xs)
        return (xs.flatten(1).sum(1) + ys).numpy()


def test_copies_of_the_clean_image_a_previous_checkpoint_or_budget_are_evaluated_once():
    x = torch.arange(4 * 3, dtype=torch.float32).view(4, 1, 1, 3)
    y = torch.tensor([0.0, 10.0, 20.0, 30.0])
    a = x.clone()
    a[1] += 1  # only row 1 differs from clean at (0.1, 1)
    b = a.clone()
    b[2] += 5  # (0.1, 2): row 2 new, row 1 repeats (0.1, 1)
    c = b.clone()
    c[3] -= 2  # (0.2, 2): row 3 new, rows 1 and 2 repeat (0.1, 2)
    images = {(0.1, 1): a, (0.1, 2): b, (0.2, 1): a.clone(), (0.2, 2): c}
    rec = Recorder()
    got = distinct_outcomes(rec, images, x, y, batch_size=2)
    for point, img in images.items():
        np.testing.assert_array_equal(got[point], Recorder()(img, y), err_msg=str(point))
    assert rec.rows == 3 + 3  # rows 0, 2, 3 clean once (row 1 is never clean), then rows 1, 2, 3 once each


def test_the_search_curve_evaluated_once_per_distinct_image_is_the_per_point_evaluation():
    """A budget search on fmnist-resnet (64 images, 4 budgets x 3 checkpoints): the same predictions at every
    point, from fewer images than one forward per point."""
    from robustgrid.models.data import build_dataset
    from robustgrid.models.zoo import zoo_target

    ds = build_dataset("fashion-mnist", split="test", size=64, seed=0)
    x, y = ds.images, ds.labels
    model = zoo_target("fmnist-resnet", allow_train=False).module
    attack = build_attack("pgd", eps=0.1, steps=10, step_size=0.01)
    images = binary_search(attack, [model], x, y, [0.01, 0.02, 0.05, 0.1], [1, 5, 10], seed=0).images
    seen = 0

    def predict(xs: Tensor, ys: Tensor) -> np.ndarray:
        nonlocal seen
        seen += len(xs)
        with torch.inference_mode():
            return model(xs).argmax(1).numpy()

    got = distinct_outcomes(predict, images, x, y, batch_size=64)
    spent = seen
    for point, img in images.items():
        np.testing.assert_array_equal(got[point], predict(img, y), err_msg=f"at (eps, steps) {point}")
    assert spent < 0.8 * len(images) * len(x)


def test_whitebox_cells_from_the_attacks_own_outcomes_are_the_evaluated_ones(tmp_path, monkeypatch, small_config):
    """Early-stopped PGD and FGSM on the bare zoo classifiers: the runner takes the whitebox cells' predictions from
    the attack's passes (no evaluation of those), the transfer cells from an evaluation; forcing every cell through
    the evaluation stores the same predictions."""
    from robustgrid.benchmark import parse_config, run_grid, runner
    from robustgrid.benchmark.store import Store

    small_config["suite"][0]["early_stop"] = True
    evaluated: list[str] = []
    real = runner.evaluate_points
    monkeypatch.setattr(runner, "evaluate_points",
                        lambda p, module, d, *a: (evaluated.append(type(module).__name__), real(p, module, d, *a))[1])
    run_grid(parse_config(small_config), tmp_path / "seen", progress=False, report=False)
    reused = len(evaluated)
    monkeypatch.setattr(runner, "seen_outcomes", lambda *a: None)
    run_grid(parse_config(small_config), tmp_path / "evaluated", progress=False, report=False)
    assert 0 < reused < len(evaluated) - reused  # whitebox units skipped the evaluation
    stores = [Store(tmp_path / name / "cells.sqlite") for name in ("seen", "evaluated")]
    cells = [{(c.attack, c.threat, c.sources, c.target, c.defense, c.eps, c.steps, c.metric): c for c in s.cells()}
             for s in stores]
    assert cells[0].keys() == cells[1].keys() and any(k[1] == "whitebox" for k in cells[0])
    for key, cell in cells[0].items():
        assert cell.metrics == cells[1][key].metrics, key
    for s in stores:
        s.close()
