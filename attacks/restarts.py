"""Random restarts (METHODS.md 5.4): run an attack several times from fresh random starts, keep each sample's best.

Per sample the restart kept is the first that fools every source (success-type tasks), else the one with the
highest mean objective over the sources; its checkpoints are kept with it, so the curves stay one attack's.
Under early stop a sample already fooled is not attacked again. Costs add up over the restarts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from robustgrid.attacks.base import AttackResult, OnCheckpoint
from robustgrid.models.tasks import Task

RunOnce = Callable[..., AttackResult]


def score(task: Task, models: list[nn.Module], x_adv: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """(fools every source, mean objective over the sources) per sample."""
    with torch.no_grad():
        outs = [m(x_adv) for m in models]
        objective = torch.stack([task.objective(o, labels) for o in outs]).mean(0)
        fooled = torch.ones(len(x_adv), dtype=torch.bool, device=x_adv.device)
        for o in outs:
            success = task.success(o, labels)
            fooled &= success if success is not None else torch.zeros_like(fooled)
    return fooled, objective


def best_of_restarts(run_once: RunOnce, task: Task, models: list[nn.Module], x: Tensor, y: Tensor, restarts: int,
                     *, seed: int, checkpoints: Sequence[int] = (), on_checkpoint: OnCheckpoint | None = None,
                     early_stop: bool = False, **options: object) -> AttackResult:
    """``restarts`` runs of ``run_once`` with seeds seed, seed + 1, ...: per sample the best (module docstring)."""
    labels = task.attack_labels(models, x.detach(), y)
    result = AttackResult(x_adv=x.detach().clone(), checkpoints={k: x.detach().clone() for k in checkpoints},
                          grad_evals_at={k: 0 for k in checkpoints})
    fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    best = torch.full((len(x),), -torch.inf, device=x.device)
    for r in range(restarts):
        rows = (~fooled).nonzero().flatten() if early_stop and task.success_type else torch.arange(len(x))
        if not len(rows):
            break
        got = run_once(models, x[rows], y[rows], seed=seed + r, checkpoints=checkpoints, early_stop=early_stop,
                       **options)
        result.grad_evals += got.grad_evals
        result.forwards += got.forwards + len(rows) * len(models)  # the scoring forward of this restart
        new_fooled, objective = score(task, models, got.x_adv, labels[rows])
        better = (new_fooled & ~fooled[rows]) | ((new_fooled == fooled[rows]) & (objective > best[rows]))
        better &= ~fooled[rows]  # the first restart that fools a sample is kept
        take = rows[better]
        result.x_adv[take] = got.x_adv[better]
        for k in checkpoints:
            result.checkpoints[k][take] = got.checkpoints[k][better]
            result.grad_evals_at[k] += got.grad_evals_at[k]
        fooled[take] |= new_fooled[better]
        best[take] = objective[better]
    if on_checkpoint is not None:
        for k in checkpoints:
            on_checkpoint(k, result.checkpoints[k])
    return result
