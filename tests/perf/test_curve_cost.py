"""The whole classification curve at the cost of about one run (``make perf``): the per-sample budget search against
torchattacks' PGD run once per (budget, checkpoint), in gradient evaluations and in wall time.

8 budgets x checkpoints 1, 2, 5, 10, 20 of L-inf PGD-20 on ``fmnist-resnet``: torchattacks pays 8 x 38 = 304
steps per image; ours one search, binary (about log2(7) + 1 = 3 probes of 20 steps, early stop, clean errors free)
and descending (one run per budget from the top until a sample fails).
All are wrapped by the same counter; the timed rounds interleave them. ``ROBUSTGRID_PERF_IMAGES``
sets the number of images (default 256). Ratios go to ``.benchmarks/ratios.json``.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torchattacks
from torch import Tensor, nn

from robustgrid.attacks import build_attack
from robustgrid.benchmark.budget_search import SEARCHES, Generated
from robustgrid.benchmark.distinct import distinct_outcomes

pytestmark = pytest.mark.perf
OUT = Path(__file__).resolve().parents[2] / ".benchmarks" / "ratios.json"
EPS = [0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255, 0.05, 0.1, 0.2]
CHECKPOINTS = [1, 2, 5, 10, 20]
STEP = 0.01
ROUNDS = 5


class Counting(nn.Module):
    """Counts images through the model: a gradient evaluation when the input needs its gradient."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.grad_evals = model, 0
        self.train(model.training)

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            self.grad_evals += len(x)
        return self.model(x)


def _acc(model: nn.Module, x: Tensor, y: Tensor) -> float:
    with torch.inference_mode():
        return (model(x).argmax(1) == y).float().mean().item()


def theirs(model: nn.Module, x: Tensor, y: Tensor) -> dict[tuple[float, int], float]:
    """torchattacks' PGD once per point: robust accuracy at every (eps, steps)."""
    out = {}
    for e in EPS:
        for k in CHECKPOINTS:
            torch.manual_seed(0)
            out[e, k] = _acc(model, torchattacks.PGD(model, eps=e, alpha=STEP, steps=k)(x, y), y)
    return out


def _search(model: nn.Module, x: Tensor, y: Tensor, how: str = "binary") -> Generated:
    """One budget search over the positive budgets."""
    attack = build_attack("pgd", eps=max(EPS), steps=max(CHECKPOINTS), step_size=STEP)
    return SEARCHES[how](attack, [model], x, y, [e for e in EPS if e > 0], CHECKPOINTS, seed=0, early_stop=True)


def _predict(model: nn.Module) -> Callable[[Tensor, Tensor], np.ndarray]:
    def predict(xs: Tensor, ys: Tensor) -> np.ndarray:
        with torch.inference_mode():
            return model(xs).argmax(1).numpy()
    return predict


def ours(how: str) -> Callable[[nn.Module, Tensor, Tensor], dict[tuple[float, int], float]]:
    """The ``how`` search, evaluated as the runner evaluates its one source (``runner.seen_outcomes``: the outcomes
    its own passes recorded; else ``distinct_outcomes``, each distinct image once); the zero budget is clean."""
    def curve(model: nn.Module, x: Tensor, y: Tensor) -> dict[tuple[float, int], float]:
        res = _search(model, x, y, how)
        got = (res.outcomes if res.outcomes is not None
               else distinct_outcomes(_predict(model), res.images, x, y, len(x)))
        got |= {(0.0, k): _predict(model)(x, y) for k in CHECKPOINTS[:1]}
        got |= {(0.0, k): got[0.0, CHECKPOINTS[0]] for k in CHECKPOINTS}
        return {p: float(np.mean(v == y.numpy())) for p, v in got.items()}
    return curve


def test_curve_cost_against_torchattacks(capsys):
    from robustgrid.models.data import build_dataset
    from robustgrid.models.zoo import zoo_target

    n = int(os.environ.get("ROBUSTGRID_PERF_IMAGES", "256"))
    torch.set_num_threads(int(os.environ.get("ROBUSTGRID_THREADS", "1")))
    ds = build_dataset("fashion-mnist", split="test", size=n, seed=0)
    x, y = ds.images, ds.labels
    model = zoo_target("fmnist-resnet", allow_train=False).module
    runs = {"torchattacks": theirs} | {how: ours(how) for how in SEARCHES}
    for fn in runs.values():
        fn(model, x[:16], y[:16])  # warm-up
    counted = {name: Counting(model) for name in runs}
    results: dict[str, dict[tuple[float, int], float]] = {}
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(ROUNDS):  # interleaved, so all see the same load; the first round also counts
        for name, fn in runs.items():
            t0 = time.perf_counter()
            got = fn(counted[name] if r == 0 else model, x, y)
            seconds[name].append(time.perf_counter() - t0)
            results.setdefault(name, got)
    evals = {name: c.grad_evals / n for name, c in counted.items()}
    median = {name: sorted(t)[ROUNDS // 2] for name, t in seconds.items()}
    # Both are random-start PGD with different draws, so a point's accuracies differ by sampling noise: the
    # tolerance is two standard errors of a difference of two accuracies near 1/2 on n images, correlated or not.
    tol = 2 * math.sqrt(0.5 / n)
    ratios: dict[str, float | str] = {"curve_torchattacks_grad_evals_per_image": evals["torchattacks"],
                                      "curve_search_images": n, "curve_threads": torch.get_num_threads(),
                                      "curve_measured_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    lines = []
    for how in SEARCHES:
        worse = {p: (results[how][p], results["torchattacks"][p]) for p in results[how]
                 if results[how][p] > results["torchattacks"][p] + tol}
        assert not worse, f"{how} search above torchattacks beyond {tol:.3f} at (eps, steps): {worse}"
        grad_ratio = evals["torchattacks"] / evals[how]
        time_ratio = median["torchattacks"] / median[how]
        tag = "" if how == "binary" else f"_{how}"
        ratios |= {f"curve_search{tag}_grad_evals_per_image": evals[how],
                   f"curve_search{tag}_grad_evals_ratio": grad_ratio, f"curve_search{tag}_time_ratio": time_ratio}
        gaps = [results["torchattacks"][p] - results[how][p] for p in results[how]]
        lines.append(f"  {how} search: gradient evaluations per image {evals['torchattacks']:.1f} vs "
                     f"{evals[how]:.1f} ({grad_ratio:.2f}x), wall time {median['torchattacks']:.1f} s vs "
                     f"{median[how]:.2f} s ({time_ratio:.2f}x, median of {ROUNDS} interleaved rounds); "
                     f"torchattacks - ours accuracy: min {min(gaps):+.3f}, mean {sum(gaps) / len(gaps):+.3f}")
    OUT.parent.mkdir(exist_ok=True)
    old = json.loads(OUT.read_text()) if OUT.is_file() else {}
    OUT.write_text(json.dumps({**old, **ratios}, indent=2, sort_keys=True) + "\n")
    with capsys.disabled():
        print(f"\ncurve on {n} images, one thread:\n" + "\n".join(lines))
        for e in EPS:
            print(f"  eps {e:.4f}: " + "; ".join(f"{name} {[round(results[name][e, k], 3) for k in CHECKPOINTS]}"
                                                for name in runs))


def _suite(task: str, dataset: str, target: str, eps: list[float], attacks: list[dict]) -> dict:
    return {"name": task, "task": task, "dataset": {"name": dataset, "split": "test", "size": 4},
            "targets": [target], "threats": ["whitebox"], "attacks": attacks, "batch_size": 4,
            "budget": {"norm": "linf", "eps": eps, "checkpoints": [1, 2, 5, 10]}}


SEG_EPS = [0.0, 0.007843, 0.015686, 0.031373, 0.062745]  # configs/segmentation.toml
IQA_EPS = [0.0, 0.00784313725490196, 0.01568627450980392, 0.03137254901960784]  # configs/iqa.toml
PER_TASK = {"seed": 0, "suite": [
    _suite("segmentation", "fmnist-scenes", "scenes-fpn", SEG_EPS,
           [{"name": "pgd", "steps": 10}, {"name": "segpgd", "steps": 10}]),
    _suite("iqa", "skimage-iqa", "iqa-resnet", IQA_EPS,
           [{"name": "ifgsm", "steps": 10, "rel_step_size": 0.125}, {"name": "sega", "steps": 10, "samples": 8}]),
]}


def test_segmentation_and_iqa_budget_curve_cost(tmp_path, capsys):
    """No per-sample success there, so no early stop and no search: a budget curve costs one full run per positive
    budget (its iteration curve comes free from the checkpoints), measured here per image per curve."""
    from robustgrid.benchmark import parse_config, run_grid
    from robustgrid.benchmark.store import Store

    torch.set_num_threads(int(os.environ.get("ROBUSTGRID_THREADS", "1")))
    run_grid(parse_config(PER_TASK), tmp_path, progress=False, report=False)
    store = Store(tmp_path / "cells.sqlite")
    cells, units = store.cells(), {u.key: u for u in store.units()}
    lines = []
    for suite in PER_TASK["suite"]:
        eps = suite["budget"]["eps"]
        for attack in suite["attacks"]:
            spent = sum(units[k].grad_evals for k in {c.unit for c in cells
                                                       if c.suite == suite["name"] and c.attack == attack["name"]})
            per_image = spent / suite["dataset"]["size"]
            points = (len(eps) - 1) * sum(suite["budget"]["checkpoints"]) * attack.get("samples", 1)
            assert per_image == (len(eps) - 1) * attack["steps"] * attack.get("samples", 1)
            lines.append(f"  {suite['task']} {attack['name']}: {per_image:.0f} gradient evaluations per image per "
                         f"curve ({len(eps) - 1} positive budgets x {attack['steps']} steps"
                         f"{' x ' + str(attack['samples']) + ' draws' if 'samples' in attack else ''}; "
                         f"once per point: {points})")
    store.close()
    with capsys.disabled():
        print("\nbudget curve cost without per-sample success:\n" + "\n".join(lines))
