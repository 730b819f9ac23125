"""Run a grid: prepare (validate, load) every suite, then generate each unit once, shard by shard, and evaluate
its cells. Shards are the unit of work, of resumption and of distribution (``executors``)."""

from __future__ import annotations

import dataclasses
import inspect
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from robustgrid.attacks import ATTACKS, Attack, AttackResult, GradientAttack, build_attack
from robustgrid.benchmark.budget_search import SEARCHES, Generated
from robustgrid.benchmark.config import Config, Suite
from robustgrid.benchmark.curves import PROBED
from robustgrid.benchmark.distinct import distinct_outcomes
from robustgrid.benchmark.executors import (
    EXECUTORS,
    LocalExecutor,
    RayExecutor,
    check_reachable,
    import_ray,
)
from robustgrid.benchmark.planner import Unit, naive_grad_evals, plan_suite
from robustgrid.benchmark.plugins import config_folder, load_plugins
from robustgrid.benchmark.provenance import compute_provenance, describe, module_hash
from robustgrid.benchmark.records import CellRow, ProvenanceRow, UnitRow
from robustgrid.benchmark.shards import ShardJob, ShardResult, plan_shards
from robustgrid.benchmark.store import GridPoint, Store
from robustgrid.benchmark.threats import get_threat
from robustgrid.core import RobustgridError
from robustgrid.defenses import Defended, Purifier, build_defense
from robustgrid.models.data import ImageDataset, build_dataset
from robustgrid.models.data.stream import StreamingDataset
from robustgrid.models.device import Autocast, check_precision, resolve_device
from robustgrid.models.target import Target, build_target, target_task
from robustgrid.models.tasks import Task, build_task


@dataclass
class Prepared:
    """A suite with everything loaded and validated: nothing in here can fail for a user reason later."""

    suite: Suite
    task: Task
    data: ImageDataset | StreamingDataset
    targets: dict[str, Target]
    defenses: dict[str, Purifier]
    identity: dict[str, str]
    provenance: ProvenanceRow
    units: list[Unit] = field(default_factory=list)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


def _build_defense(spec_name: str, params: dict[str, Any], data: ImageDataset | StreamingDataset) -> Purifier:
    """Build a purifier; learned ones get the suite's dataset (to train on) unless the config names one."""
    from robustgrid.defenses import DEFENSES

    accepts = inspect.signature(DEFENSES.entry(spec_name).fn).parameters
    if "dataset" in accepts and "dataset" not in params:
        params = {**params, "dataset": data.name}
    if "in_chans" in accepts and "in_chans" not in params:
        params = {**params, "in_chans": int(data.sample_shape[0])}
    return build_defense(spec_name, **params)


def prepare(suite: Suite, seed: int, raw_config: str, device: str = "cpu", precision: str = "fp32") -> Prepared:
    """Load data, targets and defenses onto ``device`` and build every attack once: all user errors surface here.

    ``precision`` bf16/fp16 runs the targets' forward passes under autocast (inputs, gradients, metrics stay fp32).
    """
    where = f"suite {suite.name!r}"
    try:
        return _prepare(suite, seed, raw_config, where, device, precision)
    except OSError as exc:  # a file the config names (data root, weights) that cannot be read
        raise RobustgridError(f"{where}: {exc.strerror or type(exc).__name__}: {exc.filename or exc}") from None


def _prepare(suite: Suite, seed: int, raw_config: str, where: str, device: str, precision: str) -> Prepared:
    dev, dtype = resolve_device(device), check_precision(precision)
    task = build_task(suite.task)
    ds = suite.dataset.kwargs
    data = build_dataset(suite.dataset.name, **ds)
    targets: dict[str, Target] = {}
    for spec in suite.targets:
        declared = target_task(spec.builder)
        if declared is not None and declared != suite.task:
            raise RobustgridError(f"{where}: target {spec.name!r} is a {declared} model, the suite's task is "
                                  f"{suite.task}")
        tgt = build_target(spec.builder, **spec.kwargs)
        task.check_target(tgt)
        if tgt.task != suite.task:
            raise RobustgridError(f"{where}: target {spec.name!r} is a {tgt.task} model, the suite's task is "
                                  f"{suite.task}")
        if not tgt.accepts(tuple(data.sample_shape)):
            raise RobustgridError(f"{where}: target {spec.name!r} takes images of shape {tuple(tgt.input_shape)}, "
                                  f"dataset {data.name!r} gives {tuple(data.sample_shape)} (set the dataset's "
                                  f"crop, or the target's input_size where the architecture allows it)")
        targets[spec.name] = tgt
    task.check_batch(*next(data.batches(suite.batch_size, 0, suite.batch_size)))
    defenses = {d.name: _build_defense(d.builder, d.kwargs, data) for d in suite.defenses}
    for threat in suite.threats:
        for name, purifier in defenses.items():
            get_threat(threat).check_purifier(where, name, purifier)
    for a in suite.attacks:
        tasks = ATTACKS.entry(a.name).meta.get("tasks") if a.name in ATTACKS else None
        if tasks is not None and suite.task not in tasks:
            raise RobustgridError(f"{where}: attack {a.name!r} is for {', '.join(tasks)} models, not {suite.task}")
        if not a.name.startswith("torchattacks:"):
            ATTACKS.entry(a.name)  # unknown names fail here with close matches
        attack = build_attack(a.name, norm=suite.budget.norm, eps=max(suite.budget.eps), task=task, **a.kwargs)
        for threat in suite.threats:
            if a.runs_under(threat):
                get_threat(threat).check_attack(where, a.label, attack.access)
    identity = {"dataset": f"{data.name}:{data.split}:{data.fingerprint}"}
    identity.update({name: module_hash(t.module) for name, t in targets.items()})
    identity.update({f"defense:{name}": module_hash(p) + repr(sorted(p.describe().items()))
                     for name, p in defenses.items()})
    if dev.type != "cpu" or dtype is not None:
        identity["compute"] = f"{dev.type}/{precision}"
    for name, t in targets.items():  # a fresh Target: zoo targets are cached objects shared between runs
        t.module.to(dev)
        if dtype is not None:
            targets[name] = dataclasses.replace(t, module=Autocast(t.module, dtype))
    for purifier in defenses.values():
        purifier.to(dev)
    provenance = describe(seed, raw_config, {
        "dataset": identity["dataset"], "compute": compute_provenance(dev, precision),
        "targets": {n: {**t.provenance, "weights_hash": identity[n]} for n, t in targets.items()},
        "defenses": {n: p.describe() for n, p in defenses.items()},
    })
    prepared = Prepared(suite, task, data, targets, defenses, identity, ProvenanceRow.of(suite.name, provenance),
                        device=dev)
    prepared.units = plan_suite(suite, seed, identity,
                                frozenset(n for n, d in defenses.items() if d.randomized))
    for unit in prepared.units:  # run options are per unit: an attack that cannot honour them fails here
        attack, options = configure_attack(prepared, unit)
        attack.check_run(len(unit.sources), unit.checkpoints, options["eot_samples"])
    return prepared


def clean_key(identity: dict[str, str], target: str, defense: str) -> str:
    """What the clean predictions of (target, defense) depend on: the data, the weights, the purifier."""
    return identity["dataset"] + identity[target] + identity.get(f"defense:{defense}", "")


def _eval_module(p: Prepared, target: str, defense: str) -> nn.Module:
    module = p.targets[target].module
    return module if defense == "none" else Defended(module, p.defenses[defense])


def _seeded(seed: int, device: torch.device) -> Any:
    """Fix the global generators (the CPU's, and the CUDA device's when the batch lives there) to ``seed``."""
    rng = torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])
    rng.__enter__()
    torch.manual_seed(seed % (2**63))
    return rng


def evaluate(p: Prepared, module: nn.Module, x: Tensor, y: Tensor, seed: int) -> np.ndarray:
    """Per-sample outcomes of ``module`` on a batch (randomised purifiers draw from a fixed seed)."""
    if p.task.quantize:
        x = torch.round(x * 255) / 255
    rng = _seeded(seed, x.device)
    try:
        with torch.inference_mode():
            return p.task.outcome(module(x), y)
    finally:
        rng.__exit__(None, None, None)


def evaluate_points(p: Prepared, module: nn.Module, defense: str, images: dict[tuple[float, int], Tensor], x: Tensor,
                    y: Tensor, seed: int) -> dict[tuple[float, int], np.ndarray]:
    """Per-sample outcomes at every (eps, step) of a batch: through a deterministic module each distinct image once
    (a curve's points mostly repeat their images); a randomised purifier sees each point's batch whole."""
    if defense != "none" and p.defenses[defense].randomized:
        return {ek: evaluate(p, module, xk, y, seed) for ek, xk in images.items()}
    return distinct_outcomes(lambda xs, ys: evaluate(p, module, xs, ys, seed), images, x, y, len(x))


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
        parts = [evaluate(p, module, x.to(p.device), y.to(p.device), i)
                 for i, (x, y) in enumerate(p.data.batches(p.suite.batch_size))]
        out[t, d] = np.concatenate(parts)
        store.put_clean(p.suite.name, t, d, clean_key(p.identity, t, d), out[t, d])
    return out


def configure_attack(p: Prepared, unit: Unit) -> tuple[Attack, dict[str, Any]]:
    """The unit's attack with its budget, and its run options: early stop only where success on the source is
    success; EOT (gradient draws averaged over purifier draws) only through a randomised purifier."""
    attack = build_attack(unit.attack.name, norm=p.suite.budget.norm, eps=unit.eps, task=p.task,
                          **unit.attack.kwargs)
    threat = get_threat(unit.threat)
    randomized = unit.defense != "none" and p.defenses[unit.defense].randomized
    options = {"early_stop": threat.stops_early(p.suite.early_stop, p.task.success_type, randomized),
               "eot_samples": threat.eot_samples(randomized, p.suite.eot_samples)}
    return attack, options


def shard_jobs(p: Prepared, suite_index: int, unit: Unit) -> list[ShardJob]:
    """The shards of ``unit``: consecutive runs of whole batches, ``shard_size`` samples each."""
    return plan_shards(suite_index, unit.key, len(p.data), p.suite.shard_samples, p.suite.batch_size)


def spent_at(attack: Attack, res: AttackResult, k: int) -> tuple[int, int]:
    """Gradient evaluations and model queries of a run up to checkpoint ``k``: an attack must record the counter
    of its own access; the other one is zero unless it records that too."""
    if attack.access == "gradient":
        return res.grad_evals_at[k], res.queries_at.get(k, 0)
    return res.grad_evals_at.get(k, 0), res.queries_at[k]


def generate(unit: Unit, attack: Attack, options: dict[str, Any], models: list[nn.Module], x: Tensor, y: Tensor,
             seed: int) -> Generated:
    """A batch's examples per (eps, checkpoint) and their cost: one run at the unit's eps, or a search unit's
    per-sample budget search; each with its own passes' outcomes on its one source where the loop records them."""
    if unit.budgets:
        return SEARCHES[unit.search](attack, models, x, y, unit.budgets, unit.checkpoints, seed, **options)
    records = isinstance(attack, GradientAttack) and attack.records_outcomes(len(models), **options)
    res = attack.run(models, x, y, seed=seed, eps=unit.eps, checkpoints=unit.checkpoints, **options,
                     **({"record_outcomes": True} if records else {}))
    spent = {k: spent_at(attack, res, k) for k in unit.checkpoints}
    seen = res.outcomes_at or None  # recorded at every checkpoint, or at none
    return Generated({(unit.eps, k): xk for k, xk in res.checkpoints.items()},
                     {(unit.eps, k): g for k, (g, _) in spent.items()}, {}, torch.empty(0),
                     res.grad_evals, res.forwards, {(unit.eps, k): q for k, (_, q) in spent.items()}, res.queries,
                     None if seen is None else {(unit.eps, k): v for k, v in seen.items()})


def same_forward(a: nn.Module, b: nn.Module) -> bool:
    """Whether two modules compute the same function: one object, or one model behind one purifier."""
    return a is b or (isinstance(a, Defended) and isinstance(b, Defended) and a.model is b.model
                      and a.purifier is b.purifier)


def seen_outcomes(p: Prepared, res: Generated, models: list[nn.Module],
                  module: nn.Module) -> dict[tuple[float, int], np.ndarray] | None:
    """The attack's own outcomes for the evaluation of ``module``, where it is the attack's one source and
    deterministic and the images are scored as attacked (no 8-bit rounding); else None (evaluate)."""
    if res.outcomes is None or len(models) != 1 or p.task.quantize or not same_forward(models[0], module):
        return None
    if isinstance(module, Defended) and getattr(module.purifier, "randomized", False):
        return None
    return res.outcomes


def run_shard(p: Prepared, unit: Unit, job: ShardJob) -> ShardResult:
    """Generate the shard's adversarial examples batch by batch and evaluate every cell of the unit on them."""
    attack, options = configure_attack(p, unit)
    models = get_threat(unit.threat).attack_modules(p.targets, p.defenses, unit)
    evals = {(ev.target, ev.defense): _eval_module(p, ev.target, ev.defense) for ev in unit.evals}
    outcomes: dict[tuple[float, int, str, str], list[np.ndarray]] = {}
    pairs: dict[tuple[float, int, str], list[np.ndarray]] = {}
    cost: dict[tuple[float, int], int] = {}
    queries: dict[tuple[float, int], int] = {}
    probed: dict[float, int] = {}
    grad_total = forwards = query_total = 0
    eval_seconds = 0.0
    start = time.perf_counter()
    for b, (x, y) in enumerate(p.data.batches(p.suite.batch_size, job.start, job.stop), start=job.batch):
        x, y = x.to(p.device), y.to(p.device)
        rng = _seeded(unit.seed + b, x.device)  # a randomised purifier the attack queries draws reproducibly
        try:
            res = generate(unit, attack, options, models, x, y, unit.seed + b)
        finally:
            rng.__exit__(None, None, None)
        grad_total += res.grad_evals
        forwards += res.forwards
        query_total += res.query_total
        for e, count in res.probed.items():
            probed[e] = probed.get(e, 0) + count
        t0 = time.perf_counter()
        for (e, k), xk in res.images.items():
            cost[e, k] = cost.get((e, k), 0) + res.cost[e, k]
            queries[e, k] = queries.get((e, k), 0) + res.queries.get((e, k), 0)
            for name, values in p.task.pair_metrics(x, xk).items():
                pairs.setdefault((e, k, name), []).append(np.asarray(values))
        for (t, d), module in evals.items():
            seen = seen_outcomes(p, res, models, module)
            got_all = (evaluate_points(p, module, d, res.images, x, y, unit.seed + 7919 * b + 1) if seen is None
                       else seen)
            for (e, k), got in got_all.items():
                outcomes.setdefault((e, k, t, d), []).append(got)
        eval_seconds += time.perf_counter() - t0
    return ShardResult(job, {key: np.concatenate(v) for key, v in outcomes.items()},
                       {key: np.concatenate(v) for key, v in pairs.items()}, cost, grad_total, forwards,
                       time.perf_counter() - start, eval_seconds, queries, query_total, probed)


def finish_unit(p: Prepared, unit: Unit, store: Store, clean: dict[tuple[str, str], np.ndarray],
                shards: list[ShardResult]) -> None:
    """Every cell of a unit from all its shards' per-sample outcomes (never a mean of shard metrics), written with
    the unit's cost in one transaction that also drops the shard rows."""
    shards = sorted(shards, key=lambda r: r.job.index)
    labels = p.data.labels.cpu().numpy()
    n = len(labels)
    attack, options = configure_attack(p, unit)
    if attack.access == "gradient":
        naive = naive_grad_evals(unit, n, attack.draws_per_step(options["eot_samples"]))
    else:  # a query attack takes no gradient however its cells were generated
        naive = dict.fromkeys(unit.checkpoints, 0)
    cost = {ek: sum(r.cost[ek] for r in shards) for ek in shards[0].cost}
    queries = {ek: sum(r.queries_at.get(ek, 0) for r in shards) for ek in shards[0].cost}
    probed = {e: sum(r.probed.get(e, 0) for r in shards) for e in unit.budgets}
    eval_seconds = sum(r.eval_seconds for r in shards)
    pair_names = sorted({name for r in shards for *_, name in r.pairs})
    with store.transaction() as con:
        for cell in unit.cells:
            outcome = np.concatenate([r.outcomes[cell.eps, cell.steps, cell.target, cell.defense] for r in shards])
            metrics = p.task.metrics(outcome, labels, clean[cell.target, cell.defense])
            for name in pair_names:
                metrics[f"mean_{name}"] = float(np.mean(np.concatenate([r.pairs[cell.eps, cell.steps, name]
                                                                        for r in shards])))
            if unit.budgets:  # a search cell: the share of samples the search attacked at this budget
                metrics[PROBED] = probed[cell.eps] / n
            record = CellRow(
                suite=cell.suite, task=cell.task, dataset=p.identity["dataset"], attack=unit.attack.label,
                access=attack.access, sources=unit.sources, threat=cell.threat, norm=cell.norm, eps=cell.eps,
                steps=cell.steps, target=cell.target, defense=cell.defense, metric=p.task.metric,
                value=metrics[p.task.metric], n=n, grad_evals=cost[cell.eps, cell.steps],
                naive_grad_evals=naive[cell.steps], queries=queries[cell.eps, cell.steps], seed=unit.seed,
                key=cell.key, unit=unit.key, attack_spec=unit.attack.to_json(),
                eval_seconds=eval_seconds / max(len(unit.cells), 1),
                clean_key=clean_key(p.identity, cell.target, cell.defense), provenance=p.provenance.id,
                created=time.time(), metrics=metrics)
            norms = None
            if attack.minimum_norm:  # the norms the suite's budget counts, per sample, for the min-norm curve
                norms = np.concatenate([r.pairs[cell.eps, cell.steps, cell.norm] for r in shards])
            store.put_cell(con, record, outcome, norms)
        store.put_unit(con, UnitRow(unit.key, unit.suite, sum(r.grad_evals for r in shards),
                                    sum(r.forwards for r in shards), sum(r.queries for r in shards),
                                    sum(r.seconds for r in shards), unit.seed))
        store.drop_shards(con, unit.key)


@dataclass
class RunSummary:
    """What a run did: units generated vs reused, and where its store is."""

    out: Path
    generated: int
    reused: int
    seconds: float
    dropped: int = 0  # stored cells a changed dataset, model or attack parameter superseded (deleted)


def make_executor(config: Config, prepared: list[Prepared], units: dict[str, Unit]) -> LocalExecutor | RayExecutor:
    """The executor a run asked for: ``local`` runs shards with the driver's suites, ``ray`` on Ray actors that
    prepare the suites themselves (models loaded once per worker)."""
    if config.executor == "ray":
        return RayExecutor(config.ray, lambda: ShardWorker, (config,))
    return LocalExecutor(lambda job: run_shard(prepared[job.suite], units[job.unit], job))


class ShardWorker:
    """A Ray actor's state: the config's suites prepared once on the worker's device, then shard after shard."""

    def __init__(self, config: Config) -> None:
        torch.set_num_threads(max(1, int(os.environ.get("ROBUSTGRID_THREADS", "1"))))
        load_plugins(config.plugins, config_folder(config.source))
        self.prepared = [prepare(s, config.seed, config.raw, config.device, config.precision) for s in config.suites]
        self.units = {u.key: u for p in self.prepared for u in p.units}

    def run(self, job: ShardJob) -> ShardResult:
        return run_shard(self.prepared[job.suite], self.units[job.unit], job)


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


def run_grid(config: Config, out: str | Path, *, progress: bool = True, report: bool = True,
             device: str | None = None, executor: str | None = None, ray_address: str | None = None) -> RunSummary:
    """Run every suite of ``config`` into ``out/cells.sqlite`` (resuming at the shard), then write the report.

    All suites are prepared before the store is touched, so a bad input writes nothing. ``device``, ``executor``
    and ``ray_address`` override the config's (the CLI's --device, --executor, --ray-address).
    """
    start = time.perf_counter()
    overrides: dict[str, Any] = {}
    if device is not None:
        overrides["device"] = device
    if executor is not None:
        overrides["executor"] = executor
    if ray_address is not None:
        overrides["ray"] = dataclasses.replace(config.ray, address=ray_address)
    config = dataclasses.replace(config, **overrides)
    if config.executor not in EXECUTORS:
        raise RobustgridError(f"unknown executor {config.executor!r}; valid: {', '.join(EXECUTORS)}")
    if config.executor == "ray":
        import_ray()
        if config.ray.address is not None:
            check_reachable(config.ray.address)
    out = Path(out)
    check_out_folder(out)
    prepared = [prepare(s, config.seed, config.raw, config.device, config.precision) for s in config.suites]
    units = {u.key: u for p in prepared for u in p.units}
    owner = {u.key: i for i, p in enumerate(prepared) for u in p.units}
    store = open_store(out)
    generated = reused = 0
    runner: LocalExecutor | RayExecutor | None = None
    try:
        cleans = []
        for p in prepared:
            groups = getattr(p.data, "groups", None)
            store.put_dataset(p.suite.name, p.identity["dataset"], p.data.labels.cpu().numpy(),
                              None if groups is None else groups.cpu().numpy())
            store.put_provenance(p.provenance)
            cleans.append(clean_outcomes(p, store, progress))
        todo: dict[str, dict[int, ShardResult]] = {}
        jobs: list[ShardJob] = []
        for i, p in enumerate(prepared):
            for unit in p.units:
                if store.has_all(c.key for c in unit.cells):
                    reused += 1
                    continue
                all_jobs = shard_jobs(p, i, unit)
                done = store.shards(unit.key, {j.index: j for j in all_jobs})
                todo[unit.key] = {r.job.index: r for r in done}
                jobs += [j for j in all_jobs if j.index not in todo[unit.key]]
                if len(done) == len(all_jobs):  # every shard stored by an interrupted run: only the cells are left
                    finish_unit(p, unit, store, cleans[i], done)
                    generated += 1
        if jobs:
            runner = make_executor(config, prepared, units)
            bar = tqdm(total=len(jobs), desc="shards", disable=not progress)
            for result in runner.map(jobs):
                job = result.job
                store.put_shard(job.unit, job.index, result.to_bytes())
                todo[job.unit][job.index] = result
                bar.update()
                if len(todo[job.unit]) == job.count:
                    p = prepared[owner[job.unit]]
                    finish_unit(p, units[job.unit], store, cleans[owner[job.unit]], list(todo.pop(job.unit).values()))
                    generated += 1
            bar.close()
        # a store reports what its config makes now: cells of a planned point made from other data, weights or
        # parameters (a zoo retrained, a dataset regenerated) would mix two sample sets in one suite
        dropped = store.drop_superseded({
            GridPoint(p.suite.name, u.attack.label, tuple(u.sources), c.threat, c.norm, c.eps, c.steps, c.target,
                      c.defense): c.key for p in prepared for u in p.units for c in u.cells})
    finally:
        if runner is not None:
            runner.close()
        store.close()
    if report:
        from robustgrid.benchmark.report import write_report

        write_report(out)
    return RunSummary(out, generated, reused, time.perf_counter() - start, dropped)
