"""Trained weights: committed in the repo, else cached under $ROBUSTGRID_HOME, else trained once.

Every trained network (classifier, segmenter, IQA model, blind-spot purifier) is keyed by a hash of
its recipe, so a changed recipe is retrained instead of silently reusing stale weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustgrid.core import RobustgridError
from robustgrid.models.checkpoints import file_sha256, load_weights, save_weights

COMMITTED = Path(__file__).resolve().parent / "weights"


def robustgrid_home() -> Path:
    """Cache root: $ROBUSTGRID_HOME or ~/.cache/robustgrid."""
    return Path(os.environ.get("ROBUSTGRID_HOME", Path.home() / ".cache" / "robustgrid"))


def recipe_hash(recipe: dict[str, Any]) -> str:
    """Short stable hash of a JSON-able recipe (architecture, data, schedule, seed)."""
    blob = json.dumps(recipe, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class WeightsRecord:
    """What is known about a set of trained weights: where, which recipe, how good, how costly."""

    name: str
    path: Path
    recipe_hash: str
    sha256: str
    metrics: dict[str, float]
    train_seconds: float
    source: str  # "committed", "cache" or "trained"


def _read_record(name: str, path: Path, source: str) -> WeightsRecord | None:
    meta = path.with_suffix(".json")
    if not (path.is_file() and meta.is_file()):
        return None
    info = json.loads(meta.read_text())
    return WeightsRecord(name, path, info["recipe_hash"], info["sha256"], info.get("metrics", {}),
                         float(info.get("train_seconds", 0.0)), source)


def find_weights(name: str, recipe: dict[str, Any]) -> WeightsRecord | None:
    """Committed weights if their recipe hash matches, else cached ones, else None (stale = missing)."""
    h = recipe_hash(recipe)
    for path, source in ((COMMITTED / f"{name}.safetensors", "committed"),
                         (robustgrid_home() / "weights" / f"{name}-{h}.safetensors", "cache")):
        rec = _read_record(name, path, source)
        if rec is not None and rec.recipe_hash == h:
            if file_sha256(path) != rec.sha256:
                raise RobustgridError(f"weights {path} do not match their recorded sha256 (tampered or truncated)")
            return rec
    return None


def train_and_store(name: str, recipe: dict[str, Any], train: Callable[[], tuple[nn.Module, dict[str, float]]],
                    commit: bool = False) -> WeightsRecord:
    """Run ``train`` (returns module and test metrics) on one thread and save the weights with their record.

    One thread makes float sums run in one fixed order, so the same recipe gives bit-identical weights
    however the training was started (two threads gave a different scenes-fpn); parallel zoo training
    uses worker processes instead.
    """
    h = recipe_hash(recipe)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    start = time.perf_counter()
    try:
        module, metrics = train()
    finally:
        torch.set_num_threads(threads)
    seconds = time.perf_counter() - start
    path = COMMITTED / f"{name}.safetensors" if commit else robustgrid_home() / "weights" / f"{name}-{h}.safetensors"
    sha = save_weights(module, path)
    info = {"name": name, "recipe_hash": h, "recipe": recipe, "sha256": sha, "metrics": metrics,
            "train_seconds": round(seconds, 1)}
    path.with_suffix(".json").write_text(json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")
    return WeightsRecord(name, path, h, sha, metrics, seconds, "trained")


def load_or_train(name: str, recipe: dict[str, Any], build: Callable[[], nn.Module],
                  train: Callable[[], tuple[nn.Module, dict[str, float]]],
                  allow_train: bool = True) -> tuple[nn.Module, WeightsRecord]:
    """The module with its weights: committed or cached if fresh, otherwise trained and cached."""
    rec = find_weights(name, recipe)
    if rec is None:
        if not allow_train or os.environ.get("ROBUSTGRID_NO_TRAIN"):
            raise RobustgridError(f"no trained weights for {name!r}; run 'robustgrid zoo train {name}'")
        rec = train_and_store(name, recipe, train)
    module = build()
    load_weights(module, rec.path)
    return module, rec
