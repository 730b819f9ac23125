"""The planner's unit and cell keys are the store's keys: they must not move when the planner is rewritten.

``data/plan_keys.json`` was written by the planner of commit 3ffc1f8 (the if-chain over threat names, before
threats were registered objects), with fixed identity hashes, by::

    git show 3ffc1f8:benchmark/planner.py > /tmp/old_planner.py
    .venv/bin/python -m tests.benchmark.test_planner /tmp/old_planner.py

Regenerate it only when a key change is intended (it invalidates every existing store). Regenerated once since,
by ``python tests/benchmark/test_planner.py benchmark/planner.py``, when a single-source transfer group began to
share its target's white-box unit where no run stops early: the transfer units of such suites went, and their
transfer cells' keys moved (every other key is the if-chain planner's).
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from robustgrid.benchmark.config import Suite, load_config
from robustgrid.benchmark.planner import plan_suite

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ("configs/default.toml", "tests/benchmark/data/all_threats.toml")
GOLDEN = Path(__file__).parent / "data" / "plan_keys.json"


def fixed_identity(suite: Suite) -> dict[str, str]:
    """Content hashes the planner needs, fixed per name so that keys depend on the planner alone."""
    ids = {"dataset": f"dataset-of-{suite.name}"}
    ids.update({t.name: f"weights-of-{t.name}" for t in suite.targets})
    ids.update({f"defense:{d.name}": f"purifier-{d.name}" for d in suite.defenses})
    return ids


def plan_record(units: list[Any]) -> list[dict[str, Any]]:
    """Everything a plan fixes in the store (keys by their first 16 hex digits), units sorted by key."""
    rows = [{"unit": u.key[:16], "threat": u.threat, "defense": u.defense, "sources": list(u.sources),
             "eps": u.eps, "checkpoints": list(u.checkpoints), "seed": u.seed,
             "cells": [[c.key[:16], c.threat, c.target, c.defense, c.steps] for c in u.cells]} for u in units]
    return sorted(rows, key=lambda r: r["unit"])


def plans(planner: ModuleType | None = None) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Per config file and suite, the plan of ``planner`` (default: the current one)."""
    plan = plan_suite if planner is None else planner.plan_suite
    out = {}
    for path in CONFIGS:
        cfg = load_config(ROOT / path)
        out[path] = {s.name: plan_record(plan(s, cfg.seed, fixed_identity(s))) for s in cfg.suites}
    return out


GOLDEN_PLANS = json.loads(GOLDEN.read_text()) if GOLDEN.is_file() else {}  # absent only while regenerating
SUITES = [(path, suite) for path, suites in GOLDEN_PLANS.items() for suite in suites]


@pytest.mark.parametrize("path, suite", SUITES, ids=[f"{Path(p).stem}:{s}" for p, s in SUITES])
def test_unit_and_cell_keys_are_those_of_the_if_chain_planner(path, suite):
    want = GOLDEN_PLANS[path][suite]
    got = plans()[path][suite]
    assert [u["unit"] for u in got] == [u["unit"] for u in want]
    for g, w in zip(got, want):
        assert g == w, f"unit {w['unit']} ({w['threat']}, {w['sources']}, {w['defense']}, eps {w['eps']})"


def test_the_golden_plans_cover_every_threat_and_the_blind_ride():
    units = [u for suites in GOLDEN_PLANS.values() for rows in suites.values() for u in rows]
    cell_threats = {c[1] for u in units for c in u["cells"]}
    assert cell_threats == {"whitebox", "transfer", "blind", "bpda", "adaptive", "score", "decision"}
    assert "blind" not in {u["threat"] for u in units}  # blind cells ride on whitebox units
    assert sum(len(u["cells"]) for u in units) > 1000


def _load(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location("old_planner", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


def _dump(plans: dict[str, dict[str, list[dict[str, Any]]]]) -> str:
    """JSON with one unit per line, so that a diff of the golden file names the units that moved."""
    files = []
    for path, suites in plans.items():
        body = ",\n".join(f"  {json.dumps(s)}: [\n" + ",\n".join(f"   {json.dumps(u)}" for u in units) + "\n  ]"
                          for s, units in suites.items())
        files.append(f" {json.dumps(path)}: {{\n{body}\n }}")
    return "{\n" + ",\n".join(files) + "\n}\n"


if __name__ == "__main__":  # regenerate the golden file from a planner source file (see the module docstring)
    GOLDEN.write_text(_dump(plans(_load(sys.argv[1]))))


def _mixed_suite(suite_threats: tuple[str, ...] = ("whitebox", "score"),
                 suite_defenses: tuple[str, ...] = ("none",), **square: Any) -> Suite:
    """A classification suite holding a gradient attack and a query attack kept to the score threat."""
    from robustgrid.benchmark.config import parse_config

    cfg = {"suite": [{"name": "mixed", "task": "classification", "dataset": {"name": "fashion-mnist", "size": 8},
                      "targets": ["fmnist-resnet"], "threats": list(suite_threats), "defenses": list(suite_defenses),
                      "budget": {"eps": [0.0, 0.1], "checkpoints": [1, 5]},
                      "attacks": [{"name": "pgd", "steps": 5, "threats": ["whitebox"]},
                                  {"name": "fgsm", "steps": 1, **square}]}]}
    return parse_config(cfg).suites[0]


def test_an_attack_runs_only_under_its_own_threats_and_at_its_own_checkpoints():
    suite = _mixed_suite(threats=["score"], checkpoints=[])
    units = plan_suite(suite, 0, fixed_identity(suite))
    assert {(u.attack.name, u.threat) for u in units} == {("pgd", "whitebox"), ("fgsm", "score")}
    assert {u.attack.name: u.checkpoints for u in units} == {"pgd": (1, 5), "fgsm": (1,)}
    assert {c.threat for u in units for c in u.cells if u.attack.name == "fgsm"} == {"score"}
    plain = _mixed_suite()
    assert {u.attack.name: u.attack.to_json() for u in units} == \
        {u.attack.name: u.attack.to_json() for u in plan_suite(plain, 0, fixed_identity(plain))}  # keys unchanged


def test_an_attack_is_evaluated_only_behind_its_own_defenses():
    """A costly attack may skip a purifier: no unit through it and no cell behind it, under any threat (its own
    generation through the purifier, or the blind ride on the bare one's examples); without the key, every one."""
    threats, defenses = ("whitebox", "blind", "adaptive"), ("none", "gaussian", "ncis")

    def fgsm_cells(**kept: Any) -> dict[tuple[str, str], str]:
        suite = _mixed_suite(threats, defenses, threats=["blind", "adaptive"], **kept)
        return {(u.defense, c.defense): c.key for u in plan_suite(suite, 0, fixed_identity(suite)) for c in u.cells
                if u.attack.name == "fgsm"}

    kept, every = fgsm_cells(defenses=["none", "gaussian"]), fgsm_cells()
    assert {d for _, d in kept} == {"gaussian"} and {g for g, _ in kept} == {"none", "gaussian"}
    assert {d for _, d in every} == {"gaussian", "ncis"} and {g for g, _ in every} == set(defenses)
    assert set(kept.values()) <= set(every.values())  # the kept cells keep their keys


@pytest.mark.parametrize("square, message", [
    ({"threats": ["decision"]}, "threat 'decision' is not one of the suite's threats (whitebox, score)"),
    ({"threats": []}, "threats must be a non-empty list of the suite's threats, got []"),
    ({"checkpoints": [2]}, "checkpoint 2 is beyond its steps; valid checkpoints: 1..1"),
    ({"defenses": ["ncis"]}, "defense 'ncis' is not one of the suite's defenses (none)"),
    ({"defenses": []}, "defenses must be a non-empty list of the suite's defenses, got []"),
])
def test_bad_per_attack_threats_and_checkpoints_are_one_line_errors(square, message):
    from robustgrid.core import RobustgridError

    with pytest.raises(RobustgridError, match=re.escape(message)):
        _mixed_suite(**square)
