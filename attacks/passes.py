"""Restarts of a one-pass attack (APGD's restarts, APGD-T's target classes) on the samples still robust.

Each pass is one run of the shared loop on a copy of the attack (``attack.pass_copy``). On success-type tasks a
pass attacks only the samples no earlier pass (nor the clean image) fooled; elsewhere every pass attacks every
sample and each keeps the pass with the larger objective. Every forward pass this needs is counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from robustgrid.attacks.base import AttackResult, Models, OnCheckpoint, as_models
from robustgrid.attacks.loop import GradientAttack
from robustgrid.core import check_float

if TYPE_CHECKING:
    from robustgrid.attacks.apgd import APGD

SEED_STRIDE = 104729  # pass p of seed s draws from seed s + p * SEED_STRIDE


def score(attack: APGD, models: list[nn.Module], x: Tensor, y: Tensor, result: AttackResult) -> tuple[Tensor, Tensor]:
    """(objective averaged over the sources, fooled every source) of ``x``: gradient-free forwards, counted."""
    with torch.no_grad():
        outs = [m(x) for m in models]
    result.forwards += len(x) * len(models)
    values = torch.stack([attack.objective(o, y, attack.steps) for o in outs]).mean(0)
    if not attack.task.success_type:
        return values, torch.zeros(len(x), dtype=torch.bool, device=x.device)
    return values, torch.stack([attack.success(o, y) for o in outs]).all(0)


def run_passes(attack: APGD, models: Models, x: Tensor, y: Tensor, *, seed: int, eps: float | None,
               checkpoints: Sequence[int], on_checkpoint: OnCheckpoint | None, early_stop: bool,
               eot_samples: int) -> AttackResult:
    """Run ``attack.passes()`` in turn and merge them; checkpoints below ``steps`` need a single pass."""
    models = as_models(models)
    attack.check_run(len(models), checkpoints, eot_samples)
    passes = attack.passes()
    early = sorted({k for k in checkpoints if k != attack.steps})
    attack.task.check_batch(x, y)
    eps = attack.eps if eps is None else check_float(attack.name, "eps", eps, 0.0)
    x0 = x.detach()
    result = AttackResult(x_adv=x0.clone())
    if eps == 0:
        result.checkpoints = {k: x0.clone() for k in checkpoints}
        result.grad_evals_at = {k: 0 for k in checkpoints}
        return result
    with torch.no_grad():
        clean = [m(x0) for m in models]
    result.forwards += len(x0) * len(models)
    robust = torch.ones(len(x0), dtype=torch.bool, device=x0.device)
    if attack.task.success_type:
        robust = ~torch.stack([attack.task.success(o, y) for o in clean]).all(0)
    best: Tensor | None = None
    for p, setting in enumerate(passes):
        idx = robust.nonzero().flatten()
        if not len(idx):
            break
        sub = attack.pass_copy(setting, clean, idx)
        res = sub.run(models, x0[idx], y[idx], seed=seed + p * SEED_STRIDE, eps=eps,
                      checkpoints=early, early_stop=early_stop, eot_samples=eot_samples)
        for k in early:  # a single pass: its iterates, with the samples it did not attack at x0
            result.checkpoints[k] = x0.clone()
            result.checkpoints[k][idx] = res.checkpoints[k]
            result.grad_evals_at[k] = res.grad_evals_at[k]
            if on_checkpoint is not None:
                on_checkpoint(k, result.checkpoints[k])
        result.grad_evals += res.grad_evals
        result.forwards += res.forwards
        last = p == len(passes) - 1
        if attack.task.success_type:
            result.x_adv[idx] = res.x_adv
            if not last:
                fooled = score(sub, models, res.x_adv, sub.labels(models, x0[idx], y[idx]), result)[1]
                robust[idx[fooled]] = False
            continue
        values = None if last and best is None else score(sub, models, res.x_adv, sub.labels(models, x0, y), result)[0]
        if best is None:
            result.x_adv, best = res.x_adv, values
        else:
            better = values > best
            result.x_adv[better], best = res.x_adv[better], torch.maximum(values, best)
    for k in early:
        if k not in result.checkpoints:  # no sample was left to attack: every iterate is the clean image
            result.checkpoints[k], result.grad_evals_at[k] = x0.clone(), 0
            if on_checkpoint is not None:
                on_checkpoint(k, result.checkpoints[k])
    GradientAttack.record(result, attack.steps, result.x_adv, checkpoints, on_checkpoint)
    return result
