"""Rebuild every artefact of a run from its store alone: CSV, plots, leaderboard (Markdown + HTML), summary, and
one RobustBench-style JSON file per target.

The store is opened read-only and nothing is written back, so a report is a pure function of the store:
reporting an unchanged store twice gives byte-identical files.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import re
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import jinja2

from robustgrid.benchmark.bands import cell_bands
from robustgrid.benchmark.curves import CurveKey, envelopes, final_cells, min_norm_curves
from robustgrid.benchmark.leaderboard import (
    VERSION_KEYS,
    AttackRow,
    Row,
    build_leaderboard,
    clean_values,
    threat_order,
    worst_case,
)
from robustgrid.benchmark.perf import read_perf
from robustgrid.benchmark.plots import budget_plot, iteration_plot, transfer_heatmap
from robustgrid.benchmark.records import CELLS, CellRow, ProvenanceRow
from robustgrid.benchmark.stats import Interval
from robustgrid.benchmark.store import Store
from robustgrid.core import RobustgridError
from robustgrid.models.tasks import build_task

TEMPLATES = Path(__file__).with_name("templates")


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s).strip("_")


def _fmt(v: float | None) -> str:
    return "–" if v is None or v != v else f"{v:.3f}"


def _leaderboard_cells(r: Row) -> list[str]:
    """A ranked row as table text: rank, target, defense, clean metric, one value per column, extras, the worst,
    flags."""
    return [str(r.rank), r.target, r.defense, _fmt(r.clean), *map(_fmt, r.values), *map(_fmt, r.extras),
            _fmt(r.worst), r.flag_text]


def _flag_notes(r: Row, legend: Sequence[tuple[str, str]]) -> str:
    """What each flag of a row means, one line per flag, for the HTML table's tooltip ("" for an unflagged row)."""
    meaning = dict(legend)
    raised = sorted({name for f in r.flags for name in f.flags})
    return "\n".join(f"{name}: {meaning.get(name, 'see the sanity flags')}" for name in raised)


def _attack_cells(r: AttackRow) -> list[str]:
    return [r.threat, "+".join(r.sources), r.target, r.defense, *map(_fmt, r.values)]


def _templates() -> jinja2.Environment:
    """The leaderboard templates; HTML ones autoescape, Markdown ones do not."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                             autoescape=lambda name: (name or "").endswith(".html.j2"), trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(leaderboard_cells=_leaderboard_cells, attack_cells=_attack_cells, flag_notes=_flag_notes,
                       slug=_slug, g=lambda v: f"{v:g}", count=lambda v: f"{v:,}", stem=lambda name: Path(name).stem)
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


def write_plots(cells: list[CellRow], env: dict[str, float], out: Path,
                bands: Mapping[str, Interval] | None = None,
                min_norm: Mapping[CurveKey, tuple[list[float], list[float]]] | None = None) -> dict[str, list[str]]:
    """Budget and iteration curves per (suite, threat), with bootstrap ``bands`` by cell key and minimum-norm
    curves, and transfer heatmaps per attack; file names per suite."""
    heatmap_threats = threat_order().heatmaps
    jobs: list[tuple[str, Callable[..., Path | None], tuple, dict]] = []
    for suite in sorted({c.suite for c in cells}):
        sel = [c for c in cells if c.suite == suite]
        metric = sel[0].metric
        for threat in sorted({c.threat for c in sel}):
            stem = f"{_slug(suite)}_{threat}.png"
            jobs += [(suite, budget_plot, (sel, suite, threat, metric, out / f"budget_{stem}", env, bands),
                      {"min_norm": min_norm}),
                     (suite, iteration_plot, (sel, suite, threat, metric, out / f"iterations_{stem}", bands), {})]
        for attack in sorted({c.attack for c in sel if c.threat in heatmap_threats}):
            jobs.append((suite, transfer_heatmap,
                         (sel, suite, attack, metric, out / f"transfer_{_slug(suite)}_{_slug(attack)}.png"), {}))
    plots: dict[str, list[str]] = {suite: [] for suite, *_ in jobs}
    for (suite, *_), path in zip(jobs, _draw_all([job[1:] for job in jobs]), strict=True):
        if path:
            plots[suite].append(path.name)
    return plots


def _draw(job: tuple[Callable[..., Path | None], tuple, dict]) -> Path | None:
    fn, args, kwargs = job
    return fn(*args, **kwargs)


def _draw_all(jobs: list[tuple[Callable[..., Path | None], tuple, dict]]) -> list[Path | None]:
    """Draw the figures, in forked worker processes when there is more than one CPU (drawing is most of a
    report's time: about half a second per figure); in order, so the report is the same either way."""
    workers = min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 4)
    if workers < 2 or len(jobs) < 4 or "fork" not in multiprocessing.get_all_start_methods():
        return [_draw(job) for job in jobs]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        return list(pool.map(_draw, jobs, chunksize=2))


def _number(v: float | None) -> float | None:
    """A value for JSON: NaN (not evaluated or undefined) becomes null."""
    return None if v is None or v != v else v


def _suite_export(suite: str, target: str, final: list[CellRow], env: Mapping[str, float],
                  clean: Mapping[tuple[str, str, str], float], prov: Mapping[str, ProvenanceRow]) -> dict:
    """One suite's entry of a target's JSON: what was measured, clean and worst-case robust values, provenance."""
    sel = [c for c in final if c.suite == suite]
    mine = [c for c in sel if c.target == target]
    task = build_task(sel[0].task)
    defenses = sorted({c.defense for c in mine})
    budgets = sorted({c.eps for c in sel if c.eps > 0})
    threats = [t for t in threat_order().columns if any(c.threat == t for c in mine)]
    robust = {d: {th: {f"{e:g}": _number(worst_case(sel, env, th, e, target, d)) for e in budgets}
                  for th in threats if any(c.threat == th and c.defense == d for c in mine)} for d in defenses}
    provenance = []
    for pid in sorted({c.provenance for c in mine}):
        info = prov[pid].data()
        provenance.append({"id": pid, "seed": info.get("seed"), "config_sha256": info.get("config_sha256"),
                           "versions": info.get("versions", {}),
                           "weights_hash": info.get("targets", {}).get(target, {}).get("weights_hash")})
    return {"task": task.name, "dataset": sel[0].dataset, "n": sel[0].n, "norm": sel[0].norm,
            "metric": sel[0].metric, "higher_is_more_robust": True, "envelope": task.success_type,
            "clean": {d: _number(clean.get((suite, target, d))) for d in defenses}, "robust": robust,
            "provenance": provenance}


def target_exports(cells: list[CellRow], env: Mapping[str, float],
                   prov: Mapping[str, ProvenanceRow]) -> dict[str, dict]:
    """Per target, its results as data: one entry per suite it appears in, with the leaderboard's numbers."""
    final = final_cells(cells)
    clean = clean_values(final)
    out = {}
    for target in sorted({c.target for c in cells}):
        suites = sorted({c.suite for c in final if c.target == target})
        out[target] = {"target": target,
                       "suites": {s: _suite_export(s, target, final, env, clean, prov) for s in suites}}
    return out


def write_target_exports(exports: Mapping[str, dict], folder: Path) -> list[Path]:
    """``folder/<slug>.json`` per target, with sorted keys so that reports of one store are byte-identical."""
    slugs: dict[str, str] = {}
    for target in exports:
        slug = _slug(target)
        if slug in slugs:  # two names that slug alike would overwrite each other's file
            raise RobustgridError(f"targets {slugs[slug]!r} and {target!r} both export to targets/{slug}.json")
        slugs[slug] = target
    folder.mkdir(exist_ok=True)
    paths = []
    for slug, target in sorted(slugs.items()):
        path = folder / f"{slug}.json"
        path.write_text(json.dumps(exports[target], indent=2, sort_keys=True, allow_nan=False) + "\n",
                        encoding="utf-8")
        paths.append(path)
    return paths


def write_report(out: str | Path) -> list[Path]:
    """Write cells.csv, leaderboard.md, index.html, summary.json, PNG plots and targets/*.json into ``out``; the
    pages show ``out/perf.json`` (``make perf``'s ratios) where there is one."""
    out = Path(out)
    db = out / "cells.sqlite"
    if not db.is_file():
        raise RobustgridError(f"no results store at {db}; run 'robustgrid run CONFIG --out {out}' first")
    perf = read_perf(out)  # a bad perf.json fails before anything is written
    store = Store(db, readonly=True)
    try:
        cells = store.cells()
        if not cells:
            raise RobustgridError(f"the store {db} holds no cells yet")
        env = envelopes(store, cells)
        prov = store.provenance()
        write_csv(cells, env, prov, out / "cells.csv")
        plots = write_plots(cells, env, out, cell_bands(store, cells), min_norm_curves(store, cells))
        board = build_leaderboard(store, cells, env, prov, plots)
        exports = target_exports(cells, env, prov)
    finally:
        store.close()
    pages = _templates()
    for name, template in (("leaderboard.md", "leaderboard.md.j2"), ("index.html", "index.html.j2")):
        (out / name).write_text(pages.get_template(template).render(board=board, perf=perf), encoding="utf-8")
    (out / "summary.json").write_text(json.dumps(board.summary(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    targets = write_target_exports(exports, out / "targets")
    written = ["cells.csv", "leaderboard.md", "index.html", "summary.json"]
    return [out / n for n in written] + [out / p for ps in plots.values() for p in ps] + targets
