"""Interrupt a run (in-process and with a real SIGINT/SIGKILL) and resume: same table, no duplicates."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from robustgrid.benchmark import parse_config, run_grid, runner

from tests.benchmark.conftest import SMALL_TOML

ROOT = Path(__file__).resolve().parents[2]
Q = "SELECT key, value, grad_evals FROM cells ORDER BY key"


def table(out: Path) -> list[tuple]:
    return sqlite3.connect(out / "cells.sqlite").execute(Q).fetchall()


def test_interrupted_run_resumes_to_the_same_table(small_config, tmp_path, monkeypatch):
    cfg = parse_config(small_config)
    real_run_unit, started = runner.run_unit, []

    def interrupted_at_the_sixth_unit(*args, **kwargs):  # Ctrl-C as the sixth unit starts
        if len(started) == 5:
            raise KeyboardInterrupt
        started.append(1)
        real_run_unit(*args, **kwargs)

    monkeypatch.setattr(runner, "run_unit", interrupted_at_the_sixth_unit)
    with pytest.raises(KeyboardInterrupt):
        run_grid(cfg, tmp_path / "cut", progress=False, report=False)
    monkeypatch.setattr(runner, "run_unit", real_run_unit)
    partial = table(tmp_path / "cut")
    assert 0 < len(partial)
    resumed = run_grid(cfg, tmp_path / "cut", progress=False, report=False)
    assert resumed.reused == 5
    run_grid(cfg, tmp_path / "whole", progress=False, report=False)
    full = table(tmp_path / "whole")
    assert table(tmp_path / "cut") == full
    keys = [r[0] for r in full]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_killed_cli_run_resumes(small_config, tmp_path, sig):
    cfg_path = tmp_path / "tiny.toml"
    cfg_path.write_text(SMALL_TOML)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "robustgrid.benchmark.cli", "run", str(cfg_path), "--out", str(out), "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until some, not all, cells are stored
        time.sleep(0.2)
        try:
            n = sqlite3.connect(out / "cells.sqlite").execute("SELECT COUNT(*) FROM units").fetchone()[0]
        except sqlite3.Error:
            n = 0
        if n >= 2 or proc.poll() is not None:
            break
    assert proc.poll() is None, "run finished before it could be interrupted"
    proc.send_signal(sig)
    proc.wait(timeout=60)
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "rerun the same command to resume" in proc.stderr.read()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    run_grid(parse_config(small_config), tmp_path / "whole", progress=False, report=False)
    assert table(out) == table(tmp_path / "whole")
