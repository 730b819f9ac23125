"""Tiny query attacks and a randomised, gradient-free purifier for the query-threat tests.

``register(monkeypatch)`` adds them to the attack and defense registries for one test; nothing registers on import,
so the registries other tests enumerate stay as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from robustgrid.attacks import ATTACKS, Attack, AttackResult
from robustgrid.attacks.base import Models, OnCheckpoint, as_models
from robustgrid.defenses import DEFENSES, Purifier


class RandomSearch(Attack):
    """Seeded random search over the eps-ball's corners: a proposal replaces the best one when it scores higher.

    Each step is one query per still-attacked image and source, so ``steps`` is the query budget per image.
    """

    name = "test-random-search"
    access = "score"

    def value(self, outputs: list[Tensor], y: Tensor) -> Tensor:
        """What a proposal is kept for: the task objective summed over the sources."""
        return torch.stack([self.task.objective(o, y) for o in outputs]).sum(0)

    def start_value(self, like: Tensor) -> Tensor:
        return torch.full((len(like),), -torch.inf, device=like.device)

    def run(self, models: Models, x: Tensor, y: Tensor, *, seed: int, eps: float | None = None,
            checkpoints: Sequence[int] = (), on_checkpoint: OnCheckpoint | None = None, early_stop: bool = False,
            eot_samples: int = 1) -> AttackResult:
        models = as_models(models)
        self.check_run(len(models), checkpoints, eot_samples)
        eps = self.eps if eps is None else eps
        gen = torch.Generator(device=x.device).manual_seed(int(seed))
        x0 = x.detach()
        res = AttackResult(x_adv=x0.clone())
        best, best_value = x0.clone(), self.start_value(x0)
        done = torch.zeros(len(x0), dtype=torch.bool, device=x0.device)
        for step in range(1, self.steps + 1):
            idx = (~done).nonzero().flatten()
            if eps > 0 and len(idx):
                noise = torch.randn(x0[idx].shape, generator=gen, device=x0.device).sign()
                proposal = torch.clamp(x0[idx] + eps * noise, 0, 1)
                outputs = [m(proposal) for m in models]
                res.queries += len(idx) * len(models)
                value = self.value(outputs, y[idx])
                better = value > best_value[idx]
                best[idx[better]], best_value[idx[better]] = proposal[better], value[better]
                if early_stop and self.task.success_type:
                    fooled = torch.stack([self.task.success(o, y[idx]) for o in outputs]).all(0)
                    done[idx[better & fooled]] = True
            if step in checkpoints:
                res.checkpoints[step] = best.clone()
                res.queries_at[step] = res.queries
                res.grad_evals_at[step] = 0
        res.x_adv = best
        return res


class FlipSearch(RandomSearch):
    """Random search that sees only the top-1 label: a proposal is kept only once it flips every source's label."""

    name = "test-flip-search"
    access = "decision"

    def value(self, outputs: list[Tensor], y: Tensor) -> Tensor:
        return torch.stack([self.task.success(o, y) for o in outputs]).all(0).float()

    def start_value(self, like: Tensor) -> Tensor:
        return torch.zeros(len(like), device=like.device)


class GradientProbe(RandomSearch):
    """Claims score access but differentiates its model: the oracle under a query threat must refuse it."""

    name = "test-gradient-probe"

    def run(self, models: Models, x: Tensor, y: Tensor, **kw) -> AttackResult:
        xg = x.detach().clone().requires_grad_(True)
        torch.autograd.grad(as_models(models)[0](xg).sum(), xg)
        return super().run(models, x, y, **kw)


class NoisyRound(Purifier):
    """Uniform noise, then 4-bit rounding: randomised and without a useful gradient (test only)."""

    differentiable = False
    randomized = True

    def purify(self, x: Tensor) -> Tensor:
        return torch.round(torch.clamp(x + (torch.rand_like(x) - 0.5) / 15, 0, 1) * 15) / 15


def register(monkeypatch) -> None:
    """Register the test attacks and ``test-noisy-round`` for the current test only."""
    monkeypatch.setattr(ATTACKS, "_entries", dict(ATTACKS._entries))
    monkeypatch.setattr(DEFENSES, "_entries", dict(DEFENSES._entries))
    for cls in (RandomSearch, FlipSearch, GradientProbe):
        ATTACKS.register(cls.name)(cls)
    NoisyRound.name = "test-noisy-round"
    DEFENSES.register("test-noisy-round")(NoisyRound)
