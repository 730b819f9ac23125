"""Run a grid: prepare (validate, load) every suite, then generate each unit once and evaluate its cells."""

from __future__ import annotations

import inspect
import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from robustgrid.attacks import ATTACKS, build_attack
from robustgrid.attacks.loop import GradientAttack
from robustgrid.benchmark.config import Config, Suite
from robustgrid.benchmark.planner import Unit, naive_grad_evals, plan_suite
from robustgrid.benchmark.provenance import describe, module_hash
from robustgrid.benchmark.store import Store
from robustgrid.defenses import Defended, Purifier, bpda, build_defense
from robustgrid.models.data import ImageDataset, build_dataset
from robustgrid.models.target import Target, build_target, target_task
from robustgrid.models.tasks import Task, build_task
from torch import Tensor, nn
from tqdm.auto import tqdm

from robustgrid.core import RobustgridError


@dataclass
class Prepared:
    """A suite with everything loaded and validated: nothing in here can fail for a user reason later."""

    suite: Suite
    task: Task
    data: ImageDataset
    targets: dict[str, Target]
    defenses: dict[str, Purifier]
    identity: dict[str, str]
    provenance: dict[str, Any]
    units: list[Unit] = field(default_factory=list)
    provenance_json: str = ""


def _build_defense(spec_name: str, params: dict[str, Any], data: ImageDataset) -> Purifier:
    """Build a purifier; learned ones get the suite's dataset (to train on) unless the config names one."""
    from robustgrid.defenses import DEFENSES

    accepts = inspect.signature(DEFENSES.entry(spec_name).fn).parameters
    if "dataset" in accepts and "dataset" not in params:
        params = {**params, "dataset": data.name}
    if "in_chans" in accepts and "in_chans" not in params:
        params = {**params, "in_chans": int(data.images.shape[1])}
    return build_defense(spec_name, **params)


def prepare(suite: Suite, seed: int, raw_config: str) -> Prepared:
    """Load data, targets and defenses and build every attack once: all user errors surface here."""
    where = f"suite {suite.name!r}"
    try:
        return _prepare(suite, seed, raw_config, where)
    except OSError as exc:  # a file the config names (data root, weights) that cannot be read
        raise RobustgridError(f"{where}: {exc.strerror or type(exc).__name__}: {exc.filename or exc}") from None


def _prepare(suite: Suite, seed: int, raw_config: str, where: str) -> Prepared:
    task = build_task(suite.task)
    ds = suite.dataset.kwargs
    data = build_dataset(suite.dataset.name, **ds)
    targets: dict[str, Target] = {}
    for spec in suite.targets:
        declared = target_task(spec.name)
        if declared is not None and declared != suite.task:
            raise RobustgridError(f"{where}: target {spec.name!r} is a {declared} model, the suite's task is "
                                  f"{suite.task}")
        tgt = build_target(spec.name, **spec.kwargs)
        task.check_target(tgt)
        if tgt.task != suite.task:
            raise RobustgridError(f"{where}: target {spec.name!r} is a {tgt.task} model, the suite's task is "
                                  f"{suite.task}")
        if tuple(tgt.input_shape) != tuple(data.images.shape[1:]):
            raise RobustgridError(f"{where}: target {spec.name!r} takes images of shape {tuple(tgt.input_shape)}, "
                                  f"dataset {data.name!r} gives {tuple(data.images.shape[1:])}")
        targets[spec.name] = tgt
    task.check_batch(data.images[: suite.batch_size], data.labels[: suite.batch_size])
    defenses = {d.name: _build_defense(d.name, d.kwargs, data) for d in suite.defenses}
    for name, p in defenses.items():
        if "adaptive" in suite.threats and name != "none" and not p.differentiable:
            raise RobustgridError(f"{where}: threat 'adaptive' needs a differentiable purifier; {name!r} is not "
                                  f"(use 'bpda')")
    for a in suite.attacks:
        tasks = ATTACKS.entry(a.name).meta.get("tasks") if a.name in ATTACKS else None
        if tasks is not None and suite.task not in tasks:
            raise RobustgridError(f"{where}: attack {a.name!r} is for {', '.join(tasks)} models, not {suite.task}")
        if not a.name.startswith("torchattacks:"):
            ATTACKS.entry(a.name)  # unknown names fail here with close matches
        build_attack(a.name, norm=suite.budget.norm, eps=max(suite.budget.eps), task=task, **a.kwargs)
    identity = {"dataset": f"{data.name}:{data.split}:{data.fingerprint}"}
    identity.update({name: module_hash(t.module) for name, t in targets.items()})
    identity.update({f"defense:{name}": module_hash(p) + repr(sorted(p.describe().items()))
                     for name, p in defenses.items()})
    provenance = describe(seed, raw_config, {
        "dataset": identity["dataset"],
        "clean": {f"{t}|{d}": clean_key(identity, t, d) for t in targets for d in defenses},
        "targets": {n: {**t.provenance, "weights_hash": identity[n]} for n, t in targets.items()},
        "defenses": {n: p.describe() for n, p in defenses.items()},
    })
    prepared = Prepared(suite, task, data, targets, defenses, identity, provenance,
                        provenance_json=json.dumps(provenance, sort_keys=True, default=str))
    prepared.units = plan_suite(suite, seed, identity)
    return prepared


def clean_key(identity: dict[str, str], target: str, defense: str) -> str:
    """What the clean predictions of (target, defense) depend on: the data, the weights, the purifier."""
    return identity["dataset"] + identity[target] + identity.get(f"defense:{defense}", "")


def _eval_module(p: Prepared, target: str, defense: str) -> nn.Module:
    module = p.targets[target].module
    return module if defense == "none" else Defended(module, p.defenses[defense])


def _attack_models(p: Prepared, unit: Unit) -> list[nn.Module]:
    if unit.threat in ("whitebox", "transfer"):
        return [p.targets[s].module for s in unit.sources]
    purifier = p.defenses[unit.defense]
    wrapped = bpda(purifier) if unit.threat == "bpda" else purifier
    return [Defended(p.targets[unit.sources[0]].module, wrapped)]


def _seeded(seed: int) -> Any:
    rng = torch.random.fork_rng(devices=[])
    rng.__enter__()
    torch.manual_seed(seed % (2**63))
    return rng


def evaluate(p: Prepared, module: nn.Module, x: Tensor, y: Tensor, seed: int) -> np.ndarray:
    """Per-sample outcomes of ``module`` on a batch (randomised purifiers draw from a fixed seed)."""
    if p.task.quantize:
        x = torch.round(x * 255) / 255
    rng = _seeded(seed)
    try:
        with torch.inference_mode():
            return p.task.outcome(module(x), y)
    finally:
        rng.__exit__(None, None, None)


def clean_outcomes(p: Prepared, store: Store, progress: bool) -> dict[tuple[str, str], np.ndarray]:
    """Clean predictions of every (target, defense), computed once and reused by every cell."""
    out: dict[tuple[str, str], np.ndarray] = {}
    pairs = [(t, d) for t in p.targets for d in p.defenses]
    for t, d in tqdm(pairs, desc=f"{p.suite.name}: clean", disable=not progress, leave=False):
        stored = store.clean_outcome(p.suite.name, t, d, clean_key(p.identity, t, d))
        if stored is not None:
            out[t, d] = stored
            continue
        module = _eval_module(p, t, d)
        parts = [evaluate(p, module, x, y, i) for i, (x, y) in enumerate(p.data.batches(p.suite.batch_size))]
        out[t, d] = np.concatenate(parts)
        store.put_clean(p.suite.name, t, d, clean_key(p.identity, t, d), out[t, d])
    return out


def configure_attack(p: Prepared, unit: Unit) -> GradientAttack:
    """The unit's attack with its budget; early stop only where success on the source is success."""
    attack = build_attack(unit.attack.name, norm=p.suite.budget.norm, eps=unit.eps, task=p.task,
                          **unit.attack.kwargs)
    randomized = unit.defense != "none" and p.defenses[unit.defense].randomized
    attack.early_stop = p.suite.early_stop and unit.threat != "transfer" and not randomized
    if unit.threat == "adaptive" and randomized:
        attack.samples *= p.suite.eot_samples  # EOT: average the gradient over purifier draws
    return attack


def run_unit(p: Prepared, unit: Unit, store: Store, clean: dict[tuple[str, str], np.ndarray],
             progress: bool) -> None:
    """Generate the unit's examples batch by batch, evaluate every cell, write all in one transaction."""
    attack = configure_attack(p, unit)
    models = _attack_models(p, unit)
    evals = {(ev.target, ev.defense): _eval_module(p, ev.target, ev.defense) for ev in unit.evals}
    outcomes: dict[tuple[int, str, str], list[np.ndarray]] = {}
    pairs: dict[int, dict[str, list[np.ndarray]]] = {}
    cost = {k: 0 for k in unit.checkpoints}
    grad_total = forwards = 0
    eval_seconds = 0.0
    start = time.perf_counter()
    batches = list(p.data.batches(p.suite.batch_size))
    for b, (x, y) in enumerate(tqdm(batches, desc="batches", disable=not progress or len(batches) < 2,
                                    leave=False)):
        res = attack.run(models, x, y, seed=unit.seed + b, eps=unit.eps, checkpoints=unit.checkpoints)
        grad_total += res.grad_evals
        forwards += res.forwards
        t0 = time.perf_counter()
        for k in unit.checkpoints:
            cost[k] += res.grad_evals_at[k]
            xk = res.checkpoints[k]
            for name, values in p.task.pair_metrics(x, xk).items():
                pairs.setdefault(k, {}).setdefault(name, []).append(values)
            for (t, d), module in evals.items():
                outcomes.setdefault((k, t, d), []).append(evaluate(p, module, xk, y, unit.seed + 7919 * b + 1))
        eval_seconds += time.perf_counter() - t0
    labels = p.data.labels.cpu().numpy()
    n = len(labels)
    naive = naive_grad_evals(unit, n, attack.samples)
    seconds = time.perf_counter() - start
    with store.transaction() as con:
        for cell in unit.cells:
            outcome = np.concatenate(outcomes[cell.steps, cell.target, cell.defense])
            metrics = p.task.metrics(outcome, labels, clean[cell.target, cell.defense])
            for name, values in pairs[cell.steps].items():
                metrics[f"mean_{name}"] = float(np.mean(np.concatenate(values)))
            row = {"key": cell.key, "unit": unit.key, "suite": cell.suite, "task": cell.task,
                   "dataset": p.identity["dataset"], "attack": unit.attack.label,
                   "attack_spec": unit.attack.to_json(), "sources": unit.sources, "threat": cell.threat,
                   "norm": cell.norm, "eps": cell.eps, "steps": cell.steps, "target": cell.target,
                   "defense": cell.defense, "seed": unit.seed, "metric": p.task.metric,
                   "value": metrics[p.task.metric], "n": n, "grad_evals": cost[cell.steps],
                   "naive_grad_evals": naive[cell.steps], "eval_seconds": eval_seconds / max(len(unit.cells), 1),
                   "provenance": p.provenance_json}
            store.put_cell(con, row, metrics, outcome)
        store.put_unit(con, unit.key, unit.suite, grad_total, forwards, seconds, unit.seed)


@dataclass
class RunSummary:
    """What a run did: units generated vs reused, and where its store is."""

    out: Path
    generated: int
    reused: int
    seconds: float


def check_out_folder(out: Path) -> None:
    """One-line error, before anything is written, if ``out`` cannot become the output folder."""
    existing = next((p for p in (out, *out.parents) if p.exists()), Path("."))  # what mkdir would start from
    if not existing.is_dir():
        what = "is a file" if existing == out else f"lies inside {existing}, which is a file"
        raise RobustgridError(f"output folder {out} {what}; name a folder with --out")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RobustgridError(f"output folder {out} cannot be created or written: {existing} is not writable")


def open_store(out: Path) -> Store:
    """The store ``out/cells.sqlite``; an unusable folder or file is a one-line error."""
    try:
        return Store(out / "cells.sqlite")
    except (OSError, sqlite3.Error) as exc:
        raise RobustgridError(f"cannot open the results store {out / 'cells.sqlite'}: {exc}") from None


def run_grid(config: Config, out: str | Path, *, progress: bool = True, report: bool = True) -> RunSummary:
    """Run every suite of ``config`` into ``out/cells.sqlite`` (resuming), then write the report.

    All suites are prepared before the store is touched, so a bad input writes nothing.
    """
    start = time.perf_counter()
    out = Path(out)
    check_out_folder(out)
    prepared = [prepare(s, config.seed, config.raw) for s in config.suites]
    store = open_store(out)
    generated = reused = 0
    try:
        for p in prepared:
            store.put_dataset(p.suite.name, p.identity["dataset"], p.data.labels.cpu().numpy())
            store.put_provenance(p.suite.name, p.provenance)
            clean = clean_outcomes(p, store, progress)
            for unit in tqdm(p.units, desc=f"{p.suite.name}: units", disable=not progress):
                if store.has_all(c.key for c in unit.cells):
                    reused += 1
                    continue
                run_unit(p, unit, store, clean, progress)
                generated += 1
    finally:
        store.close()
    if report:
        from robustgrid.benchmark.report import write_report

        write_report(out)
    return RunSummary(out, generated, reused, time.perf_counter() - start)

