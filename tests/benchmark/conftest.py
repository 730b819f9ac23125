"""A small classification grid config used by the benchmark tests (TOML text and parsed form)."""

from __future__ import annotations

import tomllib
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
