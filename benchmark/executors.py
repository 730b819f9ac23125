"""Executors run shards of generation units: ``local`` in this process, ``ray`` as Ray actors on a cluster.

Either way a shard is pure compute (``runner.run_shard``): it returns per-sample outcomes and costs, and the driver
alone writes them into the store, so the SQLite file has one writer however many workers there are.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from robustgrid.core import RobustgridError

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class RaySettings:
    """Where and how wide a Ray run is: cluster address (None starts a local one), workers and their resources."""

    address: str | None = None
    workers: int = 2
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    max_retries: int = 3          # a shard whose worker died is run again this many times
    in_flight: int = 2            # shards queued per worker, so a worker never waits for the driver


class LocalExecutor:
    """Runs shards one after another in this process, with the suites the driver prepared."""

    name = "local"

    def __init__(self, run: Callable[[Any], Any]) -> None:
        self._run = run

    def map(self, jobs: Iterable[Any]) -> Iterator[Any]:
        """Results in job order (the order also fixes nothing numeric: each shard carries its own seeds)."""
        for job in jobs:
            yield self._run(job)

    def close(self) -> None:
        return None


def check_reachable(address: str, timeout: float = 3.0) -> None:
    """Fail in seconds, in one line, when a ``host:port`` (or ``ray://host:port``) Ray address does not answer."""
    if address in ("auto", "local"):
        return
    host_port = address.split("://", 1)[-1]
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise RobustgridError(f"Ray address {address!r} is not host:port, ray://host:port or 'auto'")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise RobustgridError(f"Ray address {address} is unreachable ({type(exc).__name__}: {exc}); start a "
                              f"cluster with 'ray start --head' or leave ray.address out for a local one") from None


def import_ray() -> Any:
    """The ``ray`` module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise RobustgridError("executor 'ray' needs Ray: pip install 'robustgrid[ray]'") from None
    return ray


class RayExecutor:
    """Runs shards on Ray actors: each worker prepares the suites once (data, models on its device), then takes
    shards; a worker that dies is restarted and its shard retried; results come back as they finish."""

    name = "ray"

    def __init__(self, settings: RaySettings, make_worker: Callable[[], Any], worker_args: tuple[Any, ...]) -> None:
        ray = import_ray()
        if settings.address is not None:
            check_reachable(settings.address)
        self.ray, self.settings = ray, settings
        self._started = not ray.is_initialized()
        if self._started:
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
            if settings.address is None:
                kwargs["num_cpus"] = max(1, int(round(settings.workers * settings.num_cpus)))
                if settings.num_gpus:
                    kwargs["num_gpus"] = settings.workers * settings.num_gpus
            else:
                kwargs["address"] = settings.address
            ray.init(**kwargs)
        actor = ray.remote(make_worker()).options(num_cpus=settings.num_cpus, num_gpus=settings.num_gpus,
                                                   max_restarts=-1, max_task_retries=settings.max_retries)
        self.workers = [actor.remote(*worker_args) for _ in range(settings.workers)]

    def map(self, jobs: Iterable[Any]) -> Iterator[Any]:
        """Results in completion order; at most ``in_flight`` shards wait on each worker."""
        ray = self.ray
        pending = list(jobs)
        running: dict[Any, int] = {}
        load = [0] * len(self.workers)
        limit = self.settings.in_flight
        while pending or running:
            while pending and min(load) < limit:
                w = load.index(min(load))
                running[self.workers[w].run.remote(pending.pop(0))] = w
                load[w] += 1
            done, _ = ray.wait(list(running), num_returns=1)
            w = running.pop(done[0])
            load[w] -= 1
            try:
                yield ray.get(done[0])
            except ray.exceptions.RayError as exc:
                raise RobustgridError(f"a Ray shard failed after {self.settings.max_retries} retries: "
                                      f"{type(exc).__name__}: {str(exc).splitlines()[0]}") from None

    def close(self) -> None:
        for w in self.workers:
            self.ray.kill(w)
        if self._started:
            self.ray.shutdown()
