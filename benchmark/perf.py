"""The measured speed a leaderboard shows: ``make perf``'s curve ratios, copied beside a results store as
``perf.json`` (the keys ``tests/perf/test_curve_cost.py`` writes), so a reader sees what the run cost against
torchattacks run once per point on the machine that measured it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from robustgrid.core import RobustgridError

PERF_FILE = "perf.json"
SEARCHES = (("binary", "curve_search"), ("descending", "curve_search_descending"))


@dataclass(frozen=True)
class PerfRow:
    """One budget search against torchattacks run once per (budget, checkpoint)."""

    search: str
    grad_evals: float
    grad_ratio: float
    time_ratio: float


@dataclass(frozen=True)
class Perf:
    """The curve measurement: images, when and with how many threads, torchattacks' cost, one row per search."""

    images: int
    measured: str
    threads: int
    reference_grad_evals: float
    rows: tuple[PerfRow, ...]


def read_perf(folder: Path) -> Perf | None:
    """``folder/perf.json`` as shown on the leaderboard, or None where there is none."""
    path = folder / PERF_FILE
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        rows = tuple(PerfRow(name, float(raw[f"{key}_grad_evals_per_image"]), float(raw[f"{key}_grad_evals_ratio"]),
                             float(raw[f"{key}_time_ratio"])) for name, key in SEARCHES
                     if f"{key}_time_ratio" in raw)
        return Perf(int(raw["curve_search_images"]), str(raw.get("curve_measured_utc", "unknown")),
                    int(raw.get("curve_threads", 1)), float(raw["curve_torchattacks_grad_evals_per_image"]), rows)
    except json.JSONDecodeError as err:
        raise RobustgridError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}); write it with make perf "
                              "(cp .benchmarks/ratios.json)") from None
    except (KeyError, TypeError, ValueError) as err:
        raise RobustgridError(f"{path}: missing or non-numeric {err}; expected the keys make perf writes to "
                              ".benchmarks/ratios.json") from None
