"""Shared fixtures: offline hub, fixed threads, small real data and the committed zoo."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ROBUSTGRID_NO_TRAIN", "1")  # tests use committed weights; training is zoo's job

import pytest  # noqa: E402
import torch  # noqa: E402

# two threads on the idle 2-core machine; ROBUSTGRID_THREADS=1 when other jobs share the cores (two threads
# under contention can be many times slower than one)
torch.set_num_threads(int(os.environ.get("ROBUSTGRID_THREADS", "2")))


@pytest.fixture(scope="session")
def fmnist_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """64 Fashion-MNIST test images (seeded subset) and labels."""
    from robustgrid.models.data import build_dataset

    ds = build_dataset("fashion-mnist", split="test", size=64, seed=0)
    return ds.images, ds.labels


@pytest.fixture(scope="session")
def zoo_resnet():
    """The committed Fashion-MNIST ResNet target (never trains in tests)."""
    from robustgrid.models.zoo import zoo_target

    return zoo_target("fmnist-resnet", allow_train=False)


@pytest.fixture
def toy_zoo(tmp_path, monkeypatch) -> list[bool]:
    """A toy zoo entry "toy" (committed folder and cache under tmp_path) whose training records its calls."""
    from torch import nn

    from robustgrid.models.target import TARGETS, Target
    from robustgrid.models.zoo import ZOO, ZooEntry, register_zoo

    monkeypatch.setattr(ZOO, "_entries", dict(ZOO._entries))
    monkeypatch.setattr(TARGETS, "_entries", dict(TARGETS._entries))
    monkeypatch.setattr("robustgrid.models.cache.COMMITTED", tmp_path / "committed")
    monkeypatch.setattr("robustgrid.models.zoo.COMMITTED", tmp_path / "committed")
    monkeypatch.setenv("ROBUSTGRID_HOME", str(tmp_path / "home"))
    calls: list[bool] = []

    def train(progress: bool) -> tuple[nn.Module, dict[str, float]]:
        calls.append(progress)
        torch.manual_seed(0)
        return nn.Linear(4, 2), {"score": 0.5}

    def to_target(module: nn.Module, rec) -> Target:
        return Target("toy", "classification", module, (1, 2, 2), provenance={"source": rec.source})

    register_zoo(ZooEntry("toy", "classification", "a toy", {"lr": 1.0}, lambda: "data-v1",
                          lambda: nn.Linear(4, 2), train, to_target))
    return calls
