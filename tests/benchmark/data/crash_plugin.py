"""Test plugin: the process that runs its second shard dies on the spot (os._exit) if the file ``armed`` lies beside
this module and ``killed`` does not yet, so the Ray executor's restart-and-retry path is exercised once. Only Ray
workers run shards when the executor is ``ray``; the driver merely imports this."""

from __future__ import annotations

import os
from pathlib import Path

from robustgrid.benchmark import runner

HERE = Path(__file__).resolve().parent
_real = runner.run_shard
_seen: list[object] = []


def run_shard(p, unit, job):  # noqa: ANN001, ANN201 (the runner's own signature)
    _seen.append(job)
    if len(_seen) == 2 and (HERE / "armed").exists() and not (HERE / "killed").exists():
        (HERE / "killed").write_text(str(os.getpid()))
        os._exit(1)  # a killed worker: no cleanup, no exception
    return _real(p, unit, job)


run_shard.__wrapped_real__ = _real  # type: ignore[attr-defined]
runner.run_shard = run_shard
