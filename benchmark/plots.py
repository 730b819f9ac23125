"""Matplotlib figures of the report: budget curves, iteration curves, transfer heatmaps."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from robustgrid.benchmark.curves import CurveKey, budget_curve, final_cells, iteration_curve, key_of  # noqa: E402
from robustgrid.benchmark.records import CellRow  # noqa: E402
from robustgrid.benchmark.threats import get_threat  # noqa: E402


def _grid(n: int) -> tuple[plt.Figure, np.ndarray]:
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes


def _label(k: CurveKey) -> str:
    src = f" <- {'+'.join(k.sources)}" if get_threat(k.threat).cross_model else ""
    return f"{k.target}" + (f" +{k.defense}" if k.defense != "none" else "") + src


def budget_plot(cells: list[CellRow], suite: str, threat: str, metric: str, path: Path,
                envelope: dict[str, float]) -> Path | None:
    """One panel per attack: metric vs eps at full steps; dashed = budget envelope where defined."""
    final = [c for c in final_cells(cells) if c.suite == suite and c.threat == threat]
    if not final:
        return None
    attacks = sorted({c.attack for c in final})
    fig, axes = _grid(len(attacks))
    for ax, attack in zip(axes.flat, attacks):
        keys = sorted({key_of(c) for c in final if c.attack == attack}, key=_label)
        for i, k in enumerate(keys):
            eps, pts = budget_curve(cells, k)
            line, = ax.plot(eps, [c.value for c in pts], marker="o", ms=3, label=_label(k), color=f"C{i % 10}")
            env = [envelope.get(c.key) for c in pts]
            if all(v is not None for v in env):
                ax.plot(eps, env, ls="--", lw=1, color=line.get_color())
        ax.set_title(f"{attack} ({threat})", fontsize=9)
        ax.set_xlabel("eps")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.suptitle(f"{suite}: {metric} vs budget" + (" (dashed: envelope)" if envelope else ""), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def checkpoint_axis(cells: list[CellRow]) -> str:
    """What the checkpoints of these cells count: a query attack's are queries, a gradient attack's iterations."""
    return "queries" if any(c.query_attack for c in cells) else "iterations"


def iteration_plot(cells: list[CellRow], suite: str, threat: str, metric: str, path: Path) -> Path | None:
    """One panel per attack: metric vs attack iterations (a query attack: vs queries) at the largest budget."""
    sel = [c for c in cells if c.suite == suite and c.threat == threat]
    if not sel:
        return None
    eps = max(c.eps for c in sel)
    attacks = sorted({c.attack for c in sel})
    axis = {a: checkpoint_axis([c for c in sel if c.attack == a]) for a in attacks}
    fig, axes = _grid(len(attacks))
    for ax, attack in zip(axes.flat, attacks):
        keys = sorted({key_of(c) for c in sel if c.attack == attack}, key=_label)
        for i, k in enumerate(keys):
            steps, values = iteration_curve(cells, k, eps)
            ax.plot(steps, values, marker="o", ms=3, label=_label(k), color=f"C{i % 10}")
        ax.set_title(f"{attack} ({threat}, eps={eps:g})", fontsize=9)
        ax.set_xlabel(axis[attack])
        ax.set_ylabel(metric)
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.suptitle(f"{suite}: {metric} vs {' and '.join(sorted(set(axis.values()), reverse=True))}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def transfer_heatmap(cells: list[CellRow], suite: str, attack: str, metric: str, path: Path,
                     fmt: Callable[[float], str] = lambda v: f"{v:.2f}") -> Path | None:
    """Source set x target at the largest budget, no defense; the diagonal is the white-box value."""
    final = [c for c in final_cells(cells) if c.suite == suite and c.attack == attack and c.defense == "none"]
    tr = [c for c in final if get_threat(c.threat).cross_model]
    if not tr:
        return None
    eps = max(c.eps for c in tr)
    targets = sorted({c.target for c in final if c.eps == eps})
    sources = sorted({c.sources for c in tr}, key=lambda s: (len(s), s))
    grid = np.full((len(sources), len(targets)), np.nan)
    for c in final:
        if c.eps != eps:
            continue
        if get_threat(c.threat).cross_model and c.sources in sources:
            grid[sources.index(c.sources), targets.index(c.target)] = c.value
        if get_threat(c.threat).white_box and (c.target,) in sources:
            grid[sources.index((c.target,)), targets.index(c.target)] = c.value
    fig, ax = plt.subplots(figsize=(1.4 + 1.3 * len(targets), 1.0 + 0.6 * len(sources)))
    im = ax.imshow(grid, cmap="viridis", aspect="auto")
    for (i, j), v in np.ndenumerate(grid):
        if v == v:
            ax.text(j, i, fmt(v), ha="center", va="center", fontsize=8, color="w" if v < np.nanmean(grid) else "k")
    ax.set_xticks(range(len(targets)), targets, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(sources)), ["+".join(s) for s in sources], fontsize=8)
    ax.set_xlabel("target")
    ax.set_ylabel("source(s)")
    ax.set_title(f"{suite}: {attack}, {metric} at eps={eps:g} (diagonal: white-box)", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
