"""The committed Fashion-MNIST zoo: loads without training and reproduces its recorded accuracy."""

from __future__ import annotations

import json

import pytest

from models.cache import COMMITTED, recipe_hash
from models.classifiers import FMNIST_ZOO, accuracy
from models.data import build_dataset
from models.target import TARGETS
from models.zoo import ZOO, train_zoo, zoo_target


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
    archs = {recipe.arch for _, recipe in FMNIST_ZOO.values()}
    assert len(archs) == 3 and any("resnet" in a for a in archs) and any("vit" in a for a in archs)
    assert sum((COMMITTED / f"{name}.safetensors").stat().st_size for name in FMNIST_ZOO) < 10 * 2**20
    assert set(FMNIST_ZOO) <= set(TARGETS.names())


def test_train_zoo_skips_fresh_committed_weights() -> None:
    (rec,) = train_zoo(["fmnist-resnet"], progress=False)
    assert rec.source == "committed" and rec.metrics["test_accuracy"] >= 0.88
