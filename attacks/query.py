"""What every query attack shares: a counting oracle in front of the model and the run around a search.

Query attacks never differentiate the model: the ``Oracle`` calls it under ``torch.no_grad()`` only, charges each
row to its image, refuses rows beyond an image's budget (``steps``) and keeps each image's best iterate at every
query checkpoint, so Square, SPSA and HopSkipJump share budget, checkpoints and counts.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from robustgrid.attacks.base import Attack, AttackResult, Models, OnCheckpoint, project_ball
from robustgrid.core import check_int
from robustgrid.models.tasks import Task


class Oracle:
    """One model behind a per-image query budget, with each image's best iterate at every checkpoint."""

    def __init__(self, model: nn.Module, x0: Tensor, budget: int, checkpoints: Sequence[int],
                 result: AttackResult) -> None:
        self.model, self.budget, self.result = model, budget, result
        self.spent = torch.zeros(len(x0), dtype=torch.long, device=x0.device)
        self.best = x0.clone()
        self.snaps = {k: x0.clone() for k in checkpoints}
        self.spent_at = {k: torch.zeros_like(self.spent) for k in checkpoints}

    def left(self, idx: Tensor) -> Tensor:
        """Queries images ``idx`` may still spend."""
        return self.budget - self.spent[idx]

    def __call__(self, x: Tensor, idx: Tensor) -> Tensor:
        """The model's outputs on rows ``x``, row i charged to image ``idx[i]`` (one row = one query)."""
        spent = self.spent + torch.bincount(idx, minlength=len(self.spent))
        if bool((spent > self.budget).any()):
            raise RuntimeError("a query attack asked for queries beyond an image's budget")  # a bug, not user error
        self.spent = spent
        self.result.queries += len(x)
        self.result.forwards += len(x)  # gradient-free passes, as the runner's cost totals count them
        for k, at in self.spent_at.items():
            within = spent <= k
            at[within] = spent[within]
        with torch.no_grad():
            return self.model(x)

    def keep(self, idx: Tensor, x: Tensor) -> None:
        """``x`` is the best iterate of images ``idx`` now: so also at every checkpoint they have not passed."""
        self.best[idx] = x
        for k, snap in self.snaps.items():
            within = self.spent[idx] <= k
            snap[idx[within]] = x[within]


class _WholeBatch(nn.Module):
    """The oracle as a module over the whole batch (row i = image i), for ``Task.attack_labels``."""

    def __init__(self, oracle: Oracle) -> None:
        super().__init__()
        self.oracle = oracle

    def forward(self, x: Tensor) -> Tensor:
        return self.oracle(x, torch.arange(len(x), device=x.device))


class QueryAttack(Attack):
    """An attack that only queries one model's outputs; ``steps`` is its query budget per image."""

    name = "query"
    access = "score"
    minimum_norm = False  # True: eps only judges the adversarial found (HopSkipJump), the search runs at eps 0 too

    def __init__(self, *, norm: str = "linf", eps: float = 8 / 255, steps: int = 1000,
                 task: str | Task = "classification") -> None:
        check_int(self.name, "steps (the query budget)", steps, 1)
        super().__init__(norm=norm, eps=eps, steps=steps, task=task)

    def check_run(self, sources: int = 1, checkpoints: Sequence[int] = (), eot_samples: int = 1) -> None:
        """One source model, no EOT draws, checkpoints within the query budget."""
        super().check_run(sources, checkpoints, eot_samples)
        self.check_single(sources, eot_samples, "queries", "is a query attack and takes no EOT draws")

    @abstractmethod
    def search(self, oracle: Oracle, x0: Tensor, y: Tensor, eps: float, gen: torch.Generator,
               stop: bool) -> Tensor | None:
        """Spend the oracle's budget on ``x0``, ``oracle.keep``-ing the best iterates (``stop``: early stop).

        A minimum-norm attack returns the per-image norm of the adversarial it found (inf: none)."""

    def evaluate(self, oracle: Oracle, x: Tensor, idx: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """The score objective on rows ``x`` (images ``idx``, labels ``y``), and which rows already succeed."""
        out = oracle(x, idx)
        ok = self.task.success(out, y) if self.task.success_type else None
        if ok is None:
            ok = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        return self.task.score_objective(out, y), ok

    def distance(self, x: Tensor, x0: Tensor) -> Tensor:
        """Per-image norm of ``x - x0`` in the attack's norm."""
        return (x - x0).flatten(1).norm(p=float("inf") if self.norm == "linf" else 2, dim=1)

    def project(self, x: Tensor, x0: Tensor, eps: float) -> Tensor:
        """Into the eps-ball around ``x0`` and into [0, 1] (the loop's rule, ``project_ball``)."""
        return project_ball(self.norm, x, x0, eps)

    def run(self, models: Models, x: Tensor, y: Tensor, *, seed: int, eps: float | None = None,
            checkpoints: Sequence[int] = (), on_checkpoint: OnCheckpoint | None = None, early_stop: bool = False,
            eot_samples: int = 1) -> AttackResult:
        """Search under no_grad; ``checkpoints[k]`` holds each image's best iterate after it spent k queries."""
        models, eps, result = self.begin(models, x, y, eps, checkpoints, eot_samples)
        x0 = x.detach()
        oracle = Oracle(models[0], x0, self.steps, checkpoints, result)
        if eps > 0 or self.minimum_norm:
            y = self.task.attack_labels([_WholeBatch(oracle)], x0, y)  # IQA's direction costs one query
            gen = torch.Generator(device=x.device).manual_seed(int(seed))
            if bool((oracle.spent < self.steps).all()):  # a budget of one may be spent on the direction already
                result.min_norms = self.search(oracle, x0, y, eps, gen, early_stop and self.task.success_type)
        result.x_adv, result.checkpoints = oracle.best, oracle.snaps
        if self.minimum_norm:  # an image is broken only by an adversarial within the budget
            result.x_adv = self.within(result.x_adv, x0, eps)
            result.checkpoints = {k: self.within(snap, x0, eps) for k, snap in result.checkpoints.items()}
        for k in sorted(result.checkpoints):
            result.queries_at[k] = int(oracle.spent_at[k].sum())
            result.grad_evals_at[k] = 0  # never a gradient
            if on_checkpoint is not None:
                on_checkpoint(k, result.checkpoints[k])
        return result

    def within(self, x: Tensor, x0: Tensor, eps: float) -> Tensor:
        """``x`` where its perturbation's norm is at most ``eps``, else the clean image."""
        inside = (self.distance(x, x0) <= eps).view(-1, *[1] * (x.dim() - 1))
        return torch.where(inside, x, x0)
