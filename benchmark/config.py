"""Grid configs: TOML -> frozen dataclasses, validated completely before any compute starts.

Every parameter given to an attack, defense, target or dataset is checked here, by name and by type, against
what its registered constructor declares (``robustgrid.core.check_params``), so a wrong-typed value is a
one-line error at parse time instead of a traceback from inside the attack.
"""

from __future__ import annotations

import difflib
import inspect
import json
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from robustgrid.attacks import ATTACKS
from robustgrid.benchmark.executors import EXECUTORS, RaySettings
from robustgrid.benchmark.plugins import config_folder, load_plugins
from robustgrid.benchmark.threats import default_threats, get_threat, threats_in_order
from robustgrid.core import Registry, RobustgridError, check_bool, check_float, check_int, check_params, check_type
from robustgrid.defenses import DEFENSES
from robustgrid.models.data import DATASETS
from robustgrid.models.device import PRECISIONS
from robustgrid.models.target import TARGET_PREFIXES, TARGETS
from robustgrid.models.tasks import TASKS, build_task

# how a budget curve is made: one run per epsilon, or a per-sample search (benchmark/budget_search.py)
BUDGET_SEARCHES = ("none", "binary", "descending")
SHARD_BATCHES = 4  # default shard: four batches (the unit of work, of resumption and of distribution)


@dataclass(frozen=True)
class Spec:
    """A name plus keyword parameters (an attack, a target or a dataset), hashable and printable."""

    name: str
    params: tuple[tuple[str, Any], ...] = ()
    registered: str = ""  # the registered name it is built from, where ``name`` is a label given in the config

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def builder(self) -> str:
        """The registry name to build: the label's source, else the name itself."""
        return self.registered or self.name


@dataclass(frozen=True)
class AttackSpec:
    """One attack of a suite: registry name, parameters, display label and its step count; optionally the suite
    threats it runs under and defenses it is evaluated behind (default: all of the suite's) and its own checkpoints
    (default: the budget's), none of them part of its key."""

    name: str
    steps: int
    params: tuple[tuple[str, Any], ...] = ()
    label: str = ""
    threats: tuple[str, ...] = ()
    checkpoints: tuple[int, ...] | None = None
    defenses: tuple[str, ...] = ()

    def runs_under(self, threat: str) -> bool:
        """Does the suite's ``threat`` evaluate this attack (a query attack may run under the query threats only)?"""
        return not self.threats or threat in self.threats

    def meets(self, defense: str) -> bool:
        """Is this attack evaluated behind the suite's ``defense`` (a costly query attack may skip a purifier)?"""
        return not self.defenses or defense in self.defenses

    @property
    def kwargs(self) -> dict[str, Any]:
        return {**dict(self.params), "steps": self.steps}

    def to_json(self) -> str:
        return json.dumps({"name": self.name, "steps": self.steps, "params": dict(self.params)},
                          sort_keys=True, default=str)


@dataclass(frozen=True)
class Budget:
    """Norm, the epsilons of the budget curve, the iteration checkpoints of the strength curve, and how the budget
    curve is made: ``search = "none"`` one run per epsilon (the plain curve), ``"binary"`` a per-sample binary search
    over the epsilons (the envelope curve at about log2(B) + 1 runs per sample), ``"descending"`` one run per
    budget from the largest down until a sample's first failure (one failed run per sample); success-type tasks."""

    norm: str
    eps: tuple[float, ...]
    checkpoints: tuple[int, ...] = ()
    search: str = "none"


@dataclass(frozen=True)
class Suite:
    """One task on one dataset, crossed independently: targets x defenses x threats x attacks x budget."""

    task: str
    dataset: Spec
    targets: tuple[Spec, ...]
    attacks: tuple[AttackSpec, ...]
    budget: Budget
    defenses: tuple[Spec, ...] = (Spec("none"),)
    threats: tuple[str, ...] = field(default_factory=default_threats)
    sources: tuple[tuple[str, ...], ...] = ()
    batch_size: int = 256
    early_stop: bool = True
    eot_samples: int = 8
    name: str = ""
    shard_size: int | None = None  # samples per shard (rounded up to whole batches); None: SHARD_BATCHES batches

    @property
    def shard_samples(self) -> int:
        """Samples per shard, a whole number of batches, so every batch keeps its global index (and seed)."""
        batches = SHARD_BATCHES if self.shard_size is None else -(-self.shard_size // self.batch_size)
        return batches * self.batch_size


@dataclass(frozen=True)
class Config:
    """A whole grid: a seed, one or more suites, and where it computes (device, precision, executor)."""

    seed: int
    suites: tuple[Suite, ...]
    source: str = ""
    raw: str = field(default="", repr=False)
    device: str = "auto"
    precision: str = "fp32"
    executor: str = "local"
    ray: RaySettings = field(default_factory=RaySettings)
    plugins: tuple[str, ...] = ()


def _fail(where: str, msg: str) -> NoReturn:
    raise RobustgridError(f"{where}: {msg}")


def _check_keys(table: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=2, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; valid keys: {', '.join(allowed)}"
            _fail(where, f"unknown key {key!r}{hint}")


# Attack keywords the grid sets itself: a config that sets them per attack would clash with the grid's value.
GRID_SET = {"norm": "the suite's budget", "eps": "the suite's budget", "task": "the suite's task",
            "early_stop": "the suite's early_stop"}


def _entry_fn(registry: Registry[Any], name: str, where: str) -> Callable[..., Any]:
    """The constructor registered as ``name``; an unknown name fails with the registry's close matches."""
    try:
        return registry.entry(name).fn
    except RobustgridError as exc:
        raise RobustgridError(f"{where}: {exc}") from None


def _torchattacks_class(name: str) -> type | None:
    """torchattacks' class for ``torchattacks:<Name>``; None for an unknown name (the adapter's error names it)."""
    import torchattacks

    cls = getattr(torchattacks, name.split(":", 1)[1], None)
    return cls if inspect.isclass(cls) and issubclass(cls, torchattacks.attack.Attack) else None


def _constructor(kind: str, name: str, where: str) -> tuple[Callable[..., Any] | None, dict[str, str]]:
    """What builds a ``kind`` spec called ``name``, and the keywords the grid passes to it itself (with who sets
    them). None: nothing to check against here."""
    if kind == "attack":
        if name.startswith("torchattacks:"):  # its parameters are typed by the torchattacks class's defaults
            return _torchattacks_class(name), GRID_SET
        return _entry_fn(ATTACKS, name, where), GRID_SET
    if kind == "target" and ":" in name:
        return _entry_fn(TARGET_PREFIXES, name.split(":", 1)[0], where), {"arch": "the target's name (prefix:<arch>)"}
    registry = {"target": TARGETS, "defense": DEFENSES, "dataset": DATASETS}[kind]
    return _entry_fn(registry, name, where), {}


def _check_spec(kind: str, name: str, params: dict[str, Any], where: str) -> None:
    """One-line errors for a keyword the grid sets itself, one the constructor lacks, or a wrong-typed value."""
    fn, grid_set = _constructor(kind, name, where)
    for key, owner in grid_set.items():
        if key in params:
            _fail(where, f"{key!r} is set by {owner}, not per {kind}")
    if fn is not None:
        check_params(fn, params, where)


def _spec(v: Any, where: str, kind: str) -> Spec:
    """A target, defense or dataset entry (a name, or a table with a 'name'), checked against its constructor.

    A target may carry a ``label``: the name the suite knows it by (sources, cells), so one architecture can be
    evaluated with several checkpoints."""
    if isinstance(v, str):
        v = {"name": v}
    if not (isinstance(v, dict) and isinstance(v.get("name"), str)):
        _fail(where, f"each {kind} must be a name or a table with a 'name', got {v!r}")
    params = {k: x for k, x in v.items() if k != "name" and not (kind == "target" and k == "label")}
    label = v.get("label") if kind == "target" else None
    if label is not None and (not isinstance(label, str) or not label):
        _fail(where, f"a target label must be a non-empty string, got {label!r}")
    _check_spec(kind, v["name"], params, f"{where} ({v['name']})")
    frozen = tuple(sorted((k, _freeze(x)) for k, x in params.items()))
    return Spec(label, frozen, v["name"]) if label else Spec(v["name"], frozen)


def _freeze(v: Any) -> Any:
    return tuple(_freeze(x) for x in v) if isinstance(v, list) else v


def _nonempty_list(v: Any, where: str, what: str) -> list[Any]:
    if not isinstance(v, list) or not v:
        _fail(where, f"{what} must be a non-empty list, got {v!r}")
    return v


def _table(v: Any, where: str, what: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        _fail(where, f"{what} must be a table, got {v!r}")
    return v


def _suite(t: dict[str, Any], i: int) -> Suite:
    where = f"suite {i + 1}"
    _check_keys(t, ("name", "task", "dataset", "targets", "defenses", "threats", "budget", "attacks",
                    "transfer", "batch_size", "early_stop", "eot_samples", "shard_size"), where)
    for key in ("task", "dataset", "targets", "attacks", "budget"):
        if key not in t:
            _fail(where, f"missing key {key!r}")
    task = check_type(where, "task", t["task"], str)
    _entry_fn(TASKS, task, where)
    dataset = _spec(t["dataset"], f"{where} dataset", "dataset")
    ds = dict(dataset.params)
    if ds.get("size") is not None:
        check_int(where, "dataset size", ds["size"], 1)
    targets = tuple(_spec(x, f"{where} target {k + 1}", "target")
                    for k, x in enumerate(_nonempty_list(t["targets"], where, "targets")))
    target_names = [x.name for x in targets]
    twice = sorted({n for n in target_names if target_names.count(n) > 1})
    if twice:
        _fail(where, f"two targets are both called {twice[0]!r}; give one a distinct label = \"...\"")
    defenses = tuple(_spec(x, f"{where} defense {k + 1}", "defense")
                     for k, x in enumerate(_nonempty_list(t.get("defenses", ["none"]), where, "defenses")))
    threats = t.get("threats", list(default_threats()))
    if not isinstance(threats, list) or not all(isinstance(th, str) for th in threats):
        _fail(where, f"threats must be a list of threat names, got {threats!r}")
    threats = tuple(threats)
    for th in threats:
        try:
            get_threat(th)
        except RobustgridError as exc:
            _fail(where, str(exc))
        get_threat(th).check_task(where, task)
    b = _table(t["budget"], where, "budget")
    _check_keys(b, ("norm", "eps", "checkpoints", "search"), f"{where} budget")
    norm = b.get("norm", "linf")
    if norm not in ("linf", "l2"):
        _fail(where, f"unknown norm {norm!r}; valid: linf, l2")
    eps = tuple(check_float(where, "budget eps", e, 0.0) for e in _nonempty_list(b.get("eps"), where, "budget eps"))
    checkpoints = b.get("checkpoints", [])
    if not isinstance(checkpoints, list):
        _fail(where, f"budget checkpoints must be a list of step counts, got {checkpoints!r}")
    checkpoints = tuple(check_int(where, "checkpoint", c, 1) for c in checkpoints)
    search = b.get("search", "none")
    if search not in BUDGET_SEARCHES:
        _fail(where, f"unknown budget search {search!r}; valid: {', '.join(BUDGET_SEARCHES)}")
    if search != "none" and not build_task(task).success_type:
        _fail(where, f"budget search {search!r} needs a per-sample success, which task {task!r} has not; "
                     f"use search = \"none\"")
    attacks = tuple(_attack(a, f"{where} attack {j + 1}", threats, tuple(d.name for d in defenses))
                    for j, a in enumerate(_nonempty_list(t["attacks"], where, "attacks")))
    labels = [a.label for a in attacks]
    dup = {x for x in labels if labels.count(x) > 1}
    if dup:
        _fail(where, f"two attacks share the label {sorted(dup)[0]!r}; give one a distinct 'label'")
    longest = max(a.steps for a in attacks)
    beyond = [c for c in checkpoints if c > longest]
    if beyond:  # a checkpoint between one attack's steps and the longest applies to the longer attacks only
        _fail(where, f"checkpoint {beyond[0]} is beyond every attack's steps; valid checkpoints: 1..{longest}")
    transfer = _table(t.get("transfer", {}), where, "transfer")
    _check_keys(transfer, ("sources",), f"{where} transfer")
    if not isinstance(transfer.get("sources", []), list):
        _fail(where, f"transfer sources must be a list of target names or lists of them, "
                     f"got {transfer['sources']!r}")
    sources = tuple(tuple(s) if isinstance(s, list) else (s,) for s in transfer.get("sources", []))
    if not sources and any(get_threat(th).source_plan == "transfer-groups" for th in threats):
        sources = tuple((x.name,) for x in targets)  # default: every target as a single source
    names = {x.name for x in targets}
    for group in sources:
        for s in group:
            if not isinstance(s, str) or s not in names:
                _fail(where, f"transfer source {s!r} is not one of the suite's targets ({', '.join(sorted(names))})")
    if any(get_threat(th).needs_defense for th in threats) and all(d.name == "none" for d in defenses):
        defended = "/".join(t.name for t in threats_in_order() if t.needs_defense)
        _fail(where, f"threats {defended} need at least one defense other than 'none'")
    batch = check_int(where, "batch_size", t.get("batch_size", 256), 1)
    eot = check_int(where, "eot_samples", t.get("eot_samples", 8), 1)
    early = check_bool(where, "early_stop", t.get("early_stop", True))
    shard = t.get("shard_size")
    shard = None if shard is None else check_int(where, "shard_size", shard, 1)
    name = check_type(where, "name", t.get("name", task), str)
    return Suite(task=task, dataset=dataset, targets=targets, attacks=attacks,
                 budget=Budget(norm, eps, checkpoints, search), defenses=defenses, threats=threats, sources=sources,
                 batch_size=batch, early_stop=early, eot_samples=eot, name=name, shard_size=shard)


def _attack(a: Any, where: str, suite_threats: tuple[str, ...], suite_defenses: tuple[str, ...]) -> AttackSpec:
    """One ``[[suite.attacks]]`` table: its step count, label and parameters, checked against its constructor, and
    the suite threats, defenses and checkpoints it keeps for itself."""
    if not isinstance(a, dict) or not isinstance(a.get("name"), str):
        _fail(where, f"each attack must be a table with a 'name', got {a!r}")
    where = f"{where} ({a['name']})"
    steps = check_int(where, "steps", a.get("steps", 10), 1)
    label = check_type(where, "label", a.get("label") or a["name"], str)
    threats = _subset(a, "threats", "threat", suite_threats, where)
    defenses = _subset(a, "defenses", "defense", suite_defenses, where)
    checkpoints = a.get("checkpoints")
    if checkpoints is not None:
        if not isinstance(checkpoints, list):
            _fail(where, f"checkpoints must be a list of step counts, got {checkpoints!r}")
        checkpoints = tuple(check_int(where, "checkpoint", c, 1) for c in checkpoints)
        beyond = [c for c in checkpoints if c > steps]
        if beyond:
            _fail(where, f"checkpoint {beyond[0]} is beyond its steps; valid checkpoints: 1..{steps}")
    params = {k: v for k, v in a.items() if k not in ("name", "steps", "label", "threats", "checkpoints", "defenses")}
    _check_spec("attack", a["name"], params, where)
    return AttackSpec(a["name"], steps, tuple(sorted((k, _freeze(v)) for k, v in params.items())), label,
                      tuple(threats), checkpoints, tuple(defenses))


def _subset(a: dict[str, Any], key: str, what: str, valid: tuple[str, ...], where: str) -> list[str]:
    """An attack's own non-empty list of the suite's ``key`` (its threats, its defenses); empty when not given."""
    names = a.get(key, [])
    if not isinstance(names, list) or not names and key in a:
        _fail(where, f"{key} must be a non-empty list of the suite's {key}, got {names!r}")
    for name in names:
        if name not in valid:
            _fail(where, f"{what} {name!r} is not one of the suite's {key} ({', '.join(valid)})")
    return names


def _ray(v: Any, where: str) -> RaySettings:
    """The ``ray`` table: cluster address (none: a local cluster), workers and each worker's CPUs and GPUs."""
    if not isinstance(v, dict):
        _fail(where, f"ray must be a table (address, workers, num_cpus, num_gpus, max_retries), got {v!r}")
    _check_keys(v, ("address", "workers", "num_cpus", "num_gpus", "max_retries"), f"{where} ray")
    address = v.get("address")
    if address is not None and (not isinstance(address, str) or not address):
        _fail(where, f"ray address must be host:port, ray://host:port or 'auto', got {address!r}")
    return RaySettings(address=address, workers=check_int(where, "ray workers", v.get("workers", 2), 1),
                       num_cpus=check_float(where, "ray num_cpus", v.get("num_cpus", 1.0), 0.0),
                       num_gpus=check_float(where, "ray num_gpus", v.get("num_gpus", 0.0), 0.0),
                       max_retries=check_int(where, "ray max_retries", v.get("max_retries", 3), 0))


def _choice(data: dict[str, Any], key: str, default: str, valid: tuple[str, ...], where: str) -> str:
    value = data.get(key, default)
    if value not in valid:
        _fail(where, f"{key} must be one of {', '.join(valid)}, got {value!r}")
    return value


def parse_config(data: dict[str, Any], source: str = "<dict>", raw: str = "",
                 plugins: tuple[str, ...] = ()) -> Config:
    """Validate a config mapping (as parsed from TOML) into a Config; errors name the bad key or value.

    Plugins (the config's ``plugins`` and the caller's, e.g. ``--plugin``) are imported first, so the names they
    register are known to the validation; file plugins are found relative to the config's folder.
    """
    where = Path(source).name
    _check_keys(data, ("seed", "suite", "device", "precision", "executor", "ray", "plugins"), where)
    listed = data.get("plugins", [])
    if not isinstance(listed, list):
        _fail(where, f"plugins must be a list of module names or .py files, got {listed!r}")
    plugins = (*listed, *plugins)
    load_plugins(plugins, config_folder(source))
    device = data.get("device", "auto")
    if not isinstance(device, str):
        _fail(where, f"device must be auto, cpu, cuda or cuda:N, got {device!r}")
    precision = _choice(data, "precision", "fp32", tuple(PRECISIONS), where)
    executor = _choice(data, "executor", "local", EXECUTORS, where)
    ray = _ray(data.get("ray", {}), where)
    seed = check_int(where, "seed", data.get("seed", 0), 0)
    suites = data.get("suite")
    if not isinstance(suites, list) or not suites:
        _fail(where, "needs at least one [[suite]] table")
    parsed = tuple(_suite(_table(s, f"suite {i + 1}", "each suite"), i) for i, s in enumerate(suites))
    names = [s.name for s in parsed]
    if len(set(names)) != len(names):
        parsed = tuple(Suite(**{**s.__dict__, "name": f"{s.name}-{i + 1}"}) for i, s in enumerate(parsed))
    return Config(seed=seed, suites=parsed, source=source, raw=raw, device=device, precision=precision,
                  executor=executor, ray=ray, plugins=tuple(plugins))


def load_config(path: str | Path, plugins: tuple[str, ...] = ()) -> Config:
    """Read and validate a TOML config file (one-line errors for a missing, unreadable or non-UTF-8 file, bad TOML)."""
    path = Path(path)
    try:
        if not path.is_file():
            raise RobustgridError(f"config file not found: {path}")
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RobustgridError(f"{path.name}: not UTF-8 text (byte {exc.start}); save the config as UTF-8") from None
    except OSError as exc:
        raise RobustgridError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw)
    except tomllib.TOMLDecodeError as exc:
        raise RobustgridError(f"{path.name}: invalid TOML: {exc}") from None
    return parse_config(data, str(path), raw, plugins)
