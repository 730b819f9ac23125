"""examples/: a user's own classifier, purifier and attack, registered by plugins and run from a config."""

from __future__ import annotations

import shutil
import sqlite3
import sys
from pathlib import Path

import pytest

from robustgrid.benchmark.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PLUGINS = ("custom_classifier", "custom_purifier", "custom_attack")


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    """A copy of examples/ with the config's sample size cut to 48 images (the test's time, not its logic)."""
    folder = tmp_path / "examples"
    shutil.copytree(EXAMPLES, folder)
    text = (folder / "plugins.toml").read_text()
    (folder / "plugins.toml").write_text(text.replace("size = 100", "size = 48").replace("batch_size = 100",
                                                                                           "batch_size = 48"))
    yield folder
    for name in PLUGINS:
        sys.modules.pop(name, None)


def test_the_plugin_config_runs_the_users_own_components(examples: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["run", str(examples / "plugins.toml"), "--out", str(out), "--quiet"]) == 0, capsys.readouterr().err
    rows = sqlite3.connect(out / "cells.sqlite").execute(
        "SELECT target, defense, threat, attack, eps, steps, value FROM cells").fetchall()
    value = {(t, d, th, a, e, s): v for t, d, th, a, e, s, v in rows}
    py = "python:custom_classifier:logit_ensemble"
    assert {t for t, *_ in rows} == {"fmnist-resnet", "fmnist-ensemble", py}
    assert {d for _, d, *_ in rows} == {"none", "bitdepth"} and {a for *_, a, _, _, _ in rows} >= {"rademacher-pgd"}
    for target in ("fmnist-ensemble", py):  # two zoo members averaged: as accurate as a member
        assert value[target, "none", "whitebox", "pgd", 0.0, 10] >= 0.85
    for target in ("fmnist-resnet", "fmnist-ensemble", py):  # the custom attack breaks them at eps 0.1 ...
        assert value[target, "none", "whitebox", "rademacher-pgd", 0.1, 10] < 0.2
        assert value[target, "none", "whitebox", "rademacher-pgd", 0.1, 5] >= \
            value[target, "none", "whitebox", "rademacher-pgd", 0.1, 10]  # ... more with more steps
        # the custom purifier is attacked through BPDA (it is not differentiable) and still costs the attack
        assert value[target, "bitdepth", "bpda", "pgd", 0.1, 10] < value[target, "bitdepth", "bpda", "pgd", 0.0, 10]
    assert (out / "leaderboard.md").is_file() and "bitdepth" in (out / "leaderboard.md").read_text()


def test_the_adaptive_threat_is_refused_for_the_non_differentiable_purifier(examples: Path, tmp_path: Path,
                                                                            capsys) -> None:
    cfg = examples / "plugins.toml"
    cfg.write_text(cfg.read_text().replace('threats = ["whitebox", "bpda"]', 'threats = ["whitebox", "adaptive"]'))
    assert main(["run", str(cfg), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs a differentiable purifier; 'bitdepth' is not" in err
    assert not (tmp_path / "out").exists()


def test_a_plugin_that_fails_to_import_is_one_line(tmp_path: Path, capsys) -> None:
    (tmp_path / "broken_plugin.py").write_text("raise RuntimeError('no licence file')\n")
    cfg = tmp_path / "c.toml"
    cfg.write_text('plugins = ["broken_plugin.py"]\n[[suite]]\ntask = "classification"\ndataset = "fashion-mnist"\n'
                   'targets = ["fmnist-resnet"]\nbudget = { eps = [0.0] }\n[[suite.attacks]]\nname = "pgd"\n')
    assert main(["run", str(cfg), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == "robustgrid: error: plugin 'broken_plugin' failed to import: RuntimeError: no licence file\n"
    cfg.write_text(cfg.read_text().replace('plugins = ["broken_plugin.py"]\n', ""))
    assert main(["run", str(cfg), "--out", str(tmp_path / "out"), "--quiet", "--plugin", "no.such.module"]) == 2
    assert "plugin 'no.such.module' failed to import: ModuleNotFoundError" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    sys.modules.pop("broken_plugin", None)
