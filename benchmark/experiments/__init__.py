"""Seed-method studies that print their tables (issue 12): each module runs with ``python -m`` and a few options."""

from __future__ import annotations

import sys
from collections.abc import Callable

from robustgrid.core import RobustgridError


def run_main(main: Callable[[list[str] | None], object], argv: list[str] | None = None) -> None:
    """Run a study's ``main``; a bad input is one line on stderr and exit status 2, as in the CLI, not a traceback."""
    try:
        main(argv)
    except RobustgridError as exc:
        print(f"{sys.argv[0].rsplit('/', 1)[-1]}: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
