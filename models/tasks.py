"""Tasks own what differs between classification, segmentation and IQA: objective, outcome, metric.

The attack loop and the grid only talk to a Task, so a new task plugs in without touching them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from robustgrid.core import Registry, RobustgridError

TASKS: Registry[Task] = Registry("task")


class Task(ABC):
    """Objective to maximise, per-sample outcome and dataset-level metrics of one task.

    The primary ``metric`` is one where higher means more robust (accuracy, mIoU, IQA score stability): the
    leaderboard ranks, and the sanity checks compare, by it in that direction.
    """

    name: ClassVar[str]
    metric: ClassVar[str]                 # primary metric of curves and leaderboard (higher = more robust)
    success_type: ClassVar[bool] = False  # per-sample success exists: early stop and budget envelope apply
    transfer_metrics: ClassVar[tuple[str, ...]] = ()  # shown with intervals in the report's transfer tables
    columns: ClassVar[tuple[str, ...]] = ()  # further stored metrics the leaderboard shows, clean and worst case

    @abstractmethod
    def objective(self, outputs: Tensor, y: Tensor) -> Tensor:
        """Per-sample value the attacker maximises, shape (B,)."""

    def score_objective(self, outputs: Tensor, y: Tensor) -> Tensor:
        """Per-sample value a score-based query attack maximises: the objective here (classification: the margin)."""
        return self.objective(outputs, y)

    def success(self, outputs: Tensor, y: Tensor) -> Tensor | None:
        """Per-sample bool: is the attack already successful on this output? None if undefined."""
        return None

    @abstractmethod
    def outcome(self, outputs: Tensor, y: Tensor) -> np.ndarray:
        """Per-sample record kept in the store (prediction, score, confusion counts ...)."""

    @abstractmethod
    def metrics(self, outcome: np.ndarray, y: np.ndarray, clean: np.ndarray | None = None) -> dict[str, float]:
        """Dataset-level metrics from all per-sample outcomes (never a mean of batch means)."""

    def resampler(self, outcome: np.ndarray, y: np.ndarray, clean: np.ndarray | None = None,
                  names: Sequence[str] | None = None) -> Callable[[np.ndarray], dict[str, float]]:
        """``f(indices) -> metrics`` of the samples at ``indices`` (with repeats), for bootstrap intervals.

        The default re-runs ``metrics`` on the indexed samples; a task may precompute per-sample sums, or
        compute only ``names``, instead. Unknown ``names`` are an error listing the task's metrics.
        """
        def metrics(idx: np.ndarray) -> dict[str, float]:
            got = self.metrics(outcome[idx], y[idx], None if clean is None else clean[idx])
            check_metric_names(self.name, names, got)
            return got if names is None else {n: got[n] for n in names}

        return metrics

    def bootstrap(self, outcome: np.ndarray, y: np.ndarray, clean: np.ndarray | None, metric: str,
                  idx: np.ndarray) -> np.ndarray:
        """``metric`` on each row of sample indices ``idx`` (R, n): the bootstrap draws of one cell. Here one
        ``resampler`` call per row; a task may compute a metric for all rows at once (the same values)."""
        values = self.resampler(outcome, y, clean, names=[metric])
        return np.array([values(i)[metric] for i in idx], dtype=np.float64)

    def robust(self, outcome: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Per-sample bool 'still robust', for success-type tasks (budget envelope)."""
        raise NotImplementedError(f"task {self.name} has no per-sample success")

    def attack_labels(self, models: list, x: Tensor, y: Tensor) -> Tensor:
        """What the objective compares against during an attack (the labels here; IQA overrides)."""
        return y

    quantize: ClassVar[bool] = False  # round attacked images to 8 bits before scoring (IQA convention)

    def pair_metrics(self, x: Tensor, x_adv: Tensor) -> dict[str, np.ndarray]:
        """Per-sample measures of the perturbation itself (norms here; IQA adds SSIM)."""
        d = (x_adv - x).flatten(1)
        return {"linf": d.abs().amax(1).cpu().numpy(), "l2": d.norm(dim=1).cpu().numpy()}

    def check_target(self, target: object) -> None:
        """One-line error if a target lacks what this task needs (IQA: a declared score range)."""
        return None

    def check_batch(self, x: Tensor, y: Tensor | None = None) -> None:
        """One-line errors for images that are not float NCHW in [0, 1] or hold NaN."""
        check_images(x)


def check_metric_names(task: str, names: Sequence[str] | None, known: Iterable[str]) -> None:
    """One-line error for asked metric names that ``task`` does not compute, listing those it does."""
    known = list(known)
    unknown = [n for n in names or () if n not in known]
    if unknown:
        raise RobustgridError(f"unknown {task} metric(s) {', '.join(unknown)}; known: {', '.join(known)}")


def check_images(x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise RobustgridError(f"images must be a float tensor of shape (N, C, H, W), got {shape}")
    if not x.is_floating_point():
        raise RobustgridError(f"images must be floating point in [0, 1], got dtype {x.dtype}")
    if torch.isnan(x).any():
        raise RobustgridError("images contain NaN")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        raise RobustgridError(f"images must lie in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")


@TASKS.register("classification")
class Classification(Task):
    """Top-1 classification: maximise cross-entropy; outcome is the predicted label."""

    name = "classification"
    metric = "accuracy"
    success_type = True
    transfer_metrics = ("accuracy", "attack_success_rate")

    def objective(self, outputs: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(outputs, y, reduction="none")

    def score_objective(self, outputs: Tensor, y: Tensor) -> Tensor:
        """The margin, as Square and SPSA maximise it: bounded, and positive exactly when the label is wrong."""
        return margin(outputs, y)

    def success(self, outputs: Tensor, y: Tensor) -> Tensor:
        return outputs.argmax(1) != y

    def outcome(self, outputs: Tensor, y: Tensor) -> np.ndarray:
        return outputs.argmax(1).cpu().numpy().astype(np.int64)

    def metrics(self, outcome: np.ndarray, y: np.ndarray, clean: np.ndarray | None = None) -> dict[str, float]:
        out = {"accuracy": float(np.mean(outcome == y)) if len(y) else float("nan")}
        if clean is not None:
            ok = clean == y
            # attack success rate over the samples the target got right when clean
            out["attack_success_rate"] = float(np.mean(outcome[ok] != y[ok])) if ok.any() else float("nan")
        return out

    def bootstrap(self, outcome: np.ndarray, y: np.ndarray, clean: np.ndarray | None, metric: str,
                  idx: np.ndarray) -> np.ndarray:
        """Accuracy (and, with the clean outcomes, attack success rate) of every resample at once."""
        outcome, y = np.asarray(outcome), np.asarray(y)
        if idx.dtype == object:  # whole groups: draws of different sizes
            return super().bootstrap(outcome, y, clean, metric, idx)
        if metric == "accuracy" and idx.shape[1]:
            return (outcome == y)[idx].mean(1)
        if metric == "attack_success_rate" and clean is not None:
            ok = np.asarray(clean) == y
            right = ok[idx].sum(1)
            flipped = (ok & (outcome != y))[idx].sum(1)
            return np.where(right > 0, flipped / np.maximum(right, 1), np.nan)
        return super().bootstrap(outcome, y, clean, metric, idx)

    def robust(self, outcome: np.ndarray, y: np.ndarray) -> np.ndarray:
        return outcome == y

    def check_batch(self, x: Tensor, y: Tensor | None = None) -> None:
        check_images(x)
        if y is not None and (y.dim() != 1 or len(y) != len(x)):
            raise RobustgridError(f"labels must have shape ({len(x)},), got {tuple(y.shape)}")


def margin(logits: Tensor, y: Tensor) -> Tensor:
    """Per-sample margin: the best wrong logit minus the true one (> 0 exactly where the top-1 label is wrong)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], float("-inf")).amax(1)
    return others - true


def build_task(name: str) -> Task:
    """The task object for ``name`` (classification, segmentation, iqa)."""
    return TASKS.build(name)
