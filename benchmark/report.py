"""Rebuild every artefact of a run from its store alone: CSV, plots, leaderboard (Markdown + HTML), summary.

The store is opened read-only and nothing is written back, so a report is a pure function of the store:
reporting an unchanged store twice gives byte-identical files.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Mapping
from pathlib import Path

import jinja2

from robustgrid.benchmark.curves import envelopes
from robustgrid.benchmark.leaderboard import VERSION_KEYS, AttackRow, Row, build_leaderboard, threat_order
from robustgrid.benchmark.plots import budget_plot, iteration_plot, transfer_heatmap
from robustgrid.benchmark.records import CELLS, CellRow, ProvenanceRow
from robustgrid.benchmark.store import Store
from robustgrid.core import RobustgridError

TEMPLATES = Path(__file__).with_name("templates")


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s).strip("_")


def _fmt(v: float | None) -> str:
    return "–" if v is None or v != v else f"{v:.3f}"


def _leaderboard_cells(r: Row) -> list[str]:
    """A ranked row as table text: rank, target, defense, clean metric, one value per column, flags."""
    return [str(r.rank), r.target, r.defense, _fmt(r.clean), *map(_fmt, r.values), r.flag_text]


def _attack_cells(r: AttackRow) -> list[str]:
    return [r.threat, "+".join(r.sources), r.target, r.defense, *map(_fmt, r.values)]


def _templates() -> jinja2.Environment:
    """The leaderboard templates; HTML ones autoescape, Markdown ones do not."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                             autoescape=lambda name: (name or "").endswith(".html.j2"), trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(leaderboard_cells=_leaderboard_cells, attack_cells=_attack_cells, slug=_slug,
                       g=lambda v: f"{v:g}", count=lambda v: f"{v:,}", stem=lambda name: Path(name).stem)
    return env


def write_csv(cells: list[CellRow], env: Mapping[str, float], prov: Mapping[str, ProvenanceRow],
              path: Path) -> None:
    """One row per cell: the record's CSV columns, the envelope, every metric, and the cell's library versions."""
    names = sorted({m for c in cells for m in c.metrics})
    columns = CELLS.csv_columns()
    versions = {pid: r.data().get("versions", {}) for pid, r in prov.items()}
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow([col.name for col in columns] + ["envelope", *names, *VERSION_KEYS])
        for c in cells:
            v = versions.get(c.provenance, {})
            w.writerow([col.to_csv(getattr(c, col.name)) for col in columns] + [env.get(c.key, "")]
                       + [c.metrics.get(m, "") for m in names] + [v.get(k, "") for k in VERSION_KEYS])


def write_plots(cells: list[CellRow], env: dict[str, float], out: Path) -> dict[str, list[str]]:
    """Budget and iteration curves per (suite, threat) and transfer heatmaps per attack; file names per suite."""
    plots: dict[str, list[str]] = {}
    heatmap_threats = threat_order().heatmaps
    for suite in sorted({c.suite for c in cells}):
        sel = [c for c in cells if c.suite == suite]
        metric = sel[0].metric
        written = []
        for threat in sorted({c.threat for c in sel}):
            stem = f"{_slug(suite)}_{threat}.png"
            written += [budget_plot(cells, suite, threat, metric, out / f"budget_{stem}", env),
                        iteration_plot(cells, suite, threat, metric, out / f"iterations_{stem}")]
        for attack in sorted({c.attack for c in sel if c.threat in heatmap_threats}):
            written.append(transfer_heatmap(cells, suite, attack, metric,
                                            out / f"transfer_{_slug(suite)}_{_slug(attack)}.png"))
        plots[suite] = [p.name for p in written if p]
    return plots


def write_report(out: str | Path) -> list[Path]:
    """Write cells.csv, leaderboard.md, index.html, summary.json and PNG plots into ``out`` from its store."""
    out = Path(out)
    db = out / "cells.sqlite"
    if not db.is_file():
        raise RobustgridError(f"no results store at {db}; run 'robustgrid run CONFIG --out {out}' first")
    store = Store(db, readonly=True)
    try:
        cells = store.cells()
        if not cells:
            raise RobustgridError(f"the store {db} holds no cells yet")
        env = envelopes(store, cells)
        prov = store.provenance()
        write_csv(cells, env, prov, out / "cells.csv")
        plots = write_plots(cells, env, out)
        board = build_leaderboard(store, cells, env, prov, plots)
    finally:
        store.close()
    pages = _templates()
    for name, template in (("leaderboard.md", "leaderboard.md.j2"), ("index.html", "index.html.j2")):
        (out / name).write_text(pages.get_template(template).render(board=board), encoding="utf-8")
    (out / "summary.json").write_text(json.dumps(board.summary(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    written = ["cells.csv", "leaderboard.md", "index.html", "summary.json"]
    return [out / n for n in written] + [out / p for ps in plots.values() for p in ps]
