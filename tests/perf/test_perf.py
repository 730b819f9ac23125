"""Speed and cost, as ratios to references measured in the same run (``make perf``).

(a) PGD per-step time / the raw forward+backward floor of the same model and batch;
(b) a full classification curve (8 budgets x checkpoints 1, 2, 5, 10, 20) from our one-run-per-budget
    loop against torchattacks run once per point;
(c) the default grid's gradient evaluations against the naive per-cell count.
Ratios are printed and written to ``.benchmarks/ratios.json``; no absolute time is asserted.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
import torchattacks

from robustgrid.attacks import build_attack

pytestmark = pytest.mark.perf
RATIOS: dict[str, float] = {}
OUT = Path(__file__).resolve().parents[2] / ".benchmarks" / "ratios.json"
EPS = [0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2]
CHECKPOINTS = [1, 2, 5, 10, 20]
STEP = 0.01


def _save() -> None:
    OUT.parent.mkdir(exist_ok=True)
    old = json.loads(OUT.read_text()) if OUT.is_file() else {}
    OUT.write_text(json.dumps({**old, **RATIOS}, indent=2, sort_keys=True) + "\n")


@pytest.fixture(scope="module")
def batch():
    from robustgrid.models.data import build_dataset

    ds = build_dataset("fashion-mnist", split="test", size=256, seed=0)
    return ds.images, ds.labels


@pytest.fixture(scope="module")
def model():
    from robustgrid.models.zoo import zoo_target

    return zoo_target("fmnist-resnet", allow_train=False).module


def test_a_fwd_bwd_floor(benchmark, model, batch):
    x, y = batch

    def floor():
        xv = x.clone().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(model(xv), y, reduction="sum")
        return torch.autograd.grad(loss, xv)[0]

    benchmark.pedantic(floor, rounds=10, iterations=1, warmup_rounds=2)
    RATIOS["floor_seconds"] = benchmark.stats.stats.median


def test_a_pgd_step(benchmark, model, batch):
    x, y = batch
    attack = build_attack("pgd", eps=0.1, steps=10, step_size=STEP)
    benchmark.pedantic(lambda: attack(model, x, y), rounds=5, iterations=1, warmup_rounds=1)
    per_step = benchmark.stats.stats.median / 10
    RATIOS["pgd_step_over_floor"] = per_step / RATIOS["floor_seconds"]
    print(f"\nPGD step / fwd+bwd floor = {RATIOS['pgd_step_over_floor']:.3f}")
    _save()


def _acc(model, x, y) -> float:
    with torch.inference_mode():
        return (model(x).argmax(1) == y).float().mean().item()


def _ours(model, x, y, early_stop: bool) -> dict[tuple[float, int], float]:
    out = {}
    for e in EPS:
        res = build_attack("pgd", eps=e, steps=20, step_size=STEP).run(
            model, x, y, seed=0, checkpoints=CHECKPOINTS, early_stop=early_stop)
        out.update({(e, k): _acc(model, xk, y) for k, xk in res.checkpoints.items()})
    return out


def _theirs(model, x, y) -> dict[tuple[float, int], float]:
    out = {}
    for e in EPS:
        for k in CHECKPOINTS:
            torch.manual_seed(0)
            out[e, k] = _acc(model, torchattacks.PGD(model, eps=e, alpha=STEP, steps=k)(x, y), y)
    return out


def test_b_curve_speed_against_torchattacks(model, batch):
    x, y = batch[0][:128], batch[1][:128]
    timings = {}
    results = {}
    for name, fn in (("torchattacks", lambda: _theirs(model, x, y)), ("ours", lambda: _ours(model, x, y, False)),
                     ("ours_early_stop", lambda: _ours(model, x, y, True))):
        fn()  # warm-up
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            results[name] = fn()
            runs.append(time.perf_counter() - t0)
        timings[name] = sorted(runs)[1]
    assert results["ours"] == results["torchattacks"]  # same numbers, early stop off
    assert all(results["ours_early_stop"][k] <= results["ours"][k] for k in results["ours"])
    RATIOS["curve_speedup_vs_torchattacks"] = timings["torchattacks"] / timings["ours"]
    RATIOS["curve_speedup_vs_torchattacks_early_stop"] = timings["torchattacks"] / timings["ours_early_stop"]
    print(f"\ncurve: torchattacks/ours = {RATIOS['curve_speedup_vs_torchattacks']:.2f}x, "
          f"with early stop {RATIOS['curve_speedup_vs_torchattacks_early_stop']:.2f}x")
    _save()


def test_c_default_grid_gradient_evaluations():
    """Read the default run's own accounting (written by ``make bench``) and check it adds up."""
    summary = Path(__file__).resolve().parents[2] / "results" / "default" / "summary.json"
    if not summary.is_file():
        pytest.skip("run 'make bench' first")
    data = json.loads(summary.read_text())["summary"]
    actual = sum(s["grad_evals"] for s in data.values())
    naive = sum(s["naive_grad_evals"] for s in data.values())
    assert 0 < actual < naive
    RATIOS["default_grid_naive_over_actual_grad_evals"] = naive / actual
    print(f"\ndefault grid: naive / actual gradient evaluations = {naive / actual:.2f}")
    _save()
