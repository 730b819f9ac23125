"""Executors: Ray on a local two-worker cluster gives the local executor's numbers, survives a worker killed
mid-run, and refuses an unreachable cluster or a missing Ray in one line within seconds."""

from __future__ import annotations

import shutil
import sqlite3
import sys
import time
import tomllib
from pathlib import Path

import pytest

from robustgrid.benchmark import parse_config, run_grid
from robustgrid.benchmark.cli import main
from robustgrid.core import RobustgridError
from tests.benchmark.conftest import SMALL_TOML

ray = pytest.importorskip("ray")
DATA = Path(__file__).with_name("data")
Q = "SELECT key, value, grad_evals, naive_grad_evals FROM cells ORDER BY key"


def sharded_config(**top: object) -> dict:
    """The small grid with three shards per unit (16-image batches, one batch per shard)."""
    cfg = tomllib.loads(SMALL_TOML)
    cfg["suite"][0].update(batch_size=16, shard_size=16)
    cfg["suite"][0]["budget"]["eps"] = [0.0, 0.15]
    cfg.update(top)
    return cfg


def table(out: Path) -> list[tuple]:
    return sqlite3.connect(out / "cells.sqlite").execute(Q).fetchall()


@pytest.fixture(scope="module")
def cluster():
    """One local Ray cluster of two CPUs for the module (starting one takes seconds)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def local_table(tmp_path_factory) -> list[tuple]:
    out = tmp_path_factory.mktemp("local")
    run_grid(parse_config(sharded_config()), out, progress=False, report=False)
    return table(out)


def test_ray_gives_the_local_numbers(cluster, local_table, tmp_path) -> None:
    cfg = parse_config(sharded_config(executor="ray", ray={"workers": 2, "num_cpus": 1}))
    summary = run_grid(cfg, tmp_path, progress=False, report=False)
    assert summary.generated == 16 and len(local_table) == 16 * 2  # 16 units, checkpoints 2 and 4 (fgsm: 1)
    assert table(tmp_path) == local_table
    assert sqlite3.connect(tmp_path / "cells.sqlite").execute("SELECT COUNT(*) FROM shards").fetchone() == (0,)


def test_a_worker_killed_mid_run_is_restarted_and_its_shard_retried(cluster, local_table, tmp_path) -> None:
    plugin = tmp_path / "crash_plugin.py"
    shutil.copy(DATA / "crash_plugin.py", plugin)
    (tmp_path / "armed").touch()
    cfg = parse_config(sharded_config(executor="ray", plugins=[str(plugin)],
                                      ray={"workers": 2, "num_cpus": 1, "max_retries": 3}))
    try:
        run_grid(cfg, tmp_path / "out", progress=False, report=False)
    finally:
        import robustgrid.benchmark.runner as runner

        sys.modules.pop("crash_plugin", None)
        runner.run_shard = getattr(runner.run_shard, "__wrapped_real__", runner.run_shard)
    assert (tmp_path / "killed").exists()  # a worker really died (it wrote its pid, then exited)
    assert table(tmp_path / "out") == local_table


def test_an_unreachable_ray_address_fails_in_one_line_within_seconds(tmp_path, capsys) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(SMALL_TOML)
    start = time.perf_counter()
    rc = main(["run", str(cfg), "--out", str(tmp_path / "out"), "--quiet", "--executor", "ray",
               "--ray-address", "127.0.0.1:9"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Ray address 127.0.0.1:9 is unreachable" in err, err
    assert time.perf_counter() - start < 10
    assert not (tmp_path / "out").exists()


def test_ray_missing_is_one_line(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    cfg = tmp_path / "c.toml"
    cfg.write_text(SMALL_TOML)
    rc = main(["run", str(cfg), "--out", str(tmp_path / "out"), "--quiet", "--executor", "ray"])
    err = capsys.readouterr().err
    assert rc == 2 and err.strip() == "robustgrid: error: executor 'ray' needs Ray: pip install 'robustgrid[ray]'"
    assert not (tmp_path / "out").exists()


def test_bad_executor_settings_are_one_line() -> None:
    with pytest.raises(RobustgridError, match="executor must be one of local, ray, got 'spark'"):
        parse_config(sharded_config(executor="spark"))
    with pytest.raises(RobustgridError, match="ray workers must be an integer >= 1"):
        parse_config(sharded_config(ray={"workers": 0}))
    with pytest.raises(RobustgridError, match="unknown key 'adress'"):
        parse_config(sharded_config(ray={"adress": "x:1"}))
