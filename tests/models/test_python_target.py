"""``python:module:function`` targets: a user's own function returning a Target or an nn.Module."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from robustgrid.core import RobustgridError
from robustgrid.models.target import Target, build_target

MODULE = '''
import torch
from robustgrid.models.target import Target

def linear(out: int = 3):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, out))

def ready():
    return Target(name="mine", task="iqa", module=torch.nn.Identity(), input_shape=(1, 2, 2), score_range=(0, 1))

def wrong():
    return 42
'''


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "user_nets.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "user_nets"
    sys.modules.pop("user_nets", None)


def test_a_module_becomes_a_frozen_target(user_module: str) -> None:
    t = build_target(f"python:{user_module}:linear", task="classification", input_shape=(1, 2, 2), num_classes=5,
                     out=5)
    assert isinstance(t, Target) and t.task == "classification" and t.input_shape == (1, 2, 2)
    assert t(torch.rand(2, 1, 2, 2)).shape == (2, 5)  # the function's own keyword arrived
    assert not t.module.training and not any(p.requires_grad for p in t.module.parameters())
    assert t.provenance == {"source": "python", "callable": f"{user_module}:linear", "params": {"out": 5}}


def test_a_returned_target_is_used_as_it_is(user_module: str) -> None:
    t = build_target(f"python:{user_module}:ready")
    assert (t.name, t.task, t.score_range) == ("mine", "iqa", (0, 1))


@pytest.mark.parametrize(("spec", "params", "message"), [
    ("python:user_nets:wrong", {}, "returned a int, not an nn.Module or Target"),
    ("python:user_nets:linear", {}, "give task and input_shape"),
    ("python:user_nets:absent", {}, "AttributeError"),
    ("python:no_such_module_xyz:f", {}, "ModuleNotFoundError"),
    ("python:justonename", {}, "must name module:function"),
])
def test_bad_python_targets_are_one_line_errors(user_module: str, spec: str, params: dict, message: str) -> None:
    with pytest.raises(RobustgridError, match=message) as err:
        build_target(spec, **params)
    assert "\n" not in str(err.value)


def test_a_python_target_that_returns_no_module_exits_2_through_the_cli(user_module: str, tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture) -> None:
    from robustgrid.benchmark.cli import main

    cfg = tmp_path / "c.toml"
    cfg.write_text('[[suite]]\ntask = "classification"\ndataset = { name = "fashion-mnist", size = 8 }\n'
                   f'targets = ["python:{user_module}:wrong"]\nbudget = {{ eps = [0.0] }}\n'
                   '[[suite.attacks]]\nname = "pgd"\n')
    assert main(["run", str(cfg), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == (f"robustgrid: error: target 'python:{user_module}:wrong' returned a int, not an nn.Module or "
                   "Target\n")
    assert not (tmp_path / "out").exists()
