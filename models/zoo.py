"""The zoo: networks the project trains itself, one ZooEntry per name, for any task.

Classifiers, segmenters and IQA models each register entries here (``register_zoo``); ``train_zoo``
and ``zoo_target`` then treat them alike: committed weights, else cached, else trained once.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from models.cache import COMMITTED, WeightsRecord, find_weights, load_or_train, train_and_store
from models.registry import Registry
from models.target import TARGETS, Target

TrainFn = Callable[[bool], tuple[nn.Module, dict[str, float]]]  # progress -> (trained module, test metrics)


@dataclass(frozen=True)
class ZooEntry:
    """A trainable network: its recipe, how to build it empty, train it, and wrap it as a Target."""

    name: str
    task: str
    description: str
    recipe: dict[str, Any]            # everything that determines the weights, except the data
    data_fingerprint: Callable[[], str]  # lazy: reading the training data costs seconds
    build: Callable[[], nn.Module]
    train: TrainFn
    to_target: Callable[[nn.Module, WeightsRecord], Target]

    def full_recipe(self) -> dict[str, Any]:
        """The hashed recipe: the static part plus the fingerprint of the training data."""
        return {**self.recipe, "task": self.task, "data": self.data_fingerprint()}


ZOO: Registry[ZooEntry] = Registry("zoo model")


def register_zoo(entry: ZooEntry) -> ZooEntry:
    """Add ``entry`` to the zoo and register it as a target of the same name."""

    def get_entry() -> ZooEntry:
        return entry

    def build_target(allow_train: bool = True) -> Target:
        return zoo_target(entry.name, allow_train=allow_train)

    get_entry.__doc__ = build_target.__doc__ = entry.description
    ZOO.register(entry.name, task=entry.task)(get_entry)
    TARGETS.register(entry.name, task=entry.task, zoo=True)(build_target)
    return entry


def zoo_target(name: str, allow_train: bool = True) -> Target:
    """The zoo model ``name`` as a Target: committed or cached weights, else trained (if allowed) and cached."""
    entry = ZOO.build(name)
    module, rec = load_or_train(name, entry.full_recipe(), entry.build, lambda: entry.train(True), allow_train)
    return entry.to_target(module, rec)


def _commit_cached(rec: WeightsRecord) -> WeightsRecord:
    """Copy cached weights and their record into the committed folder (same recipe, no retraining)."""
    dest = COMMITTED / f"{rec.name}.safetensors"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(rec.path, dest)
    shutil.copyfile(rec.path.with_suffix(".json"), dest.with_suffix(".json"))
    return WeightsRecord(rec.name, dest, rec.recipe_hash, rec.sha256, rec.metrics, rec.train_seconds, "committed")


def train_zoo(names: list[str] | None = None, force: bool = False, commit: bool = False,
              progress: bool = True) -> list[WeightsRecord]:
    """Train the named zoo models (all if None) whose weights are missing or stale, or all with ``force``.

    ``commit`` writes into the repository's ``models/weights`` instead of the cache under $ROBUSTGRID_HOME.
    """
    entries = [ZOO.build(n) for n in (names if names else ZOO.names())]
    records = []
    for entry in entries:
        recipe = entry.full_recipe()
        rec = None if force else find_weights(entry.name, recipe)
        if rec is not None and commit and rec.source != "committed":
            rec = _commit_cached(rec)
        if rec is None:
            rec = train_and_store(entry.name, recipe, lambda e=entry: e.train(progress), commit=commit)
        records.append(rec)
    return records
