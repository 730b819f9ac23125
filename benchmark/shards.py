"""Shards: the unit of work, of resumption and of distribution. A generation unit's samples are cut into runs of
whole batches; a shard's result is per-sample outcomes and costs, so every metric is computed from all of a cell's
samples and never averaged over shards."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ShardJob:
    """One shard of a unit: samples ``start:stop`` of suite ``suite``, whose first batch has global index ``batch``
    (batch seeds come from the global index, so how a unit is cut into shards changes no number)."""

    suite: int
    unit: str
    index: int
    count: int
    start: int
    stop: int
    batch: int


@dataclass
class ShardResult:
    """What a shard computed: per-sample outcomes of every evaluated cell and pair metric, and what it cost."""

    job: ShardJob
    outcomes: dict[tuple[float, int, str, str], np.ndarray]  # (eps, steps, target, defense) -> per-sample outcomes
    pairs: dict[tuple[float, int, str], np.ndarray]          # (eps, steps, metric) -> per-sample values (SSIM, ...)
    cost: dict[tuple[float, int], int]                       # gradient evaluations up to each (eps, checkpoint)
    grad_evals: int
    forwards: int
    seconds: float
    eval_seconds: float
    queries_at: dict[tuple[float, int], int] = field(default_factory=dict)  # model queries up to each checkpoint
    queries: int = 0
    probed: dict[float, int] = field(default_factory=dict)   # a budget search's samples probed at each eps

    def to_bytes(self) -> bytes:
        """The result as an ``.npz`` blob (arrays plus a JSON header; loads without unpickling)."""
        arrays = {f"o|{e!r}|{k}|{t}|{d}": v for (e, k, t, d), v in self.outcomes.items()}
        arrays.update({f"p|{e!r}|{k}|{name}": v for (e, k, name), v in self.pairs.items()})
        meta = {"cost": [[e, k, v] for (e, k), v in self.cost.items()], "grad_evals": self.grad_evals,
                "forwards": self.forwards, "seconds": self.seconds, "eval_seconds": self.eval_seconds,
                "queries_at": [[e, k, v] for (e, k), v in self.queries_at.items()], "queries": self.queries,
                "probed": [[e, v] for e, v in self.probed.items()]}
        buf = io.BytesIO()
        np.savez_compressed(buf, __meta__=np.array(json.dumps(meta)), **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, job: ShardJob, blob: bytes) -> ShardResult:
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            meta = json.loads(str(z["__meta__"]))
            outcomes, pairs = {}, {}
            for name in z.files:
                kind, _, rest = name.partition("|")
                if kind == "o":
                    e, k, t, d = rest.split("|", 3)
                    outcomes[float(e), int(k), t, d] = z[name]
                elif kind == "p":
                    e, k, metric = rest.split("|", 2)
                    pairs[float(e), int(k), metric] = z[name]
        return cls(job, outcomes, pairs, {(e, k): v for e, k, v in meta["cost"]}, meta["grad_evals"],
                   meta["forwards"], meta["seconds"], meta["eval_seconds"],
                   {(e, k): v for e, k, v in meta["queries_at"]}, meta["queries"], {e: v for e, v in meta["probed"]})


def plan_shards(suite: int, unit: str, n: int, shard_samples: int, batch_size: int) -> list[ShardJob]:
    """The shards of a unit over ``n`` samples: ``shard_samples`` each (a multiple of ``batch_size``)."""
    starts = list(range(0, n, shard_samples))
    return [ShardJob(suite, unit, i, len(starts), a, min(a + shard_samples, n), a // batch_size)
            for i, a in enumerate(starts)]
