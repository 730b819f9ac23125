"""The committed Fashion-MNIST zoo: loads without training and reproduces its recorded accuracy."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from robustgrid.core import RobustgridError
from robustgrid.models.cache import COMMITTED, recipe_hash
from robustgrid.models.classifiers import FMNIST_ZOO, accuracy
from robustgrid.models.data import build_dataset
from robustgrid.models.target import TARGETS, Target
from robustgrid.models.zoo import ZOO, ZooEntry, register_zoo, stored_weights, train_entry, zoo_target


@pytest.fixture(scope="module")
def test_split():
    return build_dataset("fashion-mnist", split="test")


@pytest.mark.parametrize("name", sorted(FMNIST_ZOO))
def test_committed_model_reproduces_recorded_accuracy(name: str, test_split) -> None:
    target = zoo_target(name, allow_train=False)
    recorded = json.loads((COMMITTED / f"{name}.json").read_text())
    assert target.provenance["weights_source"] == "committed"
    assert recorded["recipe_hash"] == recipe_hash(ZOO.build(name).full_recipe())
    measured = accuracy(target.module, test_split)
    assert measured == pytest.approx(recorded["metrics"]["test_accuracy"], abs=0.002)
    assert measured >= 0.88
    assert target.input_shape == (1, 28, 28) and target.num_classes == 10


def test_zoo_families_and_size() -> None:
    archs = {model.recipe.arch for model in FMNIST_ZOO.values()}
    assert len(archs) == 3 and any("resnet" in a for a in archs) and any("vit" in a for a in archs)
    assert sum((COMMITTED / f"{name}.safetensors").stat().st_size for name in FMNIST_ZOO) < 10 * 2**20
    assert set(FMNIST_ZOO) <= set(TARGETS.names())


def test_stored_weights_are_the_fresh_committed_ones() -> None:
    entry = ZOO.build("fmnist-resnet")
    rec = stored_weights(entry.name, entry.full_recipe())
    assert rec.source == "committed" and rec.metrics["test_accuracy"] >= 0.88
    assert stored_weights(entry.name, {**entry.full_recipe(), "epochs": 99}) is None  # another recipe: stale


def test_per_entry_training_and_caching_with_a_toy_entry(tmp_path, monkeypatch) -> None:
    """Missing weights refuse to load, ``train_entry`` stores them in the cache, ``commit`` promotes them."""
    monkeypatch.setattr(ZOO, "_entries", dict(ZOO._entries))
    monkeypatch.setattr(TARGETS, "_entries", dict(TARGETS._entries))
    monkeypatch.setattr("robustgrid.models.cache.COMMITTED", tmp_path / "committed")
    monkeypatch.setattr("robustgrid.models.zoo.COMMITTED", tmp_path / "committed")
    monkeypatch.setenv("ROBUSTGRID_HOME", str(tmp_path / "home"))
    calls = []

    def train(progress: bool) -> tuple[nn.Module, dict[str, float]]:
        calls.append(progress)
        torch.manual_seed(0)
        return nn.Linear(4, 2), {"score": 0.5}

    def to_target(module: nn.Module, rec) -> Target:
        return Target("toy", "classification", module, (1, 2, 2), provenance={"source": rec.source})

    entry = register_zoo(ZooEntry("toy", "classification", "a toy", {"lr": 1.0}, lambda: "data-v1",
                                  lambda: nn.Linear(4, 2), train, to_target))
    recipe = entry.full_recipe()
    with pytest.raises(RobustgridError, match="run 'robustgrid zoo train toy'"):
        zoo_target("toy", allow_train=False)
    assert stored_weights("toy", recipe) is None
    rec = train_entry("toy", recipe, progress=False)
    assert rec.source == "trained" and rec.path.parent == tmp_path / "home" / "weights" and calls == [False]
    assert TARGETS.build("toy", allow_train=False).provenance["source"] == "cache"
    rec = stored_weights("toy", recipe, commit=True)
    assert rec.source == "committed" and rec.path == tmp_path / "committed" / "toy.safetensors" and len(calls) == 1
    assert zoo_target("toy", allow_train=False).provenance["source"] == "committed"
