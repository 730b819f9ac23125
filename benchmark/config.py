"""Grid configs: TOML -> frozen dataclasses, validated completely before any compute starts."""

from __future__ import annotations

import difflib
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustgrid.core import RobustgridError

THREATS = ("whitebox", "transfer", "blind", "bpda", "adaptive")
DEFENDED_THREATS = ("blind", "bpda", "adaptive")  # need a defense other than "none"


@dataclass(frozen=True)
class Spec:
    """A name plus keyword parameters (an attack, a target or a dataset), hashable and printable."""

    name: str
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.params)


@dataclass(frozen=True)
class AttackSpec:
    """One attack of a suite: registry name, parameters, display label and its step count."""

    name: str
    steps: int
    params: tuple[tuple[str, Any], ...] = ()
    label: str = ""

    @property
    def kwargs(self) -> dict[str, Any]:
        return {**dict(self.params), "steps": self.steps}

    def to_json(self) -> str:
        return json.dumps({"name": self.name, "steps": self.steps, "params": dict(self.params)},
                          sort_keys=True, default=str)


@dataclass(frozen=True)
class Budget:
    """Norm, the epsilons of the budget curve, and the iteration checkpoints of the strength curve."""

    norm: str
    eps: tuple[float, ...]
    checkpoints: tuple[int, ...] = ()


@dataclass(frozen=True)
class Suite:
    """One task on one dataset, crossed independently: targets x defenses x threats x attacks x budget."""

    task: str
    dataset: Spec
    targets: tuple[Spec, ...]
    attacks: tuple[AttackSpec, ...]
    budget: Budget
    defenses: tuple[Spec, ...] = (Spec("none"),)
    threats: tuple[str, ...] = ("whitebox",)
    sources: tuple[tuple[str, ...], ...] = ()
    batch_size: int = 256
    early_stop: bool = True
    eot_samples: int = 8
    name: str = ""


@dataclass(frozen=True)
class Config:
    """A whole grid: a seed and one or more suites."""

    seed: int
    suites: tuple[Suite, ...]
    source: str = ""
    raw: str = field(default="", repr=False)


def _fail(where: str, msg: str) -> None:
    raise RobustgridError(f"{where}: {msg}")


def _check_keys(table: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=2, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; valid keys: {', '.join(allowed)}"
            _fail(where, f"unknown key {key!r}{hint}")


def _number(v: Any, where: str, what: str, *, lo: float | None = None, integer: bool = False,
            strict: bool = False) -> Any:
    ok = isinstance(v, int) if integer else isinstance(v, (int, float))
    if isinstance(v, bool) or not ok or (not integer and not math.isfinite(v)):
        _fail(where, f"{what} must be a finite {'integer' if integer else 'number'}, got {v!r}")
    if lo is not None and (v <= lo if strict else v < lo):
        _fail(where, f"{what} must be {'>' if strict else '>='} {lo}, got {v!r}")
    return v


def _spec(v: Any, where: str, what: str) -> Spec:
    if isinstance(v, str):
        return Spec(v)
    if isinstance(v, dict) and isinstance(v.get("name"), str):
        params = tuple(sorted((k, _freeze(x)) for k, x in v.items() if k != "name"))
        return Spec(v["name"], params)
    _fail(where, f"each {what} must be a name or a table with a 'name', got {v!r}")
    raise AssertionError


def _freeze(v: Any) -> Any:
    return tuple(_freeze(x) for x in v) if isinstance(v, list) else v


def _suite(t: dict[str, Any], i: int) -> Suite:
    where = f"suite {i + 1}"
    _check_keys(t, ("name", "task", "dataset", "targets", "defenses", "threats", "budget", "attacks",
                    "transfer", "batch_size", "early_stop", "eot_samples"), where)
    for key in ("task", "dataset", "targets", "attacks", "budget"):
        if key not in t:
            _fail(where, f"missing key {key!r}")
    task = t["task"]
    dataset = _spec(t["dataset"], where, "dataset")
    ds = dict(dataset.params)
    # other dataset keys are checked against the dataset loader's own signature when it is built
    if "size" in ds:
        _number(ds["size"], where, "dataset size", lo=1, integer=True)
    if not isinstance(t["targets"], list) or not t["targets"]:
        _fail(where, "targets must be a non-empty list")
    targets = tuple(_spec(x, where, "target") for x in t["targets"])
    defenses = tuple(_spec(x, where, "defense") for x in t.get("defenses", ["none"]))
    threats = tuple(t.get("threats", ["whitebox"]))
    for th in threats:
        if th not in THREATS:
            close = difflib.get_close_matches(str(th), THREATS, n=1)
            _fail(where, f"unknown threat {th!r}" + (f"; did you mean {close[0]}?" if close else
                                                     f"; valid: {', '.join(THREATS)}"))
    b = t["budget"]
    if not isinstance(b, dict):
        _fail(where, "budget must be a table with norm and eps")
    _check_keys(b, ("norm", "eps", "checkpoints"), f"{where} budget")
    norm = b.get("norm", "linf")
    if norm not in ("linf", "l2"):
        _fail(where, f"unknown norm {norm!r}; valid: linf, l2")
    eps_list = b.get("eps")
    if not isinstance(eps_list, list) or not eps_list:
        _fail(where, "budget eps must be a non-empty list of numbers")
    eps = tuple(float(_number(e, where, "budget eps", lo=0.0)) for e in eps_list)
    checkpoints = tuple(int(_number(c, where, "checkpoint", lo=1, integer=True)) for c in b.get("checkpoints", []))
    attacks = []
    if not isinstance(t["attacks"], list) or not t["attacks"]:
        _fail(where, "attacks must be a non-empty list of tables")
    for j, a in enumerate(t["attacks"]):
        aw = f"{where} attack {j + 1}"
        if not isinstance(a, dict) or not isinstance(a.get("name"), str):
            _fail(aw, "each attack must be a table with a 'name'")
        steps = int(_number(a.get("steps", 10), aw, "steps", lo=1, integer=True))
        params = tuple(sorted((k, _freeze(v)) for k, v in a.items() if k not in ("name", "steps", "label")))
        label = a.get("label") or a["name"]
        attacks.append(AttackSpec(a["name"], steps, params, label))
    labels = [a.label for a in attacks]
    dup = {x for x in labels if labels.count(x) > 1}
    if dup:
        _fail(where, f"two attacks share the label {sorted(dup)[0]!r}; give one a distinct 'label'")
    transfer = t.get("transfer", {})
    _check_keys(transfer, ("sources",), f"{where} transfer")
    sources = tuple(tuple(s) if isinstance(s, list) else (s,) for s in transfer.get("sources", []))
    if "transfer" in threats and not sources:
        sources = tuple((x.name,) for x in targets)  # default: every target as a single source
    names = {x.name for x in targets}
    for group in sources:
        for s in group:
            if s not in names:
                _fail(where, f"transfer source {s!r} is not one of the suite's targets ({', '.join(sorted(names))})")
    if any(th in DEFENDED_THREATS for th in threats) and all(d.name == "none" for d in defenses):
        _fail(where, "threats blind/bpda/adaptive need at least one defense other than 'none'")
    batch = int(_number(t.get("batch_size", 256), where, "batch_size", lo=1, integer=True))
    eot = int(_number(t.get("eot_samples", 8), where, "eot_samples", lo=1, integer=True))
    early = t.get("early_stop", True)
    if not isinstance(early, bool):
        _fail(where, f"early_stop must be true or false, got {early!r}")
    return Suite(task=task, dataset=dataset, targets=targets, attacks=tuple(attacks),
                 budget=Budget(norm, eps, checkpoints), defenses=defenses, threats=threats, sources=sources,
                 batch_size=batch, early_stop=early, eot_samples=eot, name=str(t.get("name", f"{task}")))


def parse_config(data: dict[str, Any], source: str = "<dict>", raw: str = "") -> Config:
    """Validate a config mapping (as parsed from TOML) into a Config; errors name the bad key or value."""
    where = Path(source).name
    _check_keys(data, ("seed", "suite"), where)
    seed = int(_number(data.get("seed", 0), where, "seed", lo=0, integer=True))
    suites = data.get("suite")
    if not isinstance(suites, list) or not suites:
        _fail(where, "needs at least one [[suite]] table")
    parsed = tuple(_suite(s, i) for i, s in enumerate(suites))
    names = [s.name for s in parsed]
    if len(set(names)) != len(names):
        parsed = tuple(Suite(**{**s.__dict__, "name": f"{s.name}-{i + 1}"}) for i, s in enumerate(parsed))
    return Config(seed=seed, suites=parsed, source=source, raw=raw)


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML config file (one line error for a missing file or bad TOML)."""
    path = Path(path)
    if not path.is_file():
        raise RobustgridError(f"config file not found: {path}")
    raw = path.read_text()
    try:
        data = tomllib.loads(raw)
    except tomllib.TOMLDecodeError as exc:
        raise RobustgridError(f"{path.name}: invalid TOML: {exc}") from None
    return parse_config(data, str(path), raw)
