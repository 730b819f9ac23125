"""The store's schema, written once: frozen dataclasses whose annotated fields generate each table's SQL.

A field's SQL type follows from its annotation (``str`` TEXT, ``int`` INTEGER, ``float`` REAL, ``bytes`` BLOB,
``tuple[str, ...]`` a JSON list in TEXT); ``field(metadata=...)`` adds ``nullable`` (NaN is stored as NULL),
``references`` (a foreign key), ``csv=False`` (kept out of ``cells.csv``) or ``column=False`` (not in the table).
"""

from __future__ import annotations

import hashlib
import json
import math
import typing
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    import numpy as np

    from robustgrid.benchmark.store import Store

SCHEMA_VERSION = 5  # PRAGMA user_version; 0: provenance JSON in every cell; 2: before shards were stored;
#                    3: before cells and units recorded the queries of query attacks; 4: before datasets kept the
#                    samples' groups (a version-4 store is upgraded in place when opened for writing)

_SQL_TYPES = {str: "TEXT", int: "INTEGER", float: "REAL", bytes: "BLOB", tuple: "TEXT"}


@dataclass(frozen=True)
class CellRow:
    """One stored cell: its grid point, metric value, cost, and what it was computed against.

    ``clean_key`` names the clean predictions its transfer metrics compare with; ``provenance`` is the id
    of the run's provenance record (versions, config hash, model hashes), stored once per suite. ``access`` is
    the attack's (gradient, score, decision): a query attack's ``steps`` are query counts, ``queries`` its cost.
    """

    suite: str
    task: str
    dataset: str
    attack: str
    access: str  # ACCESS: what the attack needs of a model (gradient, score, decision)
    sources: tuple[str, ...]
    threat: str
    norm: str
    eps: float
    steps: int
    target: str
    defense: str
    metric: str
    value: float = field(metadata={"nullable": True})
    n: int
    grad_evals: int
    naive_grad_evals: int
    queries: int  # model queries of a query attack up to ``steps``, summed over images and sources
    seed: int
    key: str
    unit: str = field(metadata={"csv": False})
    attack_spec: str = field(metadata={"csv": False})
    eval_seconds: float = field(metadata={"csv": False})
    clean_key: str = field(metadata={"csv": False})
    provenance: str = field(metadata={"csv": False, "references": "provenance(id)"})
    created: float = field(metadata={"csv": False})
    metrics: dict[str, float] = field(default_factory=dict, metadata={"column": False})

    @property
    def query_attack(self) -> bool:
        """Is its attack a query attack, whose checkpoints (``steps``) count queries, not iterations?"""
        return self.access != "gradient"

    def outcome(self, store: Store) -> np.ndarray:
        """The cell's per-sample outcomes, read from ``store``."""
        return store.outcome(self.key)


@dataclass(frozen=True)
class MetricRow:
    """One named metric of a cell (every metric the task computes, beyond the primary ``value``)."""

    key: str = field(metadata={"references": "cells(key)"})
    name: str
    value: float = field(metadata={"nullable": True})


@dataclass(frozen=True)
class OutcomeRow:
    """A cell's per-sample outcomes as a compressed ``.npy`` blob, kept apart so listing cells stays cheap."""

    key: str = field(metadata={"references": "cells(key)"})
    outcome: bytes


@dataclass(frozen=True)
class NormRow:
    """Per-sample perturbation norms (the suite's norm) of a minimum-norm attack's cell: a broken sample's norm is
    the smallest adversarial norm the attack found, so one run gives the robust-accuracy curve at every eps."""

    key: str = field(metadata={"references": "cells(key)"})
    norms: bytes


@dataclass(frozen=True)
class UnitRow:
    """One generation unit: its real gradient evaluations, forward passes, model queries and wall time."""

    key: str
    suite: str
    grad_evals: int
    forwards: int
    queries: int
    seconds: float
    seed: int


@dataclass(frozen=True)
class ShardRow:
    """A finished shard of a unit whose cells are not written yet: its outcomes and costs as an ``.npz`` blob.

    A run killed mid-unit resumes at the next missing shard; the rows go when the unit's cells are written.
    """

    unit: str
    shard: int
    payload: bytes


@dataclass(frozen=True)
class DatasetRow:
    """The labels of a suite's evaluated samples and, where they have any, their groups (the root each sample was
    cut from, e.g. an IQA patch's photograph; empty: none), compressed ``.npy`` blobs, by dataset fingerprint."""

    suite: str
    fingerprint: str
    labels: bytes
    groups: bytes = field(default=b"", metadata={"nullable": True})


@dataclass(frozen=True)
class CleanRow:
    """Clean outcomes of one (target, defense) on a suite's samples, keyed by what they depend on."""

    suite: str
    target: str
    defense: str
    fingerprint: str
    outcome: bytes


@dataclass(frozen=True)
class ProvenanceRow:
    """What produced a suite's cells (versions, config hash, model hashes) as JSON; ``id`` hashes it."""

    id: str
    suite: str
    info: str

    @classmethod
    def of(cls, suite: str, info: dict[str, Any]) -> ProvenanceRow:
        text = json.dumps(info, sort_keys=True, default=str)
        return cls(hashlib.sha256(f"{suite}\n{text}".encode()).hexdigest()[:16], suite, text)

    def data(self) -> dict[str, Any]:
        return json.loads(self.info)


R = TypeVar("R")


@dataclass(frozen=True)
class Column:
    """One table column generated from a dataclass field."""

    name: str
    kind: type
    nullable: bool
    references: str | None
    csv: bool

    def ddl(self) -> str:
        ref = f" REFERENCES {self.references}" if self.references else ""
        return f"{self.name} {_SQL_TYPES[self.kind]}{'' if self.nullable else ' NOT NULL'}{ref}"

    def to_sql(self, v: Any) -> Any:
        if self.kind is tuple:
            return json.dumps(list(v))
        if self.kind is float:
            v = float(v)
            return None if math.isnan(v) else v
        return int(v) if self.kind is int else v  # numpy integers do not bind

    def to_csv(self, v: Any) -> Any:
        return "+".join(v) if self.kind is tuple else v

    def from_sql(self, v: Any) -> Any:
        if self.kind is tuple:
            return tuple(json.loads(v))
        if self.kind is float:
            return math.nan if v is None else float(v)
        return v


@dataclass(frozen=True)
class Table(Generic[R]):
    """A table whose columns are the fields of ``record``: it writes the DDL, the INSERT and the SELECT."""

    name: str
    record: type[R]
    key: tuple[str, ...]
    order: tuple[str, ...] = ()

    @cached_property
    def columns(self) -> tuple[Column, ...]:
        hints = typing.get_type_hints(self.record)
        return tuple(Column(f.name, typing.get_origin(hints[f.name]) or hints[f.name],
                            f.metadata.get("nullable", False), f.metadata.get("references"),
                            f.metadata.get("csv", True))
                     for f in fields(self.record) if f.metadata.get("column", True))

    def create_sql(self) -> str:
        body = [c.ddl() for c in self.columns] + [f"PRIMARY KEY ({', '.join(self.key)})"]
        return f"CREATE TABLE IF NOT EXISTS {self.name} (\n    " + ",\n    ".join(body) + "\n)"

    def insert_sql(self) -> str:
        names = [c.name for c in self.columns]
        return f"INSERT OR REPLACE INTO {self.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"

    def select_sql(self, where: str = "") -> str:
        sql = f"SELECT {', '.join(c.name for c in self.columns)} FROM {self.name}"
        sql += f" WHERE {where}" if where else ""
        return sql + (f" ORDER BY {', '.join(self.order)}" if self.order else "")

    def values(self, record: R) -> tuple[Any, ...]:
        """The record as SQL parameters, in column order."""
        return tuple(c.to_sql(getattr(record, c.name)) for c in self.columns)

    def load(self, row: tuple[Any, ...], **extra: Any) -> R:
        """A record from a row of :meth:`select_sql`; ``extra`` fills the fields that are not columns."""
        return self.record(**{c.name: c.from_sql(v) for c, v in zip(self.columns, row, strict=True)}, **extra)

    def index(self, name: str) -> int:
        """The position of column ``name`` in a row of :meth:`select_sql`."""
        return [c.name for c in self.columns].index(name)

    def csv_columns(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.csv)


CELLS = Table("cells", CellRow, ("key",), order=("suite", "attack", "threat", "sources", "target", "defense", "eps",
                                               "steps"))
METRICS = Table("metrics", MetricRow, ("key", "name"))
OUTCOMES = Table("outcomes", OutcomeRow, ("key",))
NORMS = Table("norms", NormRow, ("key",))
UNITS = Table("units", UnitRow, ("key",), order=("suite", "key"))
SHARDS = Table("shards", ShardRow, ("unit", "shard"), order=("unit", "shard"))
DATASETS = Table("datasets", DatasetRow, ("suite", "fingerprint"))
CLEAN = Table("clean", CleanRow, ("suite", "target", "defense", "fingerprint"))
PROVENANCE = Table("provenance", ProvenanceRow, ("id",), order=("suite", "id"))
TABLES: tuple[Table[Any], ...] = (PROVENANCE, CELLS, METRICS, OUTCOMES, NORMS, UNITS, SHARDS, DATASETS, CLEAN)


def schema_sql() -> str:
    """Every table of the store, as one script."""
    return ";\n".join(t.create_sql() for t in TABLES) + ";\n"
