"""The record schema: tables, INSERT, SELECT and CSV columns all follow the dataclass fields."""

from __future__ import annotations

import dataclasses
import math
import sqlite3

import numpy as np
import pytest

from robustgrid.benchmark.records import CELLS, TABLES, CellRow, ProvenanceRow, schema_sql


def _cell(**changes) -> CellRow:
    base = CellRow(suite="s", task="classification", dataset="fashion-mnist:test:ab", attack="pgd", access="gradient",
                   sources=("fmnist-resnet", "fmnist-mobilenet"), threat="transfer", norm="linf", eps=0.1, steps=4,
                   target="fmnist-vit", defense="none", metric="accuracy", value=0.25, n=32,
                   grad_evals=np.int64(64), naive_grad_evals=128, queries=0, seed=7, key="k1", unit="u1",
                   attack_spec="{}", eval_seconds=0.5, clean_key="ab|vit", provenance="p1", created=1.0,
                   metrics={"accuracy": 0.25, "attack_success_rate": 0.7})
    return dataclasses.replace(base, **changes)


def _db() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.executescript(schema_sql())
    return db


def test_every_table_has_exactly_its_record_fields_with_their_sql_types():
    db = _db()
    for table in TABLES:
        info = db.execute(f"PRAGMA table_info({table.name})").fetchall()  # cid, name, type, notnull, default, pk
        stored = [f.name for f in dataclasses.fields(table.record) if f.metadata.get("column", True)]
        assert [r[1] for r in info] == stored, table.name
        assert [r[1] for r in info if r[5]] == list(table.key), table.name
    types = {r[1]: (r[2], bool(r[3])) for r in db.execute("PRAGMA table_info(cells)")}
    assert types["sources"] == ("TEXT", True) and types["eps"] == ("REAL", True)
    assert types["steps"] == ("INTEGER", True) and types["value"] == ("REAL", False)  # NaN is stored as NULL
    assert "metrics" not in types
    refs = db.execute("PRAGMA foreign_key_list(cells)").fetchall()  # id, seq, table, from, to, ...
    assert [(r[2], r[3], r[4]) for r in refs] == [("provenance", "provenance", "id")]


def test_a_cell_round_trips_through_insert_and_select():
    db = _db()
    cell = _cell()
    db.execute(CELLS.insert_sql(), CELLS.values(cell))
    (row,) = db.execute(CELLS.select_sql()).fetchall()
    back = CELLS.load(row, metrics=cell.metrics)
    assert back == cell and type(back.grad_evals) is int and back.sources == ("fmnist-resnet", "fmnist-mobilenet")
    # the stored text of the sources is a JSON list, never a Python repr
    assert db.execute("SELECT sources FROM cells").fetchone()[0] == '["fmnist-resnet", "fmnist-mobilenet"]'


def test_nan_is_stored_as_null_and_read_back_as_nan():
    db = _db()
    db.execute(CELLS.insert_sql(), CELLS.values(_cell(value=math.nan)))
    assert db.execute("SELECT value FROM cells").fetchone()[0] is None
    assert math.isnan(CELLS.load(db.execute(CELLS.select_sql()).fetchone()).value)
    with pytest.raises(sqlite3.IntegrityError, match="NOT NULL constraint failed: cells.eps"):
        db.execute(CELLS.insert_sql(), CELLS.values(_cell(key="k2", eps=math.nan)))


def test_csv_columns_are_the_fields_not_marked_csv_false():
    hidden = {f.name for f in dataclasses.fields(CellRow) if not f.metadata.get("csv", True)}
    assert hidden == {"unit", "attack_spec", "eval_seconds", "clean_key", "provenance", "created"}
    names = [c.name for c in CELLS.csv_columns()]
    assert names[:6] == ["suite", "task", "dataset", "attack", "access", "sources"] and names[-1] == "key"
    assert names[names.index("grad_evals"):names.index("seed")] == ["grad_evals", "naive_grad_evals", "queries"]
    assert not hidden & set(names) and "metrics" not in names
    assert [c.to_csv(getattr(_cell(), c.name)) for c in CELLS.csv_columns()][5] == "fmnist-resnet+fmnist-mobilenet"


def test_provenance_id_hashes_the_suite_and_its_record():
    a = ProvenanceRow.of("fmnist", {"seed": 0, "versions": {"torch": "2"}})
    assert a == ProvenanceRow.of("fmnist", {"versions": {"torch": "2"}, "seed": 0})  # key order does not matter
    assert a.id != ProvenanceRow.of("scenes", {"seed": 0, "versions": {"torch": "2"}}).id
    assert a.id != ProvenanceRow.of("fmnist", {"seed": 1, "versions": {"torch": "2"}}).id
    assert a.data() == {"seed": 0, "versions": {"torch": "2"}}
