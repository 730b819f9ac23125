"""``robustgrid zoo train``: trains what is missing or stale, reuses what is fresh, promotes with ``commit``."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustgrid.benchmark.zoo_training import train_zoo
from robustgrid.models.target import TARGETS, Target
from robustgrid.models.zoo import ZOO, ZooEntry, register_zoo, zoo_target


def test_train_zoo_skips_fresh_committed_weights() -> None:
    (rec,) = train_zoo(["fmnist-resnet"], progress=False)
    assert rec.source == "committed" and rec.metrics["test_accuracy"] >= 0.88


def test_the_whole_zoo_includes_the_blind_spot_networks_of_defenses() -> None:
    assert {"fmnist-resnet", "scenes-fpn", "iqa-cnniqa", "ncis-bsn-fashion-mnist"} <= set(ZOO.names())


@pytest.fixture
def toy_calls(tmp_path, monkeypatch) -> list[bool]:
    """A toy zoo entry "toy" whose training records its calls, with committed folder and cache under tmp_path."""
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


def test_train_zoo_trains_missing_reuses_fresh_commits_and_forces(toy_calls, tmp_path) -> None:
    (rec,) = train_zoo(["toy"], progress=False, workers=1)
    assert rec.source == "trained" and rec.path.parent == tmp_path / "home" / "weights" and toy_calls == [False]
    (rec,) = train_zoo(["toy"], progress=False, workers=1)
    assert rec.source == "cache" and len(toy_calls) == 1
    (rec,) = train_zoo(["toy"], commit=True, workers=1)
    assert rec.source == "committed" and rec.path == tmp_path / "committed" / "toy.safetensors" and len(toy_calls) == 1
    assert zoo_target("toy", allow_train=False).provenance["source"] == "committed"
    train_zoo(["toy"], force=True, progress=False, workers=1)
    assert len(toy_calls) == 2
