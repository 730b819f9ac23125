"""The store: schema version, refusal of an old-format store, read-only opening, provenance and clean keys."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from robustgrid.benchmark.records import SCHEMA_VERSION, TABLES
from robustgrid.benchmark.report import write_report
from robustgrid.benchmark.store import Store, pack
from robustgrid.core import RobustgridError

ROOT = Path(__file__).resolve().parents[2]

# The schema the store had before it recorded a version (user_version 0): provenance JSON in every cell row,
# clean keys only inside that JSON, and a derived flags table written by every report.
OLD_SCHEMA = """
CREATE TABLE IF NOT EXISTS cells (
    key TEXT PRIMARY KEY, unit TEXT NOT NULL, suite TEXT NOT NULL, task TEXT NOT NULL, dataset TEXT NOT NULL,
    attack TEXT NOT NULL, attack_spec TEXT NOT NULL, sources TEXT NOT NULL, threat TEXT NOT NULL,
    norm TEXT NOT NULL, eps REAL NOT NULL, steps INTEGER NOT NULL, target TEXT NOT NULL, defense TEXT NOT NULL,
    seed INTEGER NOT NULL, metric TEXT NOT NULL, value REAL, n INTEGER NOT NULL, grad_evals INTEGER NOT NULL,
    naive_grad_evals INTEGER NOT NULL, eval_seconds REAL NOT NULL, provenance TEXT NOT NULL,
    outcome BLOB NOT NULL, created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS metrics (
    key TEXT NOT NULL REFERENCES cells(key), name TEXT NOT NULL, value REAL, PRIMARY KEY (key, name)
);
CREATE TABLE IF NOT EXISTS units (
    key TEXT PRIMARY KEY, suite TEXT NOT NULL, grad_evals INTEGER NOT NULL, forwards INTEGER NOT NULL,
    seconds REAL NOT NULL, seed INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS datasets (
    suite TEXT NOT NULL, fingerprint TEXT NOT NULL, labels BLOB NOT NULL, PRIMARY KEY (suite, fingerprint)
);
CREATE TABLE IF NOT EXISTS clean (
    suite TEXT NOT NULL, target TEXT NOT NULL, defense TEXT NOT NULL, fingerprint TEXT NOT NULL,
    outcome BLOB NOT NULL, PRIMARY KEY (suite, target, defense, fingerprint)
);
CREATE TABLE IF NOT EXISTS flags (
    suite TEXT NOT NULL, target TEXT NOT NULL, defense TEXT NOT NULL, threat TEXT NOT NULL, flag TEXT NOT NULL,
    PRIMARY KEY (suite, target, defense, threat, flag)
);
CREATE TABLE IF NOT EXISTS provenance (suite TEXT PRIMARY KEY, info TEXT NOT NULL);
"""


def old_store(path: Path) -> Path:
    """A store as the code before the schema version wrote it, with one cell."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(OLD_SCHEMA)
    prov = json.dumps({"seed": 0, "clean": {"fmnist-resnet|none": "fp"}})
    db.execute("INSERT INTO cells VALUES (?, 'u', 'tiny', 'classification', 'fashion-mnist:test:fp', 'pgd', '{}', "
               "'[\"fmnist-resnet\"]', 'whitebox', 'linf', 0.1, 4, 'fmnist-resnet', 'none', 1, 'accuracy', 0.5, "
               "4, 16, 16, 0.1, ?, ?, 0.0)", ("k" * 64, prov, pack(np.array([0, 1, 2, 3]))))
    db.execute("INSERT INTO provenance VALUES ('tiny', ?)", (prov,))
    db.commit()
    db.close()
    return path


def fingerprint(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


OLD_MESSAGE = (f"has schema version 0, this robustgrid reads version {SCHEMA_VERSION}; "
               "re-run the grid into a new --out folder")


def test_a_new_store_records_its_schema_version_and_reopens(tmp_path):
    Store(tmp_path / "cells.sqlite").close()
    db = sqlite3.connect(tmp_path / "cells.sqlite")
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert names == {t.name for t in TABLES} and "flags" not in names
    db.close()
    for readonly in (False, True):
        store = Store(tmp_path / "cells.sqlite", readonly=readonly)
        assert store.cells() == [] and store.units() == []
        store.close()


@pytest.mark.parametrize("readonly", [False, True])
def test_an_old_format_store_is_refused_in_one_line_and_left_untouched(tmp_path, readonly):
    path = old_store(tmp_path / "cells.sqlite")
    before = fingerprint(path)
    with pytest.raises(RobustgridError) as info:
        Store(path, readonly=readonly)
    assert str(info.value) == f"store {path} {OLD_MESSAGE}"
    assert fingerprint(path) == before


def test_report_and_cli_on_an_old_store_write_nothing_and_exit_two(tmp_path):
    old_store(tmp_path / "cells.sqlite")
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(RobustgridError, match=OLD_MESSAGE):
        write_report(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "robustgrid.benchmark.cli", "report", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and OLD_MESSAGE in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before


# version 3, the schema before cells and units recorded queries and access: its cells table lacks both columns
V3_CELLS = """
CREATE TABLE cells (suite TEXT NOT NULL, task TEXT NOT NULL, dataset TEXT NOT NULL, attack TEXT NOT NULL,
    sources TEXT NOT NULL, threat TEXT NOT NULL, norm TEXT NOT NULL, eps REAL NOT NULL, steps INTEGER NOT NULL,
    target TEXT NOT NULL, defense TEXT NOT NULL, metric TEXT NOT NULL, value REAL, n INTEGER NOT NULL,
    grad_evals INTEGER NOT NULL, naive_grad_evals INTEGER NOT NULL, seed INTEGER NOT NULL, key TEXT NOT NULL,
    unit TEXT NOT NULL, attack_spec TEXT NOT NULL, eval_seconds REAL NOT NULL, clean_key TEXT NOT NULL,
    provenance TEXT NOT NULL, created REAL NOT NULL, PRIMARY KEY (key));
PRAGMA user_version = 3;
"""


@pytest.mark.parametrize("readonly", [False, True])
def test_a_store_from_before_query_counts_is_refused_in_one_line(tmp_path, readonly):
    path = tmp_path / "cells.sqlite"
    sqlite3.connect(path).executescript(V3_CELLS).close()
    assert refusal(path, readonly) == (f"store {path} has schema version 3, this robustgrid reads version "
                                       f"{SCHEMA_VERSION}; re-run the grid into a new --out folder")


def refusal(path: Path, readonly: bool) -> str:
    """The one-line message a store at ``path`` is refused with; the file is left untouched."""
    before = fingerprint(path)
    with pytest.raises(RobustgridError) as info:
        Store(path, readonly=readonly)
    assert fingerprint(path) == before
    return str(info.value)


def _version_4(path) -> None:
    """A store as version 4 wrote it: the datasets table without its groups column."""
    Store(path).close()
    db = sqlite3.connect(path)
    db.executescript("ALTER TABLE datasets DROP COLUMN groups; PRAGMA user_version = 4;")
    db.execute("INSERT INTO datasets (suite, fingerprint, labels) VALUES ('s', 'f', ?)", (pack(np.arange(3)),))
    db.commit()
    db.close()


def test_a_version_4_store_is_upgraded_when_opened_for_writing_and_refused_read_only(tmp_path):
    path = tmp_path / "cells.sqlite"
    _version_4(path)
    assert refusal(path, True) == (f"store {path} has schema version 4, this robustgrid reads version "
                                   f"{SCHEMA_VERSION}; run the grid on it once (robustgrid run), which upgrades it "
                                   "in place")
    store = Store(path)
    assert store.labels("s", "f").tolist() == [0, 1, 2] and store.groups("s", "f") is None
    store.put_dataset("s", "f", np.arange(3), np.array([7, 7, 9]))
    assert store.groups("s", "f").tolist() == [7, 7, 9]
    store.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_newer_schema_and_a_foreign_file_are_refused(tmp_path):
    newer = tmp_path / "newer.sqlite"
    Store(newer).close()
    sqlite3.connect(newer).execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}").connection.close()
    with pytest.raises(RobustgridError, match=f"schema version {SCHEMA_VERSION + 1}, this robustgrid reads "
                                              f"version {SCHEMA_VERSION}"):
        Store(newer, readonly=True)
    foreign = tmp_path / "notes.sqlite"
    foreign.write_bytes(b"not a database, just text" * 100)
    with pytest.raises(RobustgridError, match="is not a robustgrid store"):
        Store(foreign)


def test_a_read_only_store_cannot_be_written(grid_store, tmp_path):
    path = tmp_path / "cells.sqlite"
    shutil.copy(grid_store / "cells.sqlite", path)
    store = Store(path, readonly=True)
    try:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            store.put_dataset("tiny", "fp", np.arange(3))
    finally:
        store.close()


def test_provenance_is_stored_once_per_suite_and_cells_reference_it(grid_store):
    db = sqlite3.connect(f"{(grid_store / 'cells.sqlite').as_uri()}?mode=ro", uri=True)
    (prov_id, suite, info), = db.execute("SELECT id, suite, info FROM provenance").fetchall()
    assert suite == "tiny" and json.loads(info)["seed"] == 0
    assert db.execute("SELECT DISTINCT provenance FROM cells").fetchall() == [(prov_id,)]
    assert db.execute("SELECT COUNT(*) FROM cells").fetchone()[0] > 1
    db.close()


def test_clean_key_names_the_clean_outcomes_a_cell_was_compared_with(grid_store):
    store = Store(grid_store / "cells.sqlite", readonly=True)
    try:
        cells = store.cells()
        assert {(c.target, c.defense) for c in cells if c.clean_key} == {(c.target, c.defense) for c in cells}
        # an unperturbed (eps 0) white-box evaluation must reproduce the clean predictions exactly
        zero = [c for c in cells if c.eps == 0 and c.threat == "whitebox" and c.defense == "none"]
        assert zero
        for c in zero:
            assert np.array_equal(store.clean_for(c), store.outcome(c.key))
        keys = {(c.target, c.defense): c.clean_key for c in cells}
        assert len(set(keys.values())) == len(keys)  # each (target, defense) has its own clean predictions
    finally:
        store.close()
