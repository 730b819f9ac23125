"""The committed Fashion-MNIST zoo: loads without training and reproduces its recorded accuracy."""

from __future__ import annotations

import json

import pytest

from robustgrid.core import RobustgridError
from robustgrid.models.cache import COMMITTED, recipe_hash
from robustgrid.models.classifiers import FMNIST_ZOO, accuracy
from robustgrid.models.data import build_dataset
from robustgrid.models.target import TARGETS
from robustgrid.models.zoo import ZOO, stored_weights, train_entry, zoo_target


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


def test_per_entry_training_and_caching_with_a_toy_entry(tmp_path, toy_zoo) -> None:
    """Missing weights refuse to load, ``train_entry`` stores them in the cache, ``commit`` promotes them."""
    calls, entry = toy_zoo, ZOO.build("toy")
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
