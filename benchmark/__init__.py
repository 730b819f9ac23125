"""The grid: configs, planning, the runner, the SQLite store and reports. Imports every other package."""

from robustgrid.benchmark.config import Config, load_config, parse_config
from robustgrid.benchmark.report import write_report
from robustgrid.benchmark.runner import run_grid

__all__ = ["Config", "load_config", "parse_config", "run_grid", "write_report"]
