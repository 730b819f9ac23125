"""The zoo: networks the project trains itself, one ZooEntry per name, for any task.

Classifiers, segmenters and IQA models each register entries here (``register_zoo``); ``zoo_target``
and the per-entry ``stored_weights`` / ``train_entry`` then treat them alike: committed weights, else
cached, else trained once. Networks that are not attack targets (the NCIS blind-spot networks of
``defenses``) are zoo entries too, without a ``to_target``. Training the whole zoo (``robustgrid zoo
train``) needs the entries of every package, so it lives above them all, in ``benchmark.zoo_training``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from robustgrid.core import Registry, RobustgridError
from robustgrid.models.cache import COMMITTED, WeightsRecord, find_weights, load_or_train, train_and_store
from robustgrid.models.target import TARGETS, Target

TrainFn = Callable[[bool], tuple[nn.Module, dict[str, float]]]  # progress -> (trained module, test metrics)


@dataclass(frozen=True)
class ZooEntry:
    """A trainable network: its recipe, how to build it empty, train it, and wrap it as a Target (if it is one)."""

    name: str
    task: str
    description: str
    recipe: dict[str, Any]            # everything that determines the weights, except the data
    data_fingerprint: Callable[[], str]  # lazy: reading the training data costs seconds
    build: Callable[[], nn.Module]
    train: TrainFn
    to_target: Callable[[nn.Module, WeightsRecord], Target] | None = None  # None: trained, but not an attack target
    cost: float = 1.0  # estimated training CPU-seconds on one thread: parallel training starts the longest first
    prepare: Callable[[], object] | None = None  # makes shared training data once, before parallel workers start

    def full_recipe(self) -> dict[str, Any]:
        """The hashed recipe: the static part plus the fingerprint of the training data."""
        return {**self.recipe, "task": self.task, "data": self.data_fingerprint()}


ZOO: Registry[ZooEntry] = Registry("zoo model")


def register_zoo(entry: ZooEntry) -> ZooEntry:
    """Add ``entry`` to the zoo and, if it has a ``to_target``, register it as a target of the same name."""

    def get_entry() -> ZooEntry:
        return entry

    def build_target(allow_train: bool = True) -> Target:
        return zoo_target(entry.name, allow_train=allow_train)

    get_entry.__doc__ = build_target.__doc__ = entry.description
    ZOO.register(entry.name, task=entry.task, target=entry.to_target is not None)(get_entry)
    if entry.to_target is not None:
        TARGETS.register(entry.name, task=entry.task, zoo=True)(build_target)
    return entry


def zoo_target(name: str, allow_train: bool = True) -> Target:
    """The zoo model ``name`` as a Target: committed or cached weights, else trained (if allowed) and cached."""
    entry = ZOO.build(name)
    if entry.to_target is None:
        targets = ", ".join(n for n in ZOO.names() if ZOO.entry(n).meta["target"])
        raise RobustgridError(f"zoo model {name!r} is not an attack target; zoo targets: {targets}")
    module, rec = load_or_train(name, entry.full_recipe(), entry.build, lambda: entry.train(True), allow_train)
    return entry.to_target(module, rec)


def _commit_cached(rec: WeightsRecord) -> WeightsRecord:
    """Copy cached weights and their record into the committed folder (same recipe, no retraining)."""
    dest = COMMITTED / f"{rec.name}.safetensors"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(rec.path, dest)
    shutil.copyfile(rec.path.with_suffix(".json"), dest.with_suffix(".json"))
    return WeightsRecord(rec.name, dest, rec.recipe_hash, rec.sha256, rec.metrics, rec.train_seconds, "committed")


def stored_weights(name: str, recipe: dict[str, Any], commit: bool = False) -> WeightsRecord | None:
    """Fresh committed or cached weights of zoo entry ``name`` (copied into the committed folder if ``commit``)."""
    rec = find_weights(name, recipe)
    if rec is not None and commit and rec.source != "committed":
        rec = _commit_cached(rec)
    return rec


def train_entry(name: str, recipe: dict[str, Any], commit: bool = False, progress: bool = True) -> WeightsRecord:
    """Train zoo entry ``name`` (registered in this process) on one thread and store its weights and record."""
    entry = ZOO.build(name)
    return train_and_store(name, recipe, lambda: entry.train(progress), commit=commit)


_BAR_POSITION = 0  # which terminal line this process's progress bar owns (one per parallel worker)


def set_bar_position(position: int) -> None:
    """Give this process's zoo progress bars terminal line ``position`` (one line per parallel training worker)."""
    global _BAR_POSITION
    _BAR_POSITION = position


def progress_bar(total: int, desc: str, enabled: bool = True) -> Any:
    """A tqdm bar for zoo training; parallel workers each draw on their own line."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, unit="step", leave=False, position=_BAR_POSITION)
