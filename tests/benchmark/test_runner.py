"""The runner and the attack contract: torchattacks suites from configs, per-run options, their validation."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torchattacks
from torch import Tensor

from robustgrid.benchmark import parse_config
from robustgrid.benchmark.cli import main
from robustgrid.benchmark.config import AttackSpec
from robustgrid.benchmark.planner import Unit
from robustgrid.benchmark.runner import configure_attack
from robustgrid.benchmark.store import Store
from robustgrid.defenses import Purifier, build_defense, register_defense
from robustgrid.models.data import build_dataset
from robustgrid.models.tasks import build_task
from robustgrid.models.zoo import zoo_target

TARGETS = ("fmnist-resnet", "fmnist-mobilenet")
SIZE, BATCH = 64, 32


def suite_toml(attack: dict, *, task: str = "classification", dataset: str = "fashion-mnist", size: int = SIZE,
               targets: tuple[str, ...] = TARGETS, threats: tuple[str, ...] = ("whitebox", "transfer"),
               checkpoints: tuple[int, ...] = (), extra: str = "") -> str:
    """A one-suite config; ``attack`` is the [[suite.attacks]] table, ``extra`` more suite keys or tables."""
    fields = "\n".join(f"{k} = {json.dumps(v)}" for k, v in attack.items())
    return f"""
seed = 0

[[suite]]
name = "ta"
task = "{task}"
dataset = {{ name = "{dataset}", split = "test", size = {size} }}
targets = {json.dumps(list(targets))}
threats = {json.dumps(list(threats))}
budget = {{ norm = "linf", eps = [0.0, 0.1], checkpoints = {json.dumps(list(checkpoints))} }}
batch_size = {BATCH}
{extra}

[[suite.attacks]]
{fields}
"""


def run_cli(tmp_path: Path, toml: str) -> tuple[int, Path]:
    cfg = tmp_path / "grid.toml"
    cfg.write_text(toml)
    out = tmp_path / "out"
    return main(["run", str(cfg), "--out", str(out), "--quiet"]), out


# a config's parameters of each attack are those of the direct call too (besides eps and the adapter's seed)
TORCHATTACKS = {"PGD": {"steps": 5, "alpha": 0.03}, "APGD": {"steps": 5}, "Square": {"n_queries": 50}}


@pytest.mark.parametrize("name", TORCHATTACKS)
def test_torchattacks_suite_stores_what_torchattacks_computes(tmp_path, name):
    """White-box and transfer cells equal torchattacks called directly on the same model, batches and seeds.

    The suite keeps the default early_stop = true: torchattacks runs every sample, so white-box cells still
    equal the direct call (early stop is not applied to torchattacks attacks)."""
    rc, out = run_cli(tmp_path, suite_toml({"name": f"torchattacks:{name}", **TORCHATTACKS[name]}))
    assert rc == 0
    store = Store(out / "cells.sqlite")
    try:
        cells = store.cells()
    finally:
        store.close()
    assert len(cells) == 2 * 2 * 2  # (white-box, transfer) x targets x eps
    assert {(c.threat, c.sources[0] == c.target) for c in cells} == {("whitebox", True), ("transfer", False)}
    models = {t: zoo_target(t, allow_train=False).module for t in TARGETS}
    batches = list(build_dataset("fashion-mnist", split="test", size=SIZE).batches(BATCH))
    cls = getattr(torchattacks, name)
    accuracy = {}
    for c in cells:
        correct = 0
        for b, (x, y) in enumerate(batches):
            adv = x
            if c.eps > 0:  # the runner seeds batch b with unit seed + b; the adapter seeds torch and the attack
                seed = {"seed": c.seed + b} if name in ("APGD", "Square") else {}
                torch.manual_seed(c.seed + b)
                adv = cls(models[c.sources[0]], eps=c.eps, **TORCHATTACKS[name], **seed)(x, y)
            with torch.inference_mode():
                correct += int((models[c.target](adv).argmax(1) == y).sum())
        assert c.value == pytest.approx(correct / SIZE, abs=1e-9), (c.threat, c.sources, c.target, c.eps)
        accuracy[c.threat, c.target, c.eps] = c.value
    for t in TARGETS:  # the attack did something, most of all with the target's own gradients or queries
        assert accuracy["whitebox", t, 0.1] < accuracy["transfer", t, 0.1] <= accuracy["whitebox", t, 0.0]
    if name == "Square":  # a query attack: no gradient is ever taken
        assert all(c.grad_evals == 0 for c in cells)
    else:
        assert all((c.grad_evals > 0) == (c.eps > 0) for c in cells)


@register_defense("test-noise")
class Noise(Purifier):
    """A randomised, differentiable test purifier: adds small Gaussian noise (needs EOT under 'adaptive')."""

    randomized = True

    def purify(self, x: Tensor) -> Tensor:
        return (x + 0.01 * torch.randn_like(x)).clamp(0, 1)


def test_eot_draws_multiply_the_attacks_own_samples_in_the_count(tmp_path):
    """Adaptive through a randomised purifier: samples=3 draws per step times eot_samples=2, no early stop."""
    attack = {"name": "pgd", "steps": 2, "samples": 3}
    toml = suite_toml(attack, size=16, targets=TARGETS[:1], threats=("adaptive",),
                      extra='defenses = ["none", "test-noise"]\neot_samples = 2')
    rc, out = run_cli(tmp_path, toml)
    assert rc == 0
    store = Store(out / "cells.sqlite")
    try:
        cells = [c for c in store.cells() if c.eps > 0]
    finally:
        store.close()
    assert {c.steps for c in cells} == {2}
    assert all(c.grad_evals == c.naive_grad_evals == 16 * 2 * 1 * 3 * 2 for c in cells)


@pytest.mark.parametrize("attack, kwargs, message", [
    ({"name": "torchattacks:PDG"}, {}, "unknown torchattacks attack 'PDG'; did you mean PGD"),
    ({"name": "torchattacks:PGD", "alpah": 0.01}, {},
     "(torchattacks:PGD) has no parameter 'alpah'; did you mean alpha"),
    ({"name": "torchattacks:PGD"}, {"task": "segmentation", "dataset": "fmnist-scenes", "size": 4,
                                    "targets": ("scenes-fpn",), "threats": ("whitebox",)},
     "torchattacks:PGD only attacks classifiers, not task 'segmentation'"),
    ({"name": "torchattacks:PGD"}, {"extra": '[suite.transfer]\nsources = [["fmnist-resnet", "fmnist-mobilenet"]]',
                                    "targets": (*TARGETS, "fmnist-vit"), "threats": ("transfer",)},
     "torchattacks:PGD attacks a single model, got 2 sources"),
    ({"name": "torchattacks:Square", "steps": 4}, {"checkpoints": (1, 2)},
     "torchattacks:Square has no steps parameter, so it has no iterates at checkpoints [1, 2]"),
    ({"name": "torchattacks:PGD"}, {"extra": 'defenses = ["none", "test-noise"]\neot_samples = 2',
                                    "threats": ("adaptive",)},
     "torchattacks:PGD cannot average gradients over a randomised model's draws (eot_samples=2)"),
], ids=["name", "parameter", "task", "ensemble", "checkpoints", "eot"])
def test_torchattacks_suite_errors_are_one_line_and_write_nothing(tmp_path, capsys, attack, kwargs, message):
    rc, out = run_cli(tmp_path, suite_toml(attack, **kwargs))
    err = capsys.readouterr().err
    assert rc == 2 and message in err and err.count("\n") == 1, err
    assert not out.exists()


class _Noise(Purifier):
    """Adds fresh noise on every call: a randomised purifier (test only)."""

    name = "noise"
    randomized = True

    def purify(self, x: torch.Tensor) -> torch.Tensor:
        return (x + 0.01 * torch.randn_like(x)).clamp(0, 1)


def test_early_stop_and_eot_follow_the_threat_and_the_purifier():
    suite = parse_config({"suite": [{
        "task": "classification", "dataset": "fashion-mnist", "targets": ["fmnist-resnet"], "eot_samples": 5,
        "defenses": ["none", "gaussian"], "threats": ["whitebox"], "budget": {"eps": [0.1]},
        "attacks": [{"name": "pgd", "steps": 3}]}]}).suites[0]
    p = SimpleNamespace(suite=suite, task=build_task("classification"),
                        defenses={"none": build_defense("none"), "gaussian": build_defense("gaussian"),
                                  "noise": _Noise()})

    def configured(threat: str, defense: str) -> tuple[bool, int]:
        unit = Unit(suite.name, AttackSpec("pgd", 3), ("fmnist-resnet",), threat, defense, 0.1, (3,), (), (), "k", 0)
        _, options = configure_attack(p, unit)
        return options["early_stop"], options["eot_samples"]

    assert configured("whitebox", "none") == (True, 1)
    assert configured("transfer", "none") == (False, 1)           # success on a source is not success on the target
    assert configured("bpda", "gaussian") == (True, 1)
    assert configured("adaptive", "gaussian") == (True, 1)        # deterministic purifier: one draw is exact
    assert configured("adaptive", "noise") == (False, 5)          # EOT over the purifier's draws, no early stop
    assert configured("bpda", "noise") == (False, 1)
