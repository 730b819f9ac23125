"""The grid: configs, planning, the runner, the SQLite store and reports. Imports every other package."""

from benchmark.config import Config, load_config, parse_config
from benchmark.report import write_report
from benchmark.runner import run_grid

__all__ = ["Config", "load_config", "parse_config", "run_grid", "write_report"]
