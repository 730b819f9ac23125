"""How far a zoo entry's test metric moves with its training seed: the tolerance a cross-machine retraining check needs.

Retrains each named entry with other recipe seeds (one thread, nothing stored) and prints the metric per seed beside
the committed record. Another CPU's floating-point rounding makes training another trajectory, as a seed does.
``--set epochs=10`` (JSON values) changes the recipe too: how a recipe change compares with the seed spread.
``--store`` keeps each trained model in the cache under its changed recipe, so that adopting the change in the code
and running ``robustgrid zoo train --commit`` promotes that very model instead of training it again.
Run: ``python -m robustgrid.benchmark.experiments.zoo_seed_spread fmnist-resnet [--seeds 1 2 3] [--set k=v]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import statistics
import time
from typing import Any

import torch

from robustgrid.benchmark.experiments import run_main
from robustgrid.benchmark.zoo_training import ZOO
from robustgrid.core import RobustgridError
from robustgrid.models.cache import COMMITTED, train_and_store

METRIC = {"classification": "test_accuracy", "segmentation": "test_miou", "iqa": "test_srocc"}  # a target's, by task
BSN_METRIC = "test_clean_mse"  # the zoo's only entries that are not targets are the NCIS blind-spot networks


def reseeded(train: functools.partial, seed: int, changes: dict[str, Any]) -> functools.partial:
    """The entry's train call with its recipe (the dataclass argument that has a ``seed``) given ``seed``."""
    args = list(train.args)
    for i, a in enumerate(args):
        if dataclasses.is_dataclass(a) and hasattr(a, "seed"):
            fields = [f.name for f in dataclasses.fields(a)]
            unknown = sorted(set(changes) - set(fields))
            if unknown:
                raise RobustgridError(f"recipe {type(a).__name__} has no field {unknown[0]!r}; its fields: "
                                      + ", ".join(fields))
            args[i] = dataclasses.replace(a, seed=seed, **changes)
    if args == list(train.args):
        raise RobustgridError("this zoo entry's trainer takes no seeded recipe; entries with one: classifiers, "
                              "segmenters, IQA models")
    return functools.partial(train.func, *args, **train.keywords)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="+")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--metric", help="the recorded test metric to compare (default: the task's)")
    ap.add_argument("--store", action="store_true", help="cache each trained model under its changed recipe")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="a recipe field to change")
    args = ap.parse_args(argv)
    changes = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        try:
            changes[key] = json.loads(value)
        except json.JSONDecodeError:
            sep = ""
        if not sep:
            raise RobustgridError(f"--set takes KEY=JSON (e.g. epochs=10 or model_kwargs='{{\"n_kers\": 50}}'), "
                                  f"not {item!r}")
    entries = [ZOO.build(n) for n in args.names]  # unknown names and recipe fields fail here, before any training
    metrics = {}
    for entry in entries:
        reseeded(entry.train, args.seeds[0], changes)
        committed = json.loads((COMMITTED / f"{entry.name}.json").read_text())
        metric = args.metric or (METRIC[entry.task] if entry.to_target is not None else BSN_METRIC)
        if metric not in committed["metrics"]:
            raise RobustgridError(f"zoo entry {entry.name!r} records no metric {metric!r}; it records "
                                  + ", ".join(committed["metrics"]))
        if args.store and entry.to_target is None:  # a blind-spot network's training images depend on its seed
            raise RobustgridError(f"--store takes zoo targets, whose data does not depend on the recipe's seed; "
                                  f"{entry.name!r} is a blind-spot network")
        metrics[entry.name] = metric, committed
    torch.set_num_threads(1)
    columns = ["entry", "metric", "committed (seed)", *(f"seed {s}" for s in args.seeds), "mean", "sd",
               "max abs diff from committed"]
    print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for entry in entries:
        metric, committed = metrics[entry.name]
        values = []
        for seed in args.seeds:
            start = time.perf_counter()
            train = reseeded(entry.train, seed, changes)
            if args.store:  # keyed as the zoo keys it: the entry's full recipe with the changes and the seed
                measured = train_and_store(entry.name, {**entry.full_recipe(), **changes, "seed": seed},
                                           lambda train=train: train(False)).metrics
            else:
                _, measured = train(False)
            values.append(float(measured[metric]))
            print(json.dumps({"entry": entry.name, "seed": seed, **changes, metric: values[-1],
                              "seconds": round(time.perf_counter() - start, 1)}), flush=True)
        ref = float(committed["metrics"][metric])
        print(f"| {entry.name} | {metric} | {ref:.4f} ({committed['recipe']['seed']}) | "
              + " | ".join(f"{v:.4f}" for v in values)
              + f" | {statistics.mean(values):.4f} | {statistics.stdev(values) if len(values) > 1 else 0:.4f} | "
              f"{max(abs(v - ref) for v in values):.4f} |", flush=True)


if __name__ == "__main__":
    run_main(main)
