"""A wrong-typed value for any parameter of any attack, defense, target or dataset is a one-line error at parse
time; through the CLI it (like a non-UTF-8 config, an ``--out`` that is a file, or a checkpoint beyond every
attack's steps) exits with status 2, prints one line, and writes nothing.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import torchattacks

from robustgrid.attacks import ATTACKS, build_attack
from robustgrid.benchmark import parse_config
from robustgrid.benchmark.cli import main
from robustgrid.benchmark.config import GRID_SET
from robustgrid.core import RobustgridError, declared_params, describe_type, type_matches
from robustgrid.defenses import DEFENSES
from robustgrid.models.data import DATASETS
from robustgrid.models.target import TARGET_PREFIXES, TARGETS
from tests.benchmark.conftest import SMALL_TOML

ROOT = Path(__file__).resolve().parents[2]
CONFIG_KEYS = {"name", "steps", "label"}  # config keys of their own, never passed as a constructor keyword
TORCHATTACKS = ("PGD", "CW", "APGD", "Square", "DeepFool")  # a sample: their parameters are typed by defaults
PREFIXED = {"timm": "timm:resnet18", "pyiqa": "pyiqa:musiq", "smp": "smp:Unet",
            "torchvision-seg": "torchvision-seg:fcn_resnet50", "python": "python:mypkg.nets:build"}
CANDIDATES = ("not-a-number", 12345, [1, 2], {"key": 1}, True)  # a string, a number, a list, a table, a boolean


def defaults(fn: Any) -> dict[str, Any]:
    """Default value of each keyword of ``fn`` (for a class, of its __init__ chain), first one seen wins."""
    chain = [c.__init__ for c in fn.__mro__ if "__init__" in vars(c)] if inspect.isclass(fn) else [fn]
    found: dict[str, Any] = {}
    for f in chain:
        for n, p in inspect.signature(f).parameters.items():
            found.setdefault(n, p.default)
    return found


def constructor_params() -> list[tuple[str, str, str, Any, Any]]:
    """(kind, spec name, parameter, type hint, default) for every parameter a config may set."""
    sources: list[tuple[str, str, Any, set[str]]] = []
    sources += [("attack", n, ATTACKS.entry(n).fn, set(GRID_SET)) for n in ATTACKS.names()]
    sources += [("attack", f"torchattacks:{n}", getattr(torchattacks, n), set(GRID_SET) | {"model"})
                for n in TORCHATTACKS]
    sources += [("defense", n, DEFENSES.entry(n).fn, set()) for n in DEFENSES.names()]
    sources += [("target", n, TARGETS.entry(n).fn, set()) for n in TARGETS.names()]
    sources += [("target", PREFIXED[p], TARGET_PREFIXES.entry(p).fn, {"arch"}) for p in TARGET_PREFIXES.names()]
    sources += [("dataset", n, DATASETS.entry(n).fn, set()) for n in DATASETS.names()]
    rows = []
    for kind, name, fn, grid_set in sources:
        hints, _ = declared_params(fn)
        given = defaults(fn)
        rows += [(kind, name, param, hint, given[param]) for param, hint in hints.items()
                 if param not in grid_set | CONFIG_KEYS]
    return rows


PARAMS = constructor_params()


def config_with(kind: str, name: str, params: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The small test config with one ``kind`` entry ``name`` carrying ``params``, and where errors point."""
    cfg = tomllib.loads(SMALL_TOML)
    suite = cfg["suite"][0]
    if kind == "attack":
        suite["attacks"].append({"name": name, "steps": 2, "label": "probe", **params})
        return cfg, f"suite 1 attack 3 ({name})"
    if kind == "defense":
        suite["defenses"] = ["none", {"name": name, **params}]
        return cfg, f"suite 1 defense 2 ({name})"
    if kind == "target":
        suite["targets"] = [{"name": name, **params}]
        return cfg, f"suite 1 target 1 ({name})"
    suite["dataset"] = {"name": name, **params}
    return cfg, f"suite 1 dataset ({name})"


def wrong_value(hint: Any) -> Any:
    """A value of another kind than ``hint`` admits: a string for a number, a number for a string ..."""
    return next((v for v in CANDIDATES if not type_matches(v, hint)), None)


def test_the_cases_cover_every_registry_and_every_parameter_is_typed() -> None:
    kinds = {kind for kind, *_ in PARAMS}
    names = {name for _, name, *_ in PARAMS}
    assert kinds == {"attack", "defense", "target", "dataset"} and len(PARAMS) > 150
    assert {"mifgsm", "sega-nomask", "torchattacks:CW", "ncis", "timm:resnet18", "piqe", "fmnist-scenes"} <= names
    untyped = [f"{name}.{param}" for _, name, param, hint, _ in PARAMS if wrong_value(hint) is None]
    assert not untyped, f"parameters that admit any value (annotate them): {untyped}"


@pytest.mark.parametrize(("kind", "name", "param", "hint"), [row[:4] for row in PARAMS],
                         ids=[f"{row[1]}.{row[2]}" for row in PARAMS])
def test_a_wrong_typed_value_is_a_one_line_parse_error(kind: str, name: str, param: str, hint: Any) -> None:
    value = wrong_value(hint)
    cfg, where = config_with(kind, name, {param: value})
    with pytest.raises(RobustgridError) as err:
        parse_config(cfg)
    assert str(err.value) == f"{where}: {param} must be {describe_type(hint)}, got {value!r}"


DEFAULTS = [(k, n, p, d) for k, n, p, _, d in PARAMS if d is not None and d is not inspect.Parameter.empty]


@pytest.mark.parametrize(("kind", "name", "param", "default"), DEFAULTS, ids=[f"{n}.{p}" for _, n, p, _ in DEFAULTS])
def test_the_declared_default_passes_the_type_check(kind: str, name: str, param: str, default: Any) -> None:
    """The annotations agree with the defaults, so a config repeating a default is never refused."""
    cfg, _ = config_with(kind, name, {param: list(default) if isinstance(default, tuple) else default})
    parse_config(cfg)


def test_the_python_api_applies_the_same_rule() -> None:
    with pytest.raises(RobustgridError) as err:
        build_attack("mifgsm", decay="high")
    assert str(err.value) == "mifgsm: decay must be a number, got 'high'"


# ---- the CLI: exit 2, one line on stderr, nothing written ----------------------------------------------------

def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + "}"


def toml_text(cfg: dict[str, Any]) -> str:
    """A config dict as TOML (the shapes configs use: top-level keys, [[suite]] and [[suite.attacks]] tables)."""
    lines = [f"seed = {cfg['seed']}"]
    for suite in cfg["suite"]:
        lines += ["[[suite]]", *[f"{k} = {toml_value(v)}" for k, v in suite.items() if k != "attacks"]]
        for attack in suite["attacks"]:
            lines += ["[[suite.attacks]]", *[f"{k} = {toml_value(v)}" for k, v in attack.items()]]
    return "\n".join(lines) + "\n"


def run_cli(tmp_path: Path, capsys: Any, text: str | bytes, out: Path | None = None) -> tuple[int, list[str]]:
    path = tmp_path / "config.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    code = main(["run", str(path), "--out", str(out or tmp_path / "out"), "--quiet"])
    return code, capsys.readouterr().err.splitlines()


CLI_CASES = [  # the expected lines are written out here, independently of the type rule's own wording
    ("attack", "mifgsm", "decay", "high", "suite 1 attack 3 (mifgsm): decay must be a number, got 'high'"),
    ("attack", "pgd", "step_size", "0.01", "suite 1 attack 3 (pgd): step_size must be a number, got '0.01'"),
    ("attack", "sega", "smooth", [1, 2], "suite 1 attack 3 (sega): smooth must be true or false, got [1, 2]"),
    ("attack", "sega", "weights", ["a"], "suite 1 attack 3 (sega): weights must be a list of numbers, got ['a']"),
    ("attack", "torchattacks:CW", "c", "x", "suite 1 attack 3 (torchattacks:CW): c must be a number, got 'x'"),
    ("attack", "pgd", "eps", 0.1, "suite 1 attack 3 (pgd): 'eps' is set by the suite's budget, not per attack"),
    ("defense", "gaussian", "kernel_size", 3.0,
     "suite 1 defense 2 (gaussian): kernel_size must be an integer, got 3.0"),
    ("defense", "ncis", "mode", 5, "suite 1 defense 2 (ncis): mode must be a string, got 5"),
    ("target", "fmnist-resnet", "allow_train", "no",
     "suite 1 target 1 (fmnist-resnet): allow_train must be true or false, got 'no'"),
    ("target", "timm:resnet18", "in_chans", "3",
     "suite 1 target 1 (timm:resnet18): in_chans must be an integer, got '3'"),
    ("target", "piqe", "input_shape", [3, 48],
     "suite 1 target 1 (piqe): input_shape must be a list of 3 integers, got [3, 48]"),
    ("dataset", "fashion-mnist", "size", "10", "suite 1 dataset (fashion-mnist): size must be an integer, got '10'"),
    ("dataset", "fashion-mnist", "root", 5, "suite 1 dataset (fashion-mnist): root must be a string or a path, got 5"),
]


@pytest.mark.parametrize(("kind", "name", "param", "value", "line"), CLI_CASES, ids=[c[4][:40] for c in CLI_CASES])
def test_cli_wrong_type_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, kind, name, param, value, line):
    cfg, _ = config_with(kind, name, {param: value})
    assert tomllib.loads(toml_text(cfg)) == cfg
    code, err = run_cli(tmp_path, capsys, toml_text(cfg))
    assert (code, err) == (2, [f"robustgrid: error: {line}"])
    assert not (tmp_path / "out").exists()


def test_config_that_is_not_utf8_exits_2_in_a_real_process(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(SMALL_TOML.replace('"tiny"', '"caf\u00e9"').encode("latin-1"))
    proc = subprocess.run([sys.executable, "-m", "robustgrid.benchmark.cli", "run", str(path), "--out",
                           str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    at = SMALL_TOML.encode("latin-1").index(b'"tiny"') + 4  # where the byte 0xe9 of "café" lands
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [f"robustgrid: error: latin1.toml: not UTF-8 text (byte {at}); "
                                        f"save the config as UTF-8"]
    assert not (tmp_path / "out").exists()


def test_out_naming_a_file_exits_2_and_leaves_it_alone(tmp_path, capsys):
    taken = tmp_path / "results.txt"
    taken.write_text("not a folder\n")
    code, err = run_cli(tmp_path, capsys, SMALL_TOML, out=taken)
    assert (code, err) == (2, [f"robustgrid: error: output folder {taken} is a file; name a folder with --out"])
    code, err = run_cli(tmp_path, capsys, SMALL_TOML, out=taken / "sub")
    assert (code, err) == (2, [f"robustgrid: error: output folder {taken / 'sub'} lies inside {taken}, which is a "
                               f"file; name a folder with --out"])
    assert taken.read_text() == "not a folder\n" and sorted(p.name for p in tmp_path.iterdir()) == [
        "config.toml", "results.txt"]


def test_checkpoint_beyond_every_attacks_steps_exits_2(tmp_path, capsys):
    cfg = tomllib.loads(SMALL_TOML)  # pgd runs 4 steps, fgsm 1
    cfg["suite"][0]["budget"]["checkpoints"] = [1, 2, 5]
    code, err = run_cli(tmp_path, capsys, toml_text(cfg))
    assert (code, err) == (2, ["robustgrid: error: suite 1: checkpoint 5 is beyond every attack's steps; "
                               "valid checkpoints: 1..4"])
    assert not (tmp_path / "out").exists()
    cfg["suite"][0]["budget"]["checkpoints"] = [1, 2, 3, 4]  # beyond fgsm's one step: they apply to pgd
    assert parse_config(cfg).suites[0].budget.checkpoints == (1, 2, 3, 4)
