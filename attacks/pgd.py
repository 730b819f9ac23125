"""PGD (Madry et al.) and its special cases I-FGSM and FGSM: the shared loop with default hooks."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from torch import Tensor

from robustgrid.attacks.base import AttackResult, Models, OnCheckpoint, as_models
from robustgrid.attacks.loop import GradientAttack
from robustgrid.attacks.registry import register_attack
from robustgrid.attacks.restarts import best_of_restarts
from robustgrid.core import RobustgridError, check_int


@register_attack("pgd")
class PGD(GradientAttack):
    """Projected gradient descent, Linf or L2, random start (Madry et al. 2018); ``restarts`` random restarts."""

    name = "pgd"

    def __init__(self, *, restarts: int = 1, **params: Any) -> None:
        super().__init__(**params)
        self.restarts = check_int(self.name, "restarts", restarts, 1)
        if self.restarts > 1 and not self.random_start:
            raise RobustgridError(f"{self.name}: restarts={restarts} needs random_start = true (each restart "
                                  "would repeat the same run)")

    def run(self, models: Models, x: Tensor, y: Tensor, *, seed: int, eps: float | None = None,
            checkpoints: Sequence[int] = (), on_checkpoint: OnCheckpoint | None = None, early_stop: bool = False,
            eot_samples: int = 1, record_outcomes: bool = False) -> AttackResult:
        """The loop's run, or with restarts > 1 each sample's best of that many (attacks.restarts; no recorded
        outcomes: ``records_outcomes`` is false there)."""
        if self.restarts == 1:
            return super().run(models, x, y, seed=seed, eps=eps, checkpoints=checkpoints,
                               on_checkpoint=on_checkpoint, early_stop=early_stop, eot_samples=eot_samples,
                               record_outcomes=record_outcomes)
        models = as_models(models)
        self.check_run(len(models), checkpoints, eot_samples)
        single = copy.copy(self)  # each restart is this attack with restarts = 1
        single.restarts = 1
        return best_of_restarts(single.run, self.task, models, x, y, self.restarts, seed=seed,
                                checkpoints=checkpoints, on_checkpoint=on_checkpoint, early_stop=early_stop,
                                eps=eps, eot_samples=eot_samples)

    def draws_per_step(self, eot_samples: int = 1) -> int:
        """Every restart pays the loop's draws again (the naive cost counts them all)."""
        return super().draws_per_step(eot_samples) * self.restarts


@register_attack("ifgsm")
class IFGSM(PGD):
    """I-FGSM / BIM: PGD without the random start (Kurakin et al. 2017)."""

    name = "ifgsm"

    def __init__(self, *, random_start: bool = False, **params: Any) -> None:
        super().__init__(random_start=random_start, **params)


@register_attack("fgsm")
class FGSM(PGD):
    """FGSM: one signed step of size eps from the clean image (Goodfellow et al. 2015)."""

    name = "fgsm"

    def __init__(self, *, steps: int = 1, rel_step_size: float | None = 1.0, random_start: bool = False,
                 **params: Any) -> None:
        super().__init__(steps=steps, rel_step_size=rel_step_size, random_start=random_start, **params)
