"""The query attacks against the strongest gradient attack per target, defense and budget (docs/blackbox.md).

Reads a results folder's store and prints one markdown table per suite with query attacks: the lowest primary
metric over the gradient attacks' final cells (white-box, BPDA, adaptive: every threat but transfer and blind),
then each query attack's value there and the queries per image it spent.
Run: ``python -m robustgrid.benchmark.experiments.query_tables results/default``.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from robustgrid.benchmark.curves import final_cells
from robustgrid.benchmark.experiments import run_main
from robustgrid.benchmark.records import CellRow
from robustgrid.benchmark.store import Store
from robustgrid.models.tasks import build_task

HEADER = ("| target | defense | eps | strongest gradient attack | value | score attack | value | queries/image "
          "| decision attack | value | queries/image |")


def _query(cells: list[CellRow]) -> list[str]:
    """The lowest-valued query cell's attack, value and queries per image, or dashes."""
    if not cells:
        return ["-", "-", "-"]
    c = min(cells, key=lambda c: c.value)
    return [f"{c.attack} ({c.threat})", f"{c.value:.3f}", f"{c.queries / c.n:.0f}"]


def tables(cells: list[CellRow]) -> str:
    """Markdown tables, one per suite, of its primary metric's final cells at every positive budget."""
    out = []
    by_suite: dict[str, list[CellRow]] = defaultdict(list)
    for c in final_cells(cells):
        if c.eps > 0 and c.metric == build_task(c.task).metric and c.value is not None:
            by_suite[c.suite].append(c)
    for suite, group in sorted(by_suite.items()):
        if all(c.access == "gradient" for c in group):
            continue  # a suite without query attacks has nothing to compare
        rows = defaultdict(lambda: defaultdict(list))
        for c in group:
            if c.access == "gradient" and c.threat in ("transfer", "blind"):
                continue
            rows[c.target, c.defense, c.eps][c.access].append(c)
        out += [f"### {suite} ({build_task(group[0].task).metric})", "", HEADER, "|" + "---|" * 11]
        for (target, defense, eps), by_access in sorted(rows.items()):
            grad = by_access.get("gradient", [])
            best = min(grad, key=lambda c: c.value) if grad else None
            strongest = ["-", "-"] if best is None else [f"{best.attack} ({best.threat})", f"{best.value:.3f}"]
            line = [target, defense, f"{eps:g}", *strongest, *_query(by_access.get("score", [])),
                    *_query(by_access.get("decision", []))]
            out.append("| " + " | ".join(line) + " |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path, help="a results folder holding cells.sqlite")
    args = ap.parse_args(argv)
    store = Store(args.results / "cells.sqlite")
    try:
        print(tables(store.cells()))
    finally:
        store.close()


if __name__ == "__main__":
    run_main(main)
