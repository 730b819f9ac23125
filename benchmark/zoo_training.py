"""``robustgrid zoo train``: train every missing or stale zoo network, in parallel worker processes.

The zoo's entries come from several packages (classifiers, segmenters and IQA models from ``models``, the NCIS
blind-spot networks from ``defenses``), so the whole-zoo orchestration lives here, above all of them: importing
this module (as each spawned worker does to find ``_train_one``) registers every entry.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import robustgrid.defenses  # noqa: F401  (its blind-spot networks register zoo entries on import)
from robustgrid.models.cache import WeightsRecord
from robustgrid.models.zoo import ZOO, ZooEntry, set_bar_position, stored_weights, train_entry


def train_zoo(names: list[str] | None = None, force: bool = False, commit: bool = False,
              progress: bool = True, workers: int | None = None) -> list[WeightsRecord]:
    """Train the named zoo models (all if None) whose weights are missing or stale, or all with ``force``.

    ``commit`` writes into the repository's ``models/weights`` instead of the cache under $ROBUSTGRID_HOME.
    ``workers`` processes (default: one per core, at most one per model) train side by side, one thread each:
    small networks use a few cores better this way than through intra-op threads, and one thread keeps the
    weights reproducible bit for bit.
    """
    entries = [ZOO.build(n) for n in (names if names else ZOO.names())]
    records: dict[str, WeightsRecord] = {}
    todo: list[tuple[ZooEntry, dict[str, Any]]] = []
    for entry in entries:
        recipe = entry.full_recipe()
        rec = None if force else stored_weights(entry.name, recipe, commit)
        if rec is None:
            todo.append((entry, recipe))
        else:
            records[entry.name] = rec
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = min(len(todo), workers or cores)
    if workers <= 1:
        records.update({e.name: _train_one(e.name, r, commit, progress) for e, r in todo})
    else:  # spawned workers import this module, which registers the whole zoo; longest first for the shortest makespan
        for prepare in dict.fromkeys(e.prepare for e, _ in todo if e.prepare is not None):
            prepare()  # e.g. the IQA train split's FSIMc labels: made and cached once, not once per worker
        ctx = multiprocessing.get_context("spawn")
        todo.sort(key=lambda item: -item[0].cost)
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                 initargs=(ctx.Value("i", 0),)) as pool:
            futures = {e.name: pool.submit(_train_one, e.name, r, commit, progress) for e, r in todo}
            records.update({name: f.result() for name, f in futures.items()})
    return [records[e.name] for e in entries]


def _train_one(name: str, recipe: dict[str, Any], commit: bool, progress: bool) -> WeightsRecord:
    """Train one entry; defined here (not in ``models``) so that a spawned worker unpickling it imports this
    module, and with it every package's zoo entries."""
    return train_entry(name, recipe, commit, progress)  # on one thread


def _init_worker(counter: Any) -> None:
    with counter.get_lock():
        set_bar_position(counter.value)
        counter.value += 1
