"""SQLite store of cells: keyed by content hash, one transaction per generation unit, resumable.

Numbers are REAL/INTEGER columns; per-sample outcomes are compressed ``.npy`` blobs, so reports and
bootstrap intervals can be recomputed from the store alone.
"""

from __future__ import annotations

import io
import json
import sqlite3
import time
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robustgrid.core import RobustgridError

SCHEMA = """
CREATE TABLE IF NOT EXISTS cells (
    key TEXT PRIMARY KEY,
    unit TEXT NOT NULL,
    suite TEXT NOT NULL,
    task TEXT NOT NULL,
    dataset TEXT NOT NULL,
    attack TEXT NOT NULL,
    attack_spec TEXT NOT NULL,
    sources TEXT NOT NULL,
    threat TEXT NOT NULL,
    norm TEXT NOT NULL,
    eps REAL NOT NULL,
    steps INTEGER NOT NULL,
    target TEXT NOT NULL,
    defense TEXT NOT NULL,
    seed INTEGER NOT NULL,
    metric TEXT NOT NULL,
    value REAL,
    n INTEGER NOT NULL,
    grad_evals INTEGER NOT NULL,
    naive_grad_evals INTEGER NOT NULL,
    eval_seconds REAL NOT NULL,
    provenance TEXT NOT NULL,
    outcome BLOB NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS metrics (
    key TEXT NOT NULL REFERENCES cells(key),
    name TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (key, name)
);
CREATE TABLE IF NOT EXISTS units (
    key TEXT PRIMARY KEY,
    suite TEXT NOT NULL,
    grad_evals INTEGER NOT NULL,
    forwards INTEGER NOT NULL,
    seconds REAL NOT NULL,
    seed INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS datasets (
    suite TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    labels BLOB NOT NULL,
    PRIMARY KEY (suite, fingerprint)
);
CREATE TABLE IF NOT EXISTS clean (
    suite TEXT NOT NULL,
    target TEXT NOT NULL,
    defense TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    outcome BLOB NOT NULL,
    PRIMARY KEY (suite, target, defense, fingerprint)
);
CREATE TABLE IF NOT EXISTS flags (
    suite TEXT NOT NULL,
    target TEXT NOT NULL,
    defense TEXT NOT NULL,
    threat TEXT NOT NULL,
    flag TEXT NOT NULL,
    PRIMARY KEY (suite, target, defense, threat, flag)
);
CREATE TABLE IF NOT EXISTS provenance (
    suite TEXT PRIMARY KEY,
    info TEXT NOT NULL
);
"""


def pack(a: np.ndarray) -> bytes:
    """Compressed .npy bytes of an array (exact round trip)."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(a), allow_pickle=False)
    return zlib.compress(buf.getvalue(), 6)


def unpack(b: bytes) -> np.ndarray:
    return np.load(io.BytesIO(zlib.decompress(b)), allow_pickle=False)


@dataclass(frozen=True)
class CellRow:
    """A stored cell as read back for reports."""

    key: str
    unit: str
    suite: str
    task: str
    dataset: str
    attack: str
    attack_spec: str
    sources: tuple[str, ...]
    threat: str
    norm: str
    eps: float
    steps: int
    target: str
    defense: str
    seed: int
    metric: str
    value: float
    n: int
    grad_evals: int
    naive_grad_evals: int
    eval_seconds: float
    metrics: dict[str, float]

    def outcome(self, store: Store) -> np.ndarray:
        return store.outcome(self.key)


class Store:
    """The grid's single source of truth: ``OUT/cells.sqlite``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.path))
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All or nothing: a unit interrupted half-way leaves no rows behind."""
        with self.db:
            yield self.db

    def has_all(self, keys: Iterable[str]) -> bool:
        keys = list(keys)
        if not keys:
            return True
        found = 0
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            q = f"SELECT COUNT(*) FROM cells WHERE key IN ({','.join('?' * len(chunk))})"
            found += self.db.execute(q, chunk).fetchone()[0]
        return found == len(keys)

    def put_cell(self, con: sqlite3.Connection, row: dict[str, Any], metrics: dict[str, float],
                 outcome: np.ndarray) -> None:
        cols = ["key", "unit", "suite", "task", "dataset", "attack", "attack_spec", "sources", "threat", "norm",
                "eps", "steps", "target", "defense", "seed", "metric", "value", "n", "grad_evals",
                "naive_grad_evals", "eval_seconds", "provenance"]
        values = [row[c] if c != "sources" else json.dumps(list(row["sources"])) for c in cols]
        con.execute(f"INSERT OR REPLACE INTO cells ({','.join(cols)}, outcome, created) "
                    f"VALUES ({','.join('?' * len(cols))}, ?, ?)", [*values, pack(outcome), time.time()])
        con.executemany("INSERT OR REPLACE INTO metrics (key, name, value) VALUES (?, ?, ?)",
                        [(row["key"], k, _real(v)) for k, v in metrics.items()])

    def put_unit(self, con: sqlite3.Connection, key: str, suite: str, grad_evals: int, forwards: int,
                 seconds: float, seed: int) -> None:
        con.execute("INSERT OR REPLACE INTO units VALUES (?, ?, ?, ?, ?, ?)",
                    (key, suite, grad_evals, forwards, seconds, seed))

    def put_dataset(self, suite: str, fingerprint: str, labels: np.ndarray) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO datasets VALUES (?, ?, ?)", (suite, fingerprint, pack(labels)))

    def put_clean(self, suite: str, target: str, defense: str, fingerprint: str, outcome: np.ndarray) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO clean VALUES (?, ?, ?, ?, ?)",
                            (suite, target, defense, fingerprint, pack(outcome)))

    def put_provenance(self, suite: str, info: dict[str, Any]) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO provenance VALUES (?, ?)",
                            (suite, json.dumps(info, sort_keys=True, default=str)))

    def put_flags(self, flags: dict[tuple[str, str, str, str], list[str]]) -> None:
        """Replace the derived sanity flags (they are recomputed from the cells by every report)."""
        with self.db:
            self.db.execute("DELETE FROM flags")
            self.db.executemany("INSERT INTO flags VALUES (?, ?, ?, ?, ?)",
                                [(*key, f) for key, fs in flags.items() for f in fs])

    def flags(self) -> dict[tuple[str, str, str, str], list[str]]:
        out: dict[tuple[str, str, str, str], list[str]] = {}
        for suite, target, defense, threat, flag in self.db.execute("SELECT * FROM flags ORDER BY flag"):
            out.setdefault((suite, target, defense, threat), []).append(flag)
        return out

    def labels(self, suite: str, fingerprint: str) -> np.ndarray:
        row = self.db.execute("SELECT labels FROM datasets WHERE suite=? AND fingerprint=?",
                              (suite, fingerprint)).fetchone()
        return unpack(row[0])

    def clean_outcome(self, suite: str, target: str, defense: str, fingerprint: str) -> np.ndarray | None:
        row = self.db.execute("SELECT outcome FROM clean WHERE suite=? AND target=? AND defense=? AND fingerprint=?",
                              (suite, target, defense, fingerprint)).fetchone()
        return unpack(row[0]) if row else None

    def clean_for(self, cell: CellRow) -> np.ndarray:
        """The clean outcomes the cell's transfer metrics were computed against (same data, weights, purifier)."""
        info = json.loads(self.db.execute("SELECT provenance FROM cells WHERE key=?", (cell.key,)).fetchone()[0])
        key = info.get("clean", {}).get(f"{cell.target}|{cell.defense}")
        if key is not None:
            found = self.clean_outcome(cell.suite, cell.target, cell.defense, key)
            if found is not None:
                return found
        rows = self.db.execute("SELECT outcome FROM clean WHERE suite=? AND target=? AND defense=? AND "
                               "substr(fingerprint, 1, length(?)) = ?",
                               (cell.suite, cell.target, cell.defense, cell.dataset, cell.dataset)).fetchall()
        if len(rows) != 1:  # a store from before clean keys were recorded, with several weights versions
            raise RobustgridError(f"cannot tell which clean predictions of {cell.target!r} ({cell.defense}) belong "
                                  f"to cell {cell.key[:12]}; rerun the grid to record them")
        return unpack(rows[0][0])

    def provenance(self) -> dict[str, dict[str, Any]]:
        return {s: json.loads(i) for s, i in self.db.execute("SELECT suite, info FROM provenance")}

    def outcome(self, key: str) -> np.ndarray:
        return unpack(self.db.execute("SELECT outcome FROM cells WHERE key=?", (key,)).fetchone()[0])

    def cells(self) -> list[CellRow]:
        """Every stored cell with its metrics, in a stable order."""
        metrics: dict[str, dict[str, float]] = {}
        for key, name, value in self.db.execute("SELECT key, name, value FROM metrics"):
            metrics.setdefault(key, {})[name] = float("nan") if value is None else value
        rows = self.db.execute(
            "SELECT key, unit, suite, task, dataset, attack, attack_spec, sources, threat, norm, eps, steps, target,"
            " defense, seed, metric, value, n, grad_evals, naive_grad_evals, eval_seconds FROM cells"
            " ORDER BY suite, attack, threat, sources, target, defense, eps, steps").fetchall()
        out = []
        for r in rows:
            r = list(r)
            r[7] = tuple(json.loads(r[7]))
            r[16] = float("nan") if r[16] is None else r[16]
            out.append(CellRow(*r, metrics=metrics.get(r[0], {})))
        return out

    def units(self) -> list[tuple[str, str, int, int, float, int]]:
        return self.db.execute("SELECT key, suite, grad_evals, forwards, seconds, seed FROM units").fetchall()


def _real(v: Any) -> float | None:
    v = float(v)
    return None if v != v else v
