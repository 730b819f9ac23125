"""Where no run stops early, a transfer group of one target is that target's white-box unit, evaluated on the
other targets too: the same numbers as a transfer unit of its own, for half the gradient evaluations."""

from __future__ import annotations

import sqlite3
import tomllib
from pathlib import Path

from robustgrid.benchmark import parse_config, run_grid
from robustgrid.benchmark.planner import plan_suite
from tests.benchmark.test_planner import fixed_identity

SEG = """
seed = 0

[[suite]]
name = "s"
task = "segmentation"
dataset = {{ name = "fmnist-scenes", split = "test", size = 8 }}
targets = ["scenes-fpn", "scenes-pspnet"]
threats = {threats}
budget = {{ norm = "linf", eps = [0.0, 0.031373], checkpoints = [1] }}
batch_size = 8

[[suite.attacks]]
name = "{attack}"
steps = 2
rel_step_size = 0.5
"""

CLS = """
seed = 0

[[suite]]
name = "c"
task = "classification"
dataset = {{ name = "fashion-mnist", split = "test", size = 8 }}
targets = ["fmnist-resnet", "fmnist-mobilenet", "fmnist-vit"]
threats = ["whitebox", "transfer"]
budget = {{ norm = "linf", eps = [0.05] }}
early_stop = {early_stop}

[[suite.attacks]]
name = "pgd"
steps = 2

[[suite.attacks]]
name = "fgsm"
steps = 1
threats = ["transfer"]

[suite.transfer]
sources = [["fmnist-resnet"], ["fmnist-resnet", "fmnist-mobilenet"]]
"""


def plan(toml: str) -> list:
    suite = parse_config(tomllib.loads(toml)).suites[0]
    return plan_suite(suite, 0, fixed_identity(suite))


def transfer_cells(out: Path) -> dict[tuple, float]:
    rows = sqlite3.connect(out / "cells.sqlite").execute(
        "SELECT sources, target, defense, eps, steps, value FROM cells WHERE threat = 'transfer'").fetchall()
    return {r[:5]: r[5] for r in rows}


def grad_evals(out: Path) -> int:
    return sqlite3.connect(out / "cells.sqlite").execute("SELECT SUM(grad_evals) FROM units").fetchone()[0]


def test_a_segmentation_transfer_from_one_target_is_its_whitebox_unit():
    units = plan(SEG.format(threats='["whitebox", "transfer"]', attack="pgd"))
    assert {u.threat for u in units} == {"whitebox"}
    for u in units:
        (source,) = u.sources
        other = ({"scenes-fpn", "scenes-pspnet"} - {source}).pop()
        assert {(c.threat, c.target) for c in u.cells} == {("whitebox", source), ("transfer", other)}


def test_early_stopping_whitebox_runs_and_ensembles_keep_their_transfer_units():
    def kinds(early_stop: str) -> set[tuple[str, str, tuple[str, ...]]]:
        return {(u.attack.name, u.threat, u.sources) for u in plan(CLS.format(early_stop=early_stop))}

    pair = ("fmnist-resnet", "fmnist-mobilenet")
    stopping = kinds("true")   # white-box samples stop at their first success: weaker examples to transfer
    assert ("pgd", "transfer", ("fmnist-resnet",)) in stopping and ("pgd", "transfer", pair) in stopping
    shared = kinds("false")
    assert ("pgd", "transfer", ("fmnist-resnet",)) not in shared  # made by the white-box unit
    assert ("pgd", "transfer", pair) in shared                     # no white-box unit makes an ensemble's examples
    assert ("fgsm", "transfer", ("fmnist-resnet",)) in shared      # an attack without a white-box unit keeps its own


def test_shared_transfer_cells_equal_a_transfer_run_of_their_own(tmp_path):
    """A deterministic attack (I-FGSM): the transfer cells of the white-box+transfer grid are the cells of a
    transfer-only grid, and the whole grid costs what its white-box units cost."""
    both = SEG.format(threats='["whitebox", "transfer"]', attack="ifgsm")
    alone = SEG.format(threats='["transfer"]', attack="ifgsm")
    white = SEG.format(threats='["whitebox"]', attack="ifgsm")
    for name, toml in (("both", both), ("alone", alone), ("white", white)):
        run_grid(parse_config(tomllib.loads(toml)), tmp_path / name, progress=False, report=False)
    shared = transfer_cells(tmp_path / "both")
    assert len(shared) == 8 and shared == transfer_cells(tmp_path / "alone")
    assert grad_evals(tmp_path / "both") == grad_evals(tmp_path / "white") == grad_evals(tmp_path / "alone") > 0
