"""The zoo: networks the project trains itself, one ZooEntry per name, for any task.

Classifiers, segmenters and IQA models each register entries here (``register_zoo``); ``train_zoo``
and ``zoo_target`` then treat them alike: committed weights, else cached, else trained once. Networks
that are not attack targets (the NCIS blind-spot networks of ``defenses``) are zoo entries too, without
a ``to_target``; ``train_zoo`` trains them alongside.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from robustgrid.models.cache import COMMITTED, WeightsRecord, find_weights, load_or_train, train_and_store
from robustgrid.models.target import TARGETS, Target
from torch import nn

from robustgrid.core import Registry, RobustgridError

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

    def full_recipe(self) -> dict[str, Any]:
        """The hashed recipe: the static part plus the fingerprint of the training data."""
        return {**self.recipe, "task": self.task, "data": self.data_fingerprint()}


ZOO: Registry[ZooEntry] = Registry("zoo model")

# Modules of packages above ``models`` that register zoo entries. They import ``models``, so ``models`` cannot
# import them when it loads; ``load_zoo`` imports them by name when the whole zoo is needed.
EXTERNAL_ZOO_MODULES = ("robustgrid.defenses.bsn_zoo",)


def load_zoo() -> Registry[ZooEntry]:
    """The complete zoo: the entries ``models`` registers on import plus those of EXTERNAL_ZOO_MODULES."""
    for module in EXTERNAL_ZOO_MODULES:
        importlib.import_module(module)
    return ZOO


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


def train_zoo(names: list[str] | None = None, force: bool = False, commit: bool = False,
              progress: bool = True, workers: int | None = None) -> list[WeightsRecord]:
    """Train the named zoo models (all if None) whose weights are missing or stale, or all with ``force``.

    ``commit`` writes into the repository's ``models/weights`` instead of the cache under $ROBUSTGRID_HOME.
    ``workers`` processes (default: one per core, at most one per model) train side by side, one thread each:
    small networks use a few cores better this way than through intra-op threads, and one thread keeps the
    weights reproducible bit for bit.
    """
    zoo = load_zoo()
    entries = [zoo.build(n) for n in (names if names else zoo.names())]
    records: dict[str, WeightsRecord] = {}
    todo: list[tuple[ZooEntry, dict[str, Any]]] = []
    for entry in entries:
        recipe = entry.full_recipe()
        rec = None if force else find_weights(entry.name, recipe)
        if rec is not None and commit and rec.source != "committed":
            rec = _commit_cached(rec)
        if rec is None:
            todo.append((entry, recipe))
        else:
            records[entry.name] = rec
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = min(len(todo), workers or cores)
    if workers <= 1:
        records.update({e.name: _train_one(e.name, r, commit, progress) for e, r in todo})
    else:  # spawned workers re-register the zoo (load_zoo in _train_one); longest first for the shortest makespan
        ctx = multiprocessing.get_context("spawn")
        todo.sort(key=lambda item: -item[0].cost)
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                 initargs=(ctx.Value("i", 0),)) as pool:
            futures = {e.name: pool.submit(_train_one, e.name, r, commit, progress) for e, r in todo}
            records.update({name: f.result() for name, f in futures.items()})
    return [records[e.name] for e in entries]


def _train_one(name: str, recipe: dict[str, Any], commit: bool, progress: bool) -> WeightsRecord:
    entry = load_zoo().build(name)  # a spawned worker has imported models only
    return train_and_store(name, recipe, lambda: entry.train(progress), commit=commit)  # on one thread


_BAR_POSITION = 0  # which terminal line this process's progress bar owns (one per parallel worker)


def _init_worker(counter: Any) -> None:
    global _BAR_POSITION
    with counter.get_lock():
        _BAR_POSITION = counter.value
        counter.value += 1


def progress_bar(total: int, desc: str, enabled: bool = True) -> Any:
    """A tqdm bar for zoo training; parallel workers each draw on their own line."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, unit="step", leave=False, position=_BAR_POSITION)
