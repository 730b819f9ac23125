"""Matplotlib figures of the report: budget curves (plain, envelope, bootstrap bands), iteration curves, transfer
heatmaps; one legend per figure, below its panels, so no legend covers data."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from robustgrid.benchmark.curves import CurveKey, budget_curve, final_cells, iteration_curve, key_of  # noqa: E402
from robustgrid.benchmark.records import CellRow  # noqa: E402
from robustgrid.benchmark.stats import Interval  # noqa: E402
from robustgrid.benchmark.threats import get_threat  # noqa: E402

ENVELOPE_LABEL = "envelope (broken at any budget <= eps)"
BAND_LABEL = "bootstrap 95% band"
MIN_NORM_LABEL = "minimum-norm curve (every eps, from one run)"
FONT = {"title": 10, "label": 9, "tick": 8, "legend": 8}


def steps_axis(cells: Sequence[CellRow]) -> str:
    """The x-axis of an iteration curve: what its checkpoints count, a query attack's queries or iterations."""
    return "queries" if any(c.query_attack for c in cells) else "iterations"


def _grid(n: int, legend_rows: int) -> tuple[plt.Figure, np.ndarray]:
    """Up to three panels a row, with room below them for a figure legend of ``legend_rows`` rows."""
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(max(4.4 * cols, 7.0), 3.4 * rows + 0.28 * legend_rows + 0.5),
                             squeeze=False, layout="constrained")
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes


def _label(k: CurveKey) -> str:
    src = f" <- {'+'.join(k.sources)}" if get_threat(k.threat).cross_model else ""
    return f"{k.target}" + (f" +{k.defense}" if k.defense != "none" else "") + src


def _colours(keys: Sequence[CurveKey]) -> dict[str, str]:
    """One colour per curve label across every panel of a figure, so one legend serves them all."""
    return {label: f"C{i % 10}" for i, label in enumerate(sorted({_label(k) for k in keys}))}


def _band(ax: plt.Axes, x: Sequence[float], pts: Sequence[CellRow], bands: Mapping[str, Interval],
          colour: str) -> bool:
    """Shade the bootstrap interval of each point where every point has one (an error bar for a lone point, which
    has no band to shade); True if drawn."""
    got = [bands.get(c.key) for c in pts]
    if not got or any(iv is None for iv in got):
        return False
    low, high = [iv.low for iv in got], [iv.high for iv in got]
    if len(got) == 1:
        v = pts[0].value
        ax.errorbar(x, [v], yerr=[[v - low[0]], [high[0] - v]], color=colour, alpha=0.5, capsize=3, lw=1.2)
    else:
        ax.fill_between(x, low, high, color=colour, alpha=0.18, lw=0)
    return True


def _style(ax: plt.Axes, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=FONT["title"])
    ax.set_xlabel(xlabel, fontsize=FONT["label"])
    ax.set_ylabel(ylabel, fontsize=FONT["label"])
    ax.tick_params(labelsize=FONT["tick"])
    ax.grid(alpha=0.3)


def _legend(fig: plt.Figure, colours: Mapping[str, str], banded: bool, enveloped: bool,
            min_norm: bool = False) -> None:
    """One legend for the figure, below the panels: a line per curve, then what the line styles and shading mean."""
    handles = [Line2D([], [], color=c, marker="o", ms=4, label=label) for label, c in colours.items()]
    if enveloped:
        handles += [Line2D([], [], color="0.3", marker="o", ms=4, label="plain (attack run at each eps)"),
                    Line2D([], [], color="0.3", ls="--", lw=1.6, label=ENVELOPE_LABEL)]
    if min_norm:
        handles.append(Line2D([], [], color="0.3", ls=":", lw=1.6, label=MIN_NORM_LABEL))
    if banded:
        handles.append(Patch(color="0.3", alpha=0.18, label=BAND_LABEL))
    fig.legend(handles=handles, loc="outside lower center", ncols=_legend_columns(len(handles)),
               fontsize=FONT["legend"], frameon=False)


def _legend_columns(entries: int) -> int:
    return min(entries, 3)


def _legend_rows(entries: int) -> int:
    return -(-entries // _legend_columns(entries))


def budget_axis(ax: plt.Axes, norm: str, eps: Sequence[float], log: bool | None = None) -> None:
    """Log-scaled budgets for L2 (or when asked): symmetric-log, linear below the smallest positive eps, so that
    eps = 0 (the clean point) stays on the axis; ticks at the budgets measured."""
    positive = sorted({e for e in eps if e > 0})
    if not (norm == "l2" if log is None else log) or not positive:
        return
    ax.set_xscale("symlog", linthresh=positive[0], linscale=0.4)
    ax.set_xticks(sorted(set(eps)), [f"{e:g}" for e in sorted(set(eps))])
    ax.minorticks_off()


def _save(fig: plt.Figure | None, path: Path) -> Path | None:
    """Write a figure as PNG and free it; None (nothing written) for no figure."""
    if fig is None:
        return None
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def budget_figure(cells: list[CellRow], suite: str, threat: str, metric: str, envelope: Mapping[str, float],
                  bands: Mapping[str, Interval] | None = None, log_budget: bool | None = None,
                  min_norm: Mapping[CurveKey, tuple[list[float], list[float]]] | None = None) -> plt.Figure | None:
    """One panel per attack: metric vs eps at full steps with its bootstrap band; dashed: the budget envelope where
    defined; dotted steps: a minimum-norm attack's curve at every eps (``min_norm``); log budgets for L2 unless
    ``log_budget`` says otherwise. None without cells to draw."""
    final = [c for c in final_cells(cells) if c.suite == suite and c.threat == threat]
    if not final:
        return None
    bands = bands or {}
    attacks = sorted({c.attack for c in final})
    colours = _colours([key_of(c) for c in final])
    enveloped = any(c.key in envelope for c in final)
    min_norm = {k: v for k, v in (min_norm or {}).items() if k.suite == suite and k.threat == threat}
    banded = False
    fig, axes = _grid(len(attacks), _legend_rows(len(colours) + 2 * enveloped + bool(min_norm) + 1))
    for ax, attack in zip(axes.flat, attacks):
        for k in sorted({key_of(c) for c in final if c.attack == attack}, key=_label):
            eps, pts = budget_curve(cells, k)
            colour = colours[_label(k)]
            banded |= _band(ax, eps, pts, bands, colour)
            ax.plot(eps, [c.value for c in pts], marker="o", ms=3.5, lw=1.4, color=colour)
            env = [envelope.get(c.key) for c in pts]
            if all(v is not None for v in env):
                ax.plot(eps, env, ls="--", lw=1.6, color=colour)
            if k in min_norm:
                xs, ys = min_norm[k]
                top = max(eps)
                keep = [i for i, x in enumerate(xs) if x <= top]
                ax.step([xs[i] for i in keep] + [top], [ys[i] for i in keep] + [ys[keep[-1]]], where="post",
                        ls=":", lw=1.6, color=colour)
        _style(ax, f"{attack} ({threat})", f"eps ({final[0].norm})", metric)
        budget_axis(ax, final[0].norm, [c.eps for c in final], log_budget)
    _legend(fig, colours, banded, enveloped, bool(min_norm))
    fig.suptitle(f"{suite}: {metric} vs budget", fontsize=FONT["title"] + 1)
    return fig


def budget_plot(cells: list[CellRow], suite: str, threat: str, metric: str, path: Path,
                envelope: Mapping[str, float], bands: Mapping[str, Interval] | None = None,
                log_budget: bool | None = None,
                min_norm: Mapping[CurveKey, tuple[list[float], list[float]]] | None = None) -> Path | None:
    """:func:`budget_figure` as a PNG at ``path``; None when there is nothing to draw."""
    return _save(budget_figure(cells, suite, threat, metric, envelope, bands, log_budget, min_norm), path)


def iteration_figure(cells: list[CellRow], suite: str, threat: str, metric: str,
                     bands: Mapping[str, Interval] | None = None,
                     x_label: Callable[[Sequence[CellRow]], str] = steps_axis) -> plt.Figure | None:
    """One panel per attack: metric vs checkpoints at the largest budget with its bootstrap band; each panel's
    x-axis is ``x_label`` of its cells (iterations, or queries for a query attack). None without cells."""
    sel = [c for c in cells if c.suite == suite and c.threat == threat]
    if not sel:
        return None
    bands = bands or {}
    eps = max(c.eps for c in sel)
    attacks = sorted({c.attack for c in sel})
    colours = _colours([key_of(c) for c in sel])
    banded = False
    fig, axes = _grid(len(attacks), _legend_rows(len(colours) + 1))
    for ax, attack in zip(axes.flat, attacks):
        mine = [c for c in sel if c.attack == attack]
        for k in sorted({key_of(c) for c in mine}, key=_label):
            steps, pts = iteration_curve(cells, k, eps)
            colour = colours[_label(k)]
            banded |= _band(ax, steps, pts, bands, colour)
            ax.plot(steps, [c.value for c in pts], marker="o", ms=3.5, lw=1.4, color=colour)
        _style(ax, f"{attack} ({threat}, eps={eps:g})", x_label(mine), metric)
        ax.set_xscale("log")
        checkpoints = sorted({c.steps for c in mine if c.eps == eps})
        ax.set_xticks(checkpoints, [str(k) for k in checkpoints])
        ax.minorticks_off()
    _legend(fig, colours, banded, enveloped=False)
    fig.suptitle(f"{suite}: {metric} vs {x_label(sel)}", fontsize=FONT["title"] + 1)
    return fig


def iteration_plot(cells: list[CellRow], suite: str, threat: str, metric: str, path: Path,
                   bands: Mapping[str, Interval] | None = None,
                   x_label: Callable[[Sequence[CellRow]], str] = steps_axis) -> Path | None:
    """:func:`iteration_figure` as a PNG at ``path``; None when there is nothing to draw."""
    return _save(iteration_figure(cells, suite, threat, metric, bands, x_label), path)


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
    return _save(fig, path)
