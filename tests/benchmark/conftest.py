"""Small classification grid configs used by the benchmark tests (TOML text, parsed form, a run store)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

SMALL_TOML = """
seed = 0

[[suite]]
name = "tiny"
task = "classification"
dataset = { name = "fashion-mnist", split = "test", size = 48 }
targets = ["fmnist-resnet", "fmnist-mobilenet"]
threats = ["whitebox", "transfer"]
budget = { norm = "linf", eps = [0.0, 0.05, 0.15], checkpoints = [1, 2] }
batch_size = 32

[[suite.attacks]]
name = "pgd"
steps = 4
rel_step_size = 0.5

[[suite.attacks]]
name = "fgsm"
steps = 1
"""


@pytest.fixture
def small_config() -> dict[str, Any]:
    return tomllib.loads(SMALL_TOML)


REPORT_TOML = """
seed = 0

[[suite]]
name = "tiny"
task = "classification"
dataset = { name = "fashion-mnist", split = "test", size = 32 }
targets = ["fmnist-resnet", "fmnist-mobilenet"]
defenses = ["none", "gaussian"]
threats = ["whitebox", "transfer", "blind", "bpda", "adaptive"]
budget = { norm = "linf", eps = [0.0, 0.002], checkpoints = [1, 2] }  # too small a budget: no-fall flags
batch_size = 32

[[suite.attacks]]
name = "pgd"
steps = 4
rel_step_size = 0.5

[[suite.attacks]]
name = "fgsm"
steps = 1
"""


@pytest.fixture(scope="session")
def grid_store(tmp_path_factory) -> Path:
    """A folder holding the store of a small grid (every threat, a Gaussian purifier, a budget too small to break
    the models, so that the sanity flags have something to say), no report."""
    from robustgrid.benchmark import parse_config, run_grid

    out = tmp_path_factory.mktemp("grid")
    run_grid(parse_config(tomllib.loads(REPORT_TOML)), out, progress=False, report=False)
    return out


@pytest.fixture(scope="module")
def reported(grid_store, tmp_path_factory) -> Path:
    """A copy of the grid's store with one report written next to it (one per test module, which may add files)."""
    import shutil

    from robustgrid.benchmark.report import write_report

    out = tmp_path_factory.mktemp("report")
    shutil.copy(grid_store / "cells.sqlite", out / "cells.sqlite")
    write_report(out)
    return out
