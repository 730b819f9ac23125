"""How the runner configures a unit's attack from its threat: early stop and EOT."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from robustgrid.benchmark import parse_config
from robustgrid.benchmark.config import AttackSpec
from robustgrid.benchmark.planner import Unit
from robustgrid.benchmark.runner import configure_attack
from robustgrid.defenses import build_defense
from robustgrid.defenses.base import Purifier
from robustgrid.models.tasks import build_task


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
        attack = configure_attack(p, unit)
        return attack.early_stop, attack.samples

    assert configured("whitebox", "none") == (True, 1)
    assert configured("transfer", "none") == (False, 1)           # success on a source is not success on the target
    assert configured("bpda", "gaussian") == (True, 1)
    assert configured("adaptive", "gaussian") == (True, 1)        # deterministic purifier: one draw is exact
    assert configured("adaptive", "noise") == (False, 5)          # EOT over the purifier's draws, no early stop
    assert configured("bpda", "noise") == (False, 1)
