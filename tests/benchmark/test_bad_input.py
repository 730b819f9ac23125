"""Every bad input: a one-line error naming the problem, CLI exit 2, and nothing written."""

from __future__ import annotations

import copy
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from robustgrid.benchmark import load_config, parse_config, run_grid
from robustgrid.core import RobustgridError

ROOT = Path(__file__).resolve().parents[2]


def mutate(cfg, path, value):
    cfg = copy.deepcopy(cfg)
    node = cfg
    for k in path[:-1]:
        node = node[k]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return cfg


CASES = [
    (("suite", 0, "attacks", 0, "name"), "pdg", "unknown attack 'pdg'; did you mean pgd"),
    (("suite", 0, "targets"), ["fmnist-resnt"], "unknown target 'fmnist-resnt'; did you mean fmnist-resnet"),
    (("suite", 0, "budget", "eps"), [0.1, -0.05], "budget eps must be a finite number >= 0, got -0.05"),
    (("suite", 0, "budget", "eps"), [math.inf], "budget eps must be a finite number"),
    (("suite", 0, "budget", "eps"), [math.nan], "budget eps must be a finite number"),
    (("suite", 0, "attacks", 0, "steps"), 0, "steps must be an integer >= 1, got 0"),
    (("suite", 0, "budgett"), {}, "unknown key 'budgett'; did you mean budget"),
    (("suite", 0, "threats"), ["whitebox", "trasnfer"], "unknown threat 'trasnfer'; did you mean transfer"),
    (("suite", 0, "attacks", 0, "stepsize"), 0.1, "has no parameter 'stepsize'; did you mean step_size"),
    (("suite", 0, "dataset", "root"), "/nonexistent/fmnist", "/nonexistent/fmnist"),
    (("suite", 0, "dataset", "name"), "fashion-mnst", "unknown dataset 'fashion-mnst'"),
    (("suite", 0, "task"), "segmentation", "is a classification model"),
    (("seed",), -1, "seed must be an integer >= 0"),
    (("suite", 0, "budget", "norm"), "l1", "unknown norm 'l1'"),
]


@pytest.mark.parametrize("path, value, message", CASES, ids=[c[2][:30] for c in CASES])
def test_bad_config_names_the_problem_and_writes_nothing(small_config, tmp_path, path, value, message):
    cfg = mutate(small_config, path, value)
    out = tmp_path / "out"
    with pytest.raises(RobustgridError) as info:
        run_grid(parse_config(cfg), out, progress=False)
    text = str(info.value)
    assert message in text and "\n" not in text
    assert not (out / "cells.sqlite").exists()


def test_transfer_source_must_be_a_target(small_config):
    small_config["suite"][0]["transfer"] = {"sources": [["fmnist-vit"]]}
    with pytest.raises(RobustgridError, match="transfer source 'fmnist-vit' is not one of the suite's targets"):
        parse_config(small_config)


def test_missing_and_malformed_config_files(tmp_path):
    with pytest.raises(RobustgridError, match="config file not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("seed = [\n")
    with pytest.raises(RobustgridError, match="invalid TOML"):
        load_config(bad)


def test_cli_exit_status_two_and_one_line(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('seed = 0\n[[suite]]\ntask = "classification"\ndataset = "fashion-mnist"\n'
                   'targets = ["fmnist-resnet"]\nbudget = { eps = [-1.0] }\n[[suite.attacks]]\nname = "pgd"\n')
    proc = subprocess.run([sys.executable, "-m", "robustgrid.benchmark.cli", "run", str(cfg), "--out",
                           str(tmp_path / "o")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "budget eps must be a finite number >= 0" in lines[0]
    assert not (tmp_path / "o").exists()


def test_cli_unknown_list_kind_and_report_without_store(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "robustgrid.benchmark.cli", "report", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "no results store" in proc.stderr


def test_adaptive_threat_refused_for_non_differentiable_purifier(small_config, tmp_path):
    import torch

    from robustgrid.defenses import DEFENSES, Purifier, register_defense

    if "test-quantize" not in DEFENSES:
        @register_defense("test-quantize")
        class Quantize(Purifier):
            """4-bit quantisation: no useful gradient (test only)."""

            differentiable = False

            def purify(self, x: torch.Tensor) -> torch.Tensor:
                return torch.round(x * 15) / 15

    small_config["suite"][0]["defenses"] = ["none", "test-quantize"]
    small_config["suite"][0]["threats"] = ["whitebox", "adaptive"]
    with pytest.raises(RobustgridError, match="'adaptive' needs a differentiable purifier; 'test-quantize' is not"):
        run_grid(parse_config(small_config), tmp_path / "o", progress=False)
    assert not (tmp_path / "o").exists()


def test_cli_usage_errors_and_a_bad_thread_count_are_one_line_exit_2(capsys, monkeypatch):
    from robustgrid.benchmark.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["run"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "robustgrid: error: the following arguments are required: config (see robustgrid run --help)"]
    monkeypatch.setenv("ROBUSTGRID_THREADS", "two")
    assert main(["list", "tasks"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "robustgrid: error: ROBUSTGRID_THREADS must be a positive integer, got 'two'"]


SHAPES = [  # a value of the wrong shape where the config expects a table, a list or a name
    (("suite", 0, "transfer"), 5, "suite 1: transfer must be a table, got 5"),
    (("suite", 0, "transfer"), {"sources": [[{"a": 1}]]}, "suite 1: transfer source {'a': 1} is not one of"),
    (("suite", 0, "transfer"), {"sources": "fmnist-resnet"}, "suite 1: transfer sources must be a list"),
    (("suite", 0, "budget", "checkpoints"), 5, "suite 1: budget checkpoints must be a list of step counts, got 5"),
    (("suite", 0, "budget"), [0.1], "suite 1: budget must be a table, got [0.1]"),
    (("suite", 0, "defenses"), "gaussian", "suite 1: defenses must be a non-empty list, got 'gaussian'"),
    (("suite", 0, "targets"), [5], "suite 1 target 1: each target must be a name or a table with a 'name', got 5"),
    (("suite", 0, "task"), 5, "suite 1: task must be a string, got 5"),
    (("suite", 0, "name"), ["x"], "suite 1: name must be a string, got ['x']"),
    (("suite", 0, "attacks", 0, "label"), 3, "suite 1 attack 1 (pgd): label must be a string, got 3"),
    (("suite", 0, "attacks", 0, "norm"), "l2", "suite 1 attack 1 (pgd): 'norm' is set by the suite's budget"),
    (("suite",), [1], "suite 1: each suite must be a table, got 1"),
]


@pytest.mark.parametrize("path, value, message", SHAPES, ids=[s[2][:40] for s in SHAPES])
def test_a_value_of_the_wrong_shape_is_a_one_line_error(small_config, path, value, message):
    with pytest.raises(RobustgridError) as info:
        parse_config(mutate(small_config, path, value))
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


QUERY_SUITE = """
seed = 0

[[suite]]
task = "{task}"
dataset = {{ name = "{dataset}", split = "test", size = 8 }}
targets = ["{target}"]
threats = {threats}
budget = {{ eps = [0.0, 0.1], checkpoints = {checkpoints} }}
batch_size = 8

[[suite.attacks]]
name = "{attack}"
steps = {steps}
"""
QUERY_DEFAULTS = {"task": "classification", "dataset": "fashion-mnist", "target": "fmnist-resnet",
                  "threats": '["score"]', "checkpoints": "[2]", "attack": "test-random-search", "steps": 4}
GRADIENT_ONLY = "whitebox, blind, bpda, adaptive, transfer"
QUERY_CASES = [
    ({"steps": 0}, "suite 1 attack 1 (test-random-search): steps must be an integer >= 1, got 0"),
    ({"task": "segmentation", "dataset": "fmnist-scenes", "target": "scenes-fpn", "threats": '["decision"]',
      "attack": "test-flip-search"},
     "suite 1: threat 'decision' is for classification suites only, not segmentation"),
    ({"task": "iqa", "dataset": "skimage-iqa", "target": "iqa-cnniqa", "threats": '["whitebox", "decision"]',
      "attack": "test-flip-search"},
     "suite 1: threat 'decision' is for classification suites only, not iqa"),
    ({"checkpoints": "[2, 5]"}, "suite 1: checkpoint 5 is beyond every attack's steps; valid checkpoints: 1..4"),
    ({"attack": "pgd", "threats": '["whitebox", "score"]'},
     f"suite 'classification': attack 'pgd' needs gradient access, threat 'score' gives score access only; 'pgd' "
     f"can run under {GRADIENT_ONLY}"),
    ({"threats": '["decision"]'},
     f"suite 'classification': attack 'test-random-search' needs score access, threat 'decision' gives decision "
     f"access only; 'test-random-search' can run under {GRADIENT_ONLY}, score"),
]


@pytest.mark.parametrize("changes, message", QUERY_CASES, ids=[m[:50] for _, m in QUERY_CASES])
def test_bad_query_input_through_the_cli_is_one_line_exit_2_and_writes_nothing(changes, message, tmp_path,
                                                                               monkeypatch, capsys):
    from robustgrid.benchmark.cli import main
    from tests.benchmark import query_attacks

    query_attacks.register(monkeypatch)
    cfg = tmp_path / "q.toml"
    cfg.write_text(QUERY_SUITE.format(**{**QUERY_DEFAULTS, **changes}), encoding="utf-8")
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 2
    assert capsys.readouterr().err.splitlines() == [f"robustgrid: error: {message}"]
    assert not out.exists()


def test_a_study_script_turns_a_bad_option_into_one_line_and_status_2():
    """The experiments print tables for the docs; a canvas smaller than a garment is an error line, not a traceback."""
    proc = subprocess.run([sys.executable, "-m", "robustgrid.benchmark.experiments.segtrans_compare", "--n", "2",
                           "--canvas", "16"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "scene size 16 is smaller than the largest garment" in lines[0], proc.stderr
    assert "use size >= 35" in lines[0] and proc.stdout == ""


@pytest.mark.parametrize("argv, message", [
    (["iqa-nfnet", "--set", "epoch=3"], "recipe IQARecipe has no field 'epoch'; its fields: arch, model_kwargs"),
    (["iqa-nfnet", "--set", "epochs"], "--set takes KEY=JSON"),
    (["iqa-nfnet", "--set", "epochs=ten"], "--set takes KEY=JSON"),
    (["iqa-nfnet", "--metric", "test_miou"], "zoo entry 'iqa-nfnet' records no metric 'test_miou'; it records "
                                             "test_krocc, test_plcc, test_srocc"),
    (["ncis-bsn-fashion-mnist", "--store"], "--store takes zoo targets"),
])
def test_the_seed_spread_study_refuses_a_bad_recipe_change_before_training(argv, message, capsys):
    from robustgrid.benchmark.experiments import zoo_seed_spread

    with pytest.raises(RobustgridError, match=re.escape(message)):
        zoo_seed_spread.main(argv)
    assert "| entry |" not in capsys.readouterr().out  # nothing printed, nothing trained


def test_the_seed_spread_study_reseeds_and_changes_only_the_recipe():
    from robustgrid.benchmark.experiments.zoo_seed_spread import reseeded
    from robustgrid.benchmark.zoo_training import ZOO

    train = ZOO.build("iqa-cnniqa").train
    call = reseeded(train, 7, {"epochs": 3})
    (recipe,) = [a for a in call.args if hasattr(a, "seed")]
    (before,) = [a for a in train.args if hasattr(a, "seed")]
    assert (recipe.seed, recipe.epochs) == (7, 3) and call.func is train.func
    assert {**vars(recipe), "seed": before.seed, "epochs": before.epochs} == vars(before)
