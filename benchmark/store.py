"""SQLite store of cells: keyed by content hash, one transaction per generation unit, resumable.

Numbers are REAL/INTEGER columns; per-sample outcomes are compressed ``.npy`` blobs, so reports and
bootstrap intervals can be recomputed from the store alone. The tables are generated from the records
in ``records.py``; ``PRAGMA user_version`` holds their schema version.
"""

from __future__ import annotations

import io
import sqlite3
import zlib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import numpy as np

from robustgrid.benchmark.records import (
    CELLS,
    CLEAN,
    DATASETS,
    METRICS,
    NORMS,
    OUTCOMES,
    PROVENANCE,
    SCHEMA_VERSION,
    SHARDS,
    UNITS,
    CellRow,
    CleanRow,
    DatasetRow,
    MetricRow,
    NormRow,
    OutcomeRow,
    ProvenanceRow,
    ShardRow,
    UnitRow,
    schema_sql,
)
from robustgrid.benchmark.shards import ShardJob, ShardResult
from robustgrid.core import RobustgridError

__all__ = ["CellRow", "Store", "pack", "unpack"]


def pack(a: np.ndarray) -> bytes:
    """Compressed .npy bytes of an array (exact round trip)."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(a), allow_pickle=False)
    return zlib.compress(buf.getvalue(), 6)


def unpack(b: bytes) -> np.ndarray:
    return np.load(io.BytesIO(zlib.decompress(b)), allow_pickle=False)


class Store:
    """The grid's single source of truth: ``OUT/cells.sqlite``.

    ``readonly=True`` opens an existing store without any write (reports, stats); otherwise a missing store
    is created. A store of another schema version is refused before anything is written to it.
    """

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        if readonly and not self.path.is_file():
            raise RobustgridError(f"no results store at {self.path}")
        version, tables = _probe(self.path)
        if version == SCHEMA_VERSION - 1 == 4 and tables and not readonly:
            _upgrade_from_4(self.path)
            version = SCHEMA_VERSION
        if version != SCHEMA_VERSION and not (version == tables == 0 and not readonly):
            if tables == 0:
                raise RobustgridError(f"{self.path} is not a robustgrid store (it has no tables)")
            fix = ("run the grid on it once (robustgrid run), which upgrades it in place" if version == 4
                   else "re-run the grid into a new --out folder")
            raise RobustgridError(f"store {self.path} has schema version {version}, this robustgrid reads version "
                                  f"{SCHEMA_VERSION}; {fix}")
        if readonly:
            self.db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.path))
        if version == 0:
            self.db.executescript(f"BEGIN;\n{schema_sql()}PRAGMA user_version = {SCHEMA_VERSION};\nCOMMIT;")

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

    def put_cell(self, con: sqlite3.Connection, cell: CellRow, outcome: np.ndarray,
                 norms: np.ndarray | None = None) -> None:
        """A cell, its metrics, its per-sample outcomes and, for a minimum-norm attack, its per-sample perturbation
        norms (inside the unit's transaction ``con``)."""
        con.execute(CELLS.insert_sql(), CELLS.values(cell))
        con.executemany(METRICS.insert_sql(),
                        [METRICS.values(MetricRow(cell.key, k, v)) for k, v in cell.metrics.items()])
        con.execute(OUTCOMES.insert_sql(), OUTCOMES.values(OutcomeRow(cell.key, pack(outcome))))
        if norms is not None:
            con.execute(NORMS.insert_sql(), NORMS.values(NormRow(cell.key, pack(norms))))

    def put_unit(self, con: sqlite3.Connection, unit: UnitRow) -> None:
        con.execute(UNITS.insert_sql(), UNITS.values(unit))

    def put_shard(self, unit: str, index: int, payload: bytes) -> None:
        """A finished shard, in its own transaction: a run killed later resumes after it."""
        with self.db:
            self.db.execute(SHARDS.insert_sql(), SHARDS.values(ShardRow(unit, index, payload)))

    def shards(self, unit: str, jobs: dict[int, ShardJob]) -> list[ShardResult]:
        """The stored shards of ``unit`` whose index is one of ``jobs`` (index -> ShardJob), as ShardResults."""
        rows = self.db.execute(SHARDS.select_sql("unit = ?"), (unit,)).fetchall()
        found = [SHARDS.load(r) for r in rows]
        return [ShardResult.from_bytes(jobs[r.shard], r.payload) for r in found if r.shard in jobs]

    def drop_shards(self, con: sqlite3.Connection, unit: str) -> None:
        """Forget a unit's shards once its cells are written (inside that transaction)."""
        con.execute("DELETE FROM shards WHERE unit = ?", (unit,))

    def put_dataset(self, suite: str, fingerprint: str, labels: np.ndarray, groups: np.ndarray | None = None) -> None:
        if groups is not None and len(groups) != len(labels):
            raise RobustgridError(f"{len(groups)} group ids for {len(labels)} samples of suite {suite!r}")
        row = DatasetRow(suite, fingerprint, pack(labels), b"" if groups is None else pack(np.asarray(groups)))
        with self.db:
            self.db.execute(DATASETS.insert_sql(), DATASETS.values(row))

    def groups(self, suite: str, fingerprint: str) -> np.ndarray | None:
        """The samples' group ids (bootstrap draws whole groups), or None where the dataset has none."""
        row = self.db.execute("SELECT groups FROM datasets WHERE suite=? AND fingerprint=?",
                              (suite, fingerprint)).fetchone()
        return unpack(row[0]) if row and row[0] else None

    def put_clean(self, suite: str, target: str, defense: str, fingerprint: str, outcome: np.ndarray) -> None:
        with self.db:
            self.db.execute(CLEAN.insert_sql(),
                            CLEAN.values(CleanRow(suite, target, defense, fingerprint, pack(outcome))))

    def put_provenance(self, record: ProvenanceRow) -> None:
        with self.db:
            self.db.execute(PROVENANCE.insert_sql(), PROVENANCE.values(record))

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
        found = self.clean_outcome(cell.suite, cell.target, cell.defense, cell.clean_key)
        if found is None:
            raise RobustgridError(f"the store {self.path} lacks the clean predictions of {cell.target!r} "
                                  f"({cell.defense}) that cell {cell.key[:12]} was computed against")
        return found

    def provenance(self) -> dict[str, ProvenanceRow]:
        """Every provenance record by id."""
        return {r.id: r for r in map(PROVENANCE.load, self.db.execute(PROVENANCE.select_sql()))}

    def outcome(self, key: str) -> np.ndarray:
        return unpack(self.db.execute("SELECT outcome FROM outcomes WHERE key=?", (key,)).fetchone()[0])

    def norms(self, key: str) -> np.ndarray | None:
        """A minimum-norm attack cell's per-sample perturbation norms; None for any other cell."""
        row = self.db.execute("SELECT norms FROM norms WHERE key=?", (key,)).fetchone()
        return None if row is None else unpack(row[0])

    def cells(self) -> list[CellRow]:
        """Every stored cell with its metrics, in a stable order."""
        metrics: dict[str, dict[str, float]] = {}
        for m in map(METRICS.load, self.db.execute(METRICS.select_sql())):
            metrics.setdefault(m.key, {})[m.name] = m.value
        key = CELLS.index("key")
        return [CELLS.load(r, metrics=metrics.get(r[key], {})) for r in self.db.execute(CELLS.select_sql())]

    def units(self) -> list[UnitRow]:
        return [UNITS.load(r) for r in self.db.execute(UNITS.select_sql())]

    def drop_superseded(self, planned: Mapping[GridPoint, str]) -> int:
        """Delete the cells a newer plan replaces: same grid point (``cell_point``) as a planned cell, another key
        (its data, model weights or attack parameters changed), with their metrics, outcomes, norms and emptied
        units. Cells of points the plan no longer has are kept. Returns how many cells went."""
        stored = (CELLS.load(r, metrics={}) for r in self.db.execute(CELLS.select_sql()))  # no metrics needed
        stale = [c.key for c in stored if planned.get(cell_point(c), c.key) != c.key]
        with self.db as con:
            for i in range(0, len(stale), 500):
                chunk = stale[i:i + 500]
                marks = ",".join("?" * len(chunk))
                for table in ("metrics", "outcomes", "norms", "cells"):
                    con.execute(f"DELETE FROM {table} WHERE key IN ({marks})", chunk)
            con.execute("DELETE FROM units WHERE key NOT IN (SELECT DISTINCT unit FROM cells)")
        return len(stale)


class GridPoint(NamedTuple):
    """Where a cell sits in the grid, whatever made its numbers (its key adds the data, the models and the
    attack's parameters): the planner's cells and the stored ones are matched on it."""

    suite: str
    attack: str
    sources: tuple[str, ...]
    threat: str
    norm: str
    eps: float
    steps: int
    target: str
    defense: str


def cell_point(cell: CellRow) -> GridPoint:
    """A stored cell's grid point."""
    return GridPoint(cell.suite, cell.attack, tuple(cell.sources), cell.threat, cell.norm, cell.eps, cell.steps,
                     cell.target, cell.defense)


def _upgrade_from_4(path: Path) -> None:
    """Version 4 to 5: the datasets table gains its (empty) groups column; nothing else changed."""
    con = sqlite3.connect(str(path))
    try:
        con.executescript(f"BEGIN;\nALTER TABLE datasets ADD COLUMN groups BLOB;\n"
                          f"PRAGMA user_version = {SCHEMA_VERSION};\nCOMMIT;")
    finally:
        con.close()


def _probe(path: Path) -> tuple[int, int]:
    """(schema version, number of tables) of the store at ``path``; (0, 0) where there is none yet.

    Opened as immutable, so probing a store this code refuses (an old one in WAL mode) leaves no file behind.
    """
    if not path.is_file() or path.stat().st_size == 0:
        return 0, 0
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
    try:
        return (db.execute("PRAGMA user_version").fetchone()[0],
                db.execute("SELECT COUNT(*) FROM sqlite_master WHERE type='table'").fetchone()[0])
    except sqlite3.DatabaseError as exc:
        raise RobustgridError(f"{path} is not a robustgrid store ({exc})") from None
    finally:
        db.close()
