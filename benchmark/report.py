"""Rebuild every artefact of a run from its store alone: CSV, leaderboard (Markdown + HTML), plots."""

from __future__ import annotations

import csv
import html
import json
import re
from collections import defaultdict
from pathlib import Path

from robustgrid.benchmark.curves import envelopes, final_cells
from robustgrid.benchmark.plots import budget_plot, iteration_plot, transfer_heatmap
from robustgrid.benchmark.sanity import FLAGS, sanity_flags
from robustgrid.benchmark.stats import transfer_sections
from robustgrid.benchmark.store import CellRow, Store
from robustgrid.models.tasks import build_task

from robustgrid.core import RobustgridError

VERSION_KEYS = ("torch", "torchvision", "timm", "torchattacks", "pyiqa", "numpy", "git_commit")


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s).strip("_")


def _fmt(v: float | None) -> str:
    return "–" if v is None or v != v else f"{v:.3f}"


def write_csv(cells: list[CellRow], env: dict[str, float], prov: dict[str, dict], path: Path) -> None:
    """One row per cell with every metric, the envelope, cost, seed and library versions."""
    names = sorted({m for c in cells for m in c.metrics})
    cols = ["suite", "task", "dataset", "attack", "sources", "threat", "norm", "eps", "steps", "target", "defense",
            "metric", "value", "envelope", *names, "n", "grad_evals", "naive_grad_evals", "seed", *VERSION_KEYS, "key"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for c in cells:
            versions = prov.get(c.suite, {}).get("versions", {})
            w.writerow([c.suite, c.task, c.dataset, c.attack, "+".join(c.sources), c.threat, c.norm, c.eps, c.steps,
                        c.target, c.defense, c.metric, c.value, env.get(c.key, ""),
                        *[c.metrics.get(m, "") for m in names], c.n, c.grad_evals, c.naive_grad_evals, c.seed,
                        *[versions.get(k, "") for k in VERSION_KEYS], c.key])


def _worst(values: list[float]) -> float | None:
    values = [v for v in values if v == v]
    if not values:
        return None
    return min(values)  # every task's primary metric is higher = more robust


def leaderboard(store: Store, cells: list[CellRow], env: dict[str, float]) -> tuple[str, dict]:
    """Markdown leaderboard per suite; rows are (target, defense), ranked by worst-case robustness."""
    lines: list[str] = []
    final = final_cells(cells)
    clean: dict[tuple[str, str, str], float] = {}
    for c in final:
        if c.eps == 0:
            clean[c.suite, c.target, c.defense] = c.value
    flags = sanity_flags(cells, clean)
    store.put_flags(flags)
    summary: dict[str, dict] = {}
    for suite in sorted({c.suite for c in cells}):
        sel = [c for c in final if c.suite == suite]
        task, metric = sel[0].task, sel[0].metric
        eps_all = sorted({c.eps for c in sel if c.eps > 0})
        show_eps = eps_all[-2:] if len(eps_all) > 1 else eps_all
        threats = [t for t in ("whitebox", "blind", "bpda", "adaptive", "transfer") if any(c.threat == t for c in sel)]
        rows = []
        for target, defense in sorted({(c.target, c.defense) for c in sel}):
            row = {"target": target, "defense": defense, "clean": clean.get((suite, target, defense))}
            for th in threats:
                for e in show_eps:
                    row[th, e] = _worst([env.get(c.key, c.value) for c in sel if c.threat == th and c.eps == e
                                         and c.target == target and c.defense == defense])
            row["flags"] = sorted({f for th in threats for f in flags.get((suite, target, defense, th), [])})
            rows.append(row)
        rank_key = next(((th, show_eps[-1]) for th in ("adaptive", "whitebox", "bpda", "blind", "transfer")
                         if show_eps and any(r.get((th, show_eps[-1])) is not None for r in rows)), None)
        rows.sort(key=lambda r: (r.get(rank_key) is None, -(r.get(rank_key) or 0)))
        env_note = " (per-sample budget envelope)" if build_task(task).success_type else ""
        n = sel[0].n
        lines += [f"## {suite} ({task}, {sel[0].dataset.split(':')[0]}, n = {n})", "",
                  f"Worst case over attacks of **{metric}**{env_note} at the full step count; "
                  "higher = more robust. Columns: threat @ eps.", ""]
        head = ["rank", "target", "defense", f"clean {metric}"] + [f"{th} @{e:g}" for th in threats for e in show_eps]
        lines += ["| " + " | ".join(head + ["flags"]) + " |", "|" + "---|" * (len(head) + 1)]
        for i, r in enumerate(rows, 1):
            cells_txt = [str(i), r["target"], r["defense"], _fmt(r["clean"])]
            cells_txt += [_fmt(r.get((th, e))) for th in threats for e in show_eps]
            lines.append("| " + " | ".join(cells_txt + [", ".join(r["flags"]) or "ok"]) + " |")
        # per-attack breakdown at the largest budget
        lines += ["", f"Per attack at eps = {eps_all[-1]:g} ({metric}, plain curve):" if eps_all else "", ""]
        attacks = sorted({c.attack for c in sel})
        lines += ["| threat | source(s) | target | defense | " + " | ".join(attacks) + " |",
                  "|" + "---|" * (4 + len(attacks))]
        combos = sorted({(c.threat, c.sources, c.target, c.defense) for c in sel if c.eps > 0},
                        key=lambda k: (threats.index(k[0]), k[1], k[2], k[3]))
        for th, src, tgt, d in combos:
            vals = []
            for a in attacks:
                m = [c.value for c in sel if eps_all and c.eps == eps_all[-1]
                     and (c.threat, c.sources, c.target, c.defense, c.attack) == (th, src, tgt, d, a)]
                vals.append(_fmt(m[0]) if m else "–")
            lines.append(f"| {th} | {'+'.join(src)} | {tgt} | {d} | " + " | ".join(vals) + " |")
        actual = sum(u[2] for u in store.units() if u[1] == suite)
        naive = sum(c.naive_grad_evals for c in cells if c.suite == suite)
        lines += ["", f"Cost: {actual:,} gradient evaluations (forward+backward per image) against "
                  f"{naive:,} for generating every cell separately without early stop "
                  f"({naive / max(actual, 1):.1f}x saved).", ""]
        summary[suite] = {"grad_evals": actual, "naive_grad_evals": naive, "rows": len(rows)}
    lines += ["### Sanity flags", ""] + [f"- `{k}`: {v}" for k, v in FLAGS.items()] + [""]
    return "\n".join(lines), {"summary": summary, "flags": {"|".join(k): v for k, v in flags.items()}}


def _md_table_to_html(md: str) -> str:
    out, in_table = [], False
    for line in md.splitlines():
        if line.startswith("|"):
            cells = [html.escape(x.strip()) for x in line.strip("|").split("|")]
            if all(set(x) <= set("-") for x in cells):
                continue
            tag = "th" if not in_table else "td"
            out.append(("<table>" if not in_table else "") + "<tr>" + "".join(f"<{tag}>{x}</{tag}>" for x in cells)
                       + "</tr>")
            in_table = True
            continue
        if in_table:
            out.append("</table>")
            in_table = False
        if line.startswith("## ") or line.startswith("### "):
            level = 2 if line.startswith("## ") else 3
            out.append(f"<h{level}>{html.escape(line.lstrip('# '))}</h{level}>")
        elif line.strip():
            text = html.escape(line)
            text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
            text = re.sub(r"`(.+?)`", r"<code>\1</code>", text)
            out.append(f"<p>{text}</p>")
    if in_table:
        out.append("</table>")
    return "\n".join(out)


def write_report(out: str | Path) -> list[Path]:
    """Write cells.csv, leaderboard.md, index.html and PNG plots into ``out`` from ``out/cells.sqlite``."""
    out = Path(out)
    db = out / "cells.sqlite"
    if not db.is_file():
        raise RobustgridError(f"no results store at {db}; run 'robustgrid run CONFIG --out {out}' first")
    store = Store(db)
    try:
        cells = store.cells()
        if not cells:
            raise RobustgridError(f"the store {db} holds no cells yet")
        env = envelopes(store, cells)
        prov = store.provenance()
        written = [out / "cells.csv"]
        write_csv(cells, env, prov, written[0])
        md, extra = leaderboard(store, cells, env)
        md += transfer_sections(store, cells)
        plots: dict[str, list[Path]] = defaultdict(list)
        for suite in sorted({c.suite for c in cells}):
            sel = [c for c in cells if c.suite == suite]
            metric = sel[0].metric
            for threat in sorted({c.threat for c in sel}):
                stem = f"{_slug(suite)}_{threat}.png"
                for p in (budget_plot(cells, suite, threat, metric, out / f"budget_{stem}", env),
                          iteration_plot(cells, suite, threat, metric, out / f"iterations_{stem}")):
                    if p:
                        plots[suite].append(p)
            for attack in sorted({c.attack for c in sel if c.threat == "transfer"}):
                p = transfer_heatmap(cells, suite, attack, metric, out / f"transfer_{_slug(suite)}_{_slug(attack)}.png")
                if p:
                    plots[suite].append(p)
        versions = next(iter(prov.values()), {}).get("versions", {})
        seeds = sorted({c.seed for c in cells})
        header = ["# robustgrid leaderboard", "",
                  f"{len(cells)} cells; config seed {next(iter(prov.values()), {}).get('seed', '?')} "
                  f"(per-unit seeds derived from it: {len(seeds)} distinct); "
                  + ", ".join(f"{k} {versions.get(k, '?')}" for k in VERSION_KEYS) + ".", ""]
        body = md
        for suite, ps in plots.items():
            body += f"\n### Plots: {suite}\n\n" + "\n".join(f"![{p.stem}]({p.name})" for p in ps) + "\n"
        (out / "leaderboard.md").write_text("\n".join(header) + body)
        written.append(out / "leaderboard.md")
        imgs = "".join(f"<h3>{html.escape(s)}</h3>" + "".join(f'<img src="{p.name}" alt="{p.stem}">' for p in ps)
                       for s, ps in plots.items())
        page = ("<!doctype html><html><head><meta charset='utf-8'><title>robustgrid leaderboard</title><style>"
                "body{font-family:sans-serif;max-width:1300px;margin:2em auto;padding:0 1em}"
                "table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #ccc;"
                "padding:3px 7px;text-align:right}th{background:#eee}img{max-width:100%;margin:.5em 0;"
                "display:block}</style></head><body>" + _md_table_to_html("\n".join(header) + md) + imgs
                + "</body></html>")
        (out / "index.html").write_text(page)
        written.append(out / "index.html")
        (out / "summary.json").write_text(json.dumps(extra, indent=2, sort_keys=True) + "\n")
        written.append(out / "summary.json")
        return written + [p for ps in plots.values() for p in ps]
    finally:
        store.close()
