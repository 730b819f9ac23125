"""The NCIS blind-spot networks of the zoo: one default recipe per dataset, trained by ``robustgrid zoo train``.

``BSN_ZOO`` is the one table of them: ``NCIS(dataset=...)`` takes its default recipe from it, and every row
is a zoo entry named ``weights_name(dataset)`` whose recipe hash is ``recipe_key``, the key ``load_bsn`` looks
weights up by, so what ``zoo train`` stores is what the purifier loads. A BSN is not an attack target.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from torch import Tensor

from robustgrid.defenses.bsn import BlindSpotNet
from robustgrid.defenses.bsn_training import BSNRecipe, bsn_trainer, recipe_key, weights_name
from robustgrid.defenses.unlabeled import unlabeled_images
from robustgrid.models.data import DATASETS
from robustgrid.models.data.base import fingerprint
from robustgrid.models.zoo import ZooEntry, register_zoo


class ZooBSN(NamedTuple):
    """A zoo BSN's recipe and its training cost in CPU-seconds (one thread), measured."""

    recipe: BSNRecipe
    cpu_seconds: float


# Each trains in under 3 minutes on one CPU thread; measured numbers in docs/defenses.md. At this budget the
# number of optimizer steps mattered most: one pass over whole scenes in batches of 16 (188 steps) left the
# scenes BSN at test clean MSE 0.024, random 32x32 crops in batches of 8 (1500 steps, same pixel count) 0.0055.
BSN_ZOO: dict[str, ZooBSN] = {
    "fashion-mnist": ZooBSN(BSNRecipe(), 150),  # 15k 28x28 grey images, one pass (the committed weights' recipe)
    # 64x64 RGB scenes: 3k scenes, 32x32 crops, four passes (different crops each time)
    "fmnist-scenes": ZooBSN(BSNRecipe(dataset="fmnist-scenes", train_images=3000, epochs=4, batch_size=8, crop=32),
                            165),
    # 48x48 RGB patches: a seeded 3553 of the train patches (pristine and degraded), 32x32 crops, three passes
    "skimage-iqa": ZooBSN(BSNRecipe(dataset="skimage-iqa", train_images=3553, epochs=3, batch_size=8, crop=32), 160),
}


def default_recipe(dataset: str | None = None) -> BSNRecipe:
    """The BSN recipe NCIS uses for ``dataset``: the zoo's if it has one, else the defaults on that dataset."""
    dataset = BSNRecipe.dataset if dataset is None else dataset
    return BSN_ZOO[dataset].recipe if dataset in BSN_ZOO else BSNRecipe(dataset=dataset)


@functools.lru_cache(maxsize=3)
def train_images(recipe: BSNRecipe) -> Tensor:
    """The recipe's training images, read once per process (the hash and the training both need them)."""
    return unlabeled_images(recipe.dataset, "train", recipe.train_images, recipe.seed)


@dataclass(frozen=True)
class BSNZooEntry(ZooEntry):
    """A zoo entry hashed by ``recipe_key`` (not the zoo's usual composition), exactly as ``load_bsn`` hashes it."""

    def full_recipe(self) -> dict[str, Any]:
        recipe = BSNRecipe(**self.recipe)
        return recipe_key(recipe, train_images(recipe))


def _fingerprint(recipe: BSNRecipe) -> str:
    return fingerprint(train_images(recipe))


def _build(recipe: BSNRecipe) -> BlindSpotNet:
    return BlindSpotNet(train_images(recipe).shape[1], recipe.width, recipe.depth)


def _train(recipe: BSNRecipe, progress: bool) -> tuple[BlindSpotNet, dict[str, float]]:
    return bsn_trainer(recipe, train_images(recipe), log_every=100 if progress else 0)()


def register_bsn(recipe: BSNRecipe, cpu_seconds: float, task: str) -> BSNZooEntry:
    """Register the BSN of ``recipe`` as zoo entry ``weights_name(recipe.dataset)`` (for ``task``'s images)."""
    entry = BSNZooEntry(
        name=weights_name(recipe.dataset), task=task,
        description=f"NCIS blind-spot network (a purifier's, not a target) on unlabeled {recipe.dataset} images",
        recipe=asdict(recipe),
        data_fingerprint=functools.partial(_fingerprint, recipe),
        build=functools.partial(_build, recipe),
        train=functools.partial(_train, recipe),
        cost=cpu_seconds,
    )  # no to_target: the zoo does not make it a target
    register_zoo(entry)
    return entry


for _dataset, (_recipe, _cost) in BSN_ZOO.items():
    register_bsn(_recipe, _cost, DATASETS.entry(_dataset).meta["task"])
