"""Interrupt a run (in-process and with a real SIGINT/SIGKILL) and resume: same table, no duplicates."""

from __future__ import annotations

import os
import shutil
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


def interrupt_after(monkeypatch: pytest.MonkeyPatch, shards: int) -> list:
    """Make the runner's shard function raise KeyboardInterrupt (a Ctrl-C) once ``shards`` shards have run;
    returns the list of jobs that ran, for the test to inspect."""
    ran: list = []
    real = runner.run_shard

    def run_shard(p, unit, job):
        if len(ran) >= shards:
            raise KeyboardInterrupt
        ran.append(job)
        return real(p, unit, job)

    monkeypatch.setattr(runner, "run_shard", run_shard)
    return ran


def default_sigint() -> None:
    """In the child before exec: SIGINT back to its default. A test session started in the background of a
    non-interactive shell inherits SIGINT ignored, and so would the CLI (Python installs no handler then)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_interrupted_run_resumes_to_the_same_table(small_config, tmp_path, monkeypatch):
    cfg = parse_config(small_config)
    interrupt_after(monkeypatch, 5)
    with pytest.raises(KeyboardInterrupt):
        run_grid(cfg, tmp_path / "cut", progress=False, report=False)
    monkeypatch.undo()
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
    for _attempt in range(3):  # a signal that lands after the run's last unit (a race on a fast machine) says nothing
        shutil.rmtree(out, ignore_errors=True)
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=default_sigint)
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
        if not (proc.returncode == 0 and "units generated" in proc.stdout.read()):
            break
    if sig == signal.SIGINT:
        err = proc.stderr.read()
        assert proc.returncode == 130 and "rerun the same command to resume" in err, (proc.returncode, err[-500:])
    else:
        assert proc.returncode == -signal.SIGKILL
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    run_grid(parse_config(small_config), tmp_path / "whole", progress=False, report=False)
    assert table(out) == table(tmp_path / "whole")


def test_a_run_killed_mid_unit_resumes_at_the_shard(small_config, tmp_path, monkeypatch):
    """Four shards per unit: a run cut after 6 shards leaves one unit finished and one half done; the rerun runs
    only the missing shards and ends with the table of an uninterrupted run without shards (one per unit)."""
    small_config["suite"][0].update(batch_size=12, shard_size=12)
    cfg = parse_config(small_config)
    assert cfg.suites[0].shard_samples == 12
    interrupt_after(monkeypatch, 6)
    with pytest.raises(KeyboardInterrupt):
        run_grid(cfg, tmp_path / "cut", progress=False, report=False)
    monkeypatch.undo()
    db = sqlite3.connect(tmp_path / "cut" / "cells.sqlite")
    stored = db.execute("SELECT unit, shard FROM shards ORDER BY unit, shard").fetchall()
    assert [s for _, s in stored] == [0, 1] and len({u for u, _ in stored}) == 1  # the cut unit's first half
    ran = interrupt_after(monkeypatch, 10**6)
    run_grid(cfg, tmp_path / "cut", progress=False, report=False)
    monkeypatch.undo()
    resumed_unit = [j for j in ran if j.unit == stored[0][0]]
    assert [j.index for j in resumed_unit] == [2, 3]            # resumed at the shard, not from the start
    assert sqlite3.connect(tmp_path / "cut" / "cells.sqlite").execute("SELECT COUNT(*) FROM shards").fetchone() == (0,)
    whole = dict(small_config["suite"][0])
    whole.update(shard_size=48)  # one shard per unit: same batches, same seeds, so the same numbers
    run_grid(parse_config({**small_config, "suite": [whole]}), tmp_path / "whole", progress=False, report=False)
    assert table(tmp_path / "cut") == table(tmp_path / "whole")
