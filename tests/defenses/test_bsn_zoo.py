"""The zoo's blind-spot networks: listed and trained by the zoo, never targets, found again by ``load_bsn``."""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest
import torch

import robustgrid.defenses.bsn_training as training
from robustgrid.benchmark import zoo_training
from robustgrid.benchmark.zoo_training import train_zoo
from robustgrid.core import RobustgridError
from robustgrid.defenses import bsn_zoo, register_unlabeled
from robustgrid.defenses.bsn_zoo import BSN_ZOO, default_recipe, register_bsn
from robustgrid.defenses.ncis import NCIS
from robustgrid.defenses.unlabeled import UNLABELED
from robustgrid.models.cache import recipe_hash
from robustgrid.models.target import TARGETS
from robustgrid.models.zoo import ZOO, zoo_target

NAMES = [training.weights_name(dataset) for dataset in BSN_ZOO]


def test_zoo_lists_one_bsn_per_dataset_and_none_is_a_target() -> None:
    assert NAMES == ["ncis-bsn-fashion-mnist", "ncis-bsn-fmnist-scenes", "ncis-bsn-skimage-iqa"]
    assert set(NAMES) <= set(ZOO.names())
    assert not set(NAMES) & set(TARGETS.names())
    assert {ZOO.entry(n).meta["task"] for n in NAMES} == {"classification", "segmentation", "iqa"}
    assert all(ZOO.entry(n).meta["target"] is False for n in NAMES)
    assert ZOO.entry("fmnist-resnet").meta["target"] is True
    with pytest.raises(RobustgridError, match="'ncis-bsn-fmnist-scenes' is not an attack target; zoo targets: .*"
                                              "fmnist-resnet"):
        zoo_target("ncis-bsn-fmnist-scenes")


def test_ncis_takes_its_default_recipe_from_the_zoo_table() -> None:
    assert BSN_ZOO["fashion-mnist"].recipe == training.BSNRecipe()  # the committed weights' recipe, unchanged
    assert default_recipe() == default_recipe("fashion-mnist") == NCIS._recipe(None, None)
    for dataset, row in BSN_ZOO.items():
        assert NCIS._recipe(dataset, None) is row.recipe and row.recipe.dataset == dataset
    assert NCIS._recipe("koniq10k", None) == training.BSNRecipe(dataset="koniq10k")  # no zoo row: plain defaults


def test_zoo_entry_hashes_the_recipe_exactly_as_load_bsn() -> None:
    entry = ZOO.build("ncis-bsn-fashion-mnist")
    recipe = training.BSNRecipe()
    images = training.unlabeled_images(recipe.dataset, "train", recipe.train_images, recipe.seed)
    assert entry.full_recipe() == training.recipe_key(recipe, images)
    assert recipe_hash(entry.full_recipe()) == "b64856309d9bd077"  # the committed weights' hash, unchanged


@pytest.fixture
def toy_zoo(tmp_path, monkeypatch):
    """A tiny unlabeled set and its BSN entry, with committed folder and cache under ``tmp_path``."""
    for registry in (ZOO, TARGETS, UNLABELED):
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))
    monkeypatch.setattr("robustgrid.models.cache.COMMITTED", tmp_path / "committed")
    monkeypatch.setattr("robustgrid.models.zoo.COMMITTED", tmp_path / "committed")
    monkeypatch.setenv("ROBUSTGRID_HOME", str(tmp_path / "home"))

    @register_unlabeled("toy-bsn")
    def toy_images(split: str = "train"):
        """Smooth random 1x12x12 images."""
        gen = torch.Generator().manual_seed({"train": 0, "test": 1}[split])
        return torch.nn.functional.avg_pool2d(torch.rand(40, 1, 14, 14, generator=gen), 3, stride=1)

    recipe = training.BSNRecipe(dataset="toy-bsn", width=4, depth=2, train_images=32, test_images=8, batch_size=16)
    register_bsn(recipe, cpu_seconds=1.0, task="classification")
    yield recipe
    bsn_zoo.train_images.cache_clear()  # the toy set's images must not outlive its registration


def test_train_zoo_stores_weights_that_load_bsn_finds_without_training(toy_zoo, monkeypatch) -> None:
    recipe, name = toy_zoo, "ncis-bsn-toy-bsn"
    assert name in ZOO and name not in TARGETS
    with pytest.raises(RobustgridError, match="run 'robustgrid zoo train ncis-bsn-toy-bsn'"):
        training.load_bsn(recipe, allow_train=False)
    (rec,) = train_zoo([name], progress=False, workers=1)
    assert rec.source == "trained" and set(rec.metrics) == {"train_mse", "test_mse", "test_clean_mse", "test_noise_mse"}

    def no_training(*args, **kwargs):
        raise AssertionError("weights the zoo stored must not be retrained")

    monkeypatch.setattr(training, "train_bsn", no_training)
    net, found = training.load_bsn(recipe, allow_train=False)
    assert (found.source, found.recipe_hash, found.sha256) == ("cache", rec.recipe_hash, rec.sha256)
    assert net.architecture()["in_chans"] == 1 and net.width == 4
    (committed,) = train_zoo([name], commit=True, workers=1)  # promotes the cached file, no retraining
    assert committed.source == "committed" and committed.sha256 == rec.sha256
    ncis = NCIS(recipe=recipe, allow_train=False)
    assert ncis.describe()["bsn"]["recipe_hash"] == rec.recipe_hash
    assert training.load_bsn(recipe, allow_train=False)[1].source == "committed"


def test_a_spawned_training_worker_finds_the_bsn_entries() -> None:
    """A spawned ``zoo train`` worker starts bare and unpickles its task function: that import alone must register
    the blind-spot networks (``models`` alone does not know them, since it never imports ``defenses``)."""
    task = pickle.dumps(zoo_training._train_one)
    code = ("import pickle, sys\n"
            "from robustgrid.models.zoo import ZOO\n"
            "assert 'ncis-bsn-skimage-iqa' not in ZOO and 'robustgrid.defenses' not in sys.modules\n"
            f"pickle.loads({task!r})\n"
            "print(ZOO.build('ncis-bsn-skimage-iqa').cost)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(BSN_ZOO["skimage-iqa"].cpu_seconds)]
