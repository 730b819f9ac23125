"""APGD-T (Croce & Hein 2020): APGD on the targeted DLR loss, one pass per top clean class in turn (AutoAttack)."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from robustgrid.attacks.apgd import APGD
from robustgrid.attacks.losses import dlr_targeted, least_classes
from robustgrid.attacks.registry import register_attack
from robustgrid.core import RobustgridError, check_choice, check_int
from robustgrid.models.tasks import Task


@register_attack("apgd-t", tasks=("classification",))
class APGDT(APGD):
    """APGD-T: targeted DLR towards each of the n_target_classes most likely wrong clean classes (Croce & Hein)."""

    name = "apgd-t"
    targets: Tensor | None = None  # the target class of each sample of a pass (set on the per-pass copies)

    def __init__(self, *, n_target_classes: int = 9, restarts: int = 1, norm: str = "linf", eps: float = 8 / 255,
                 steps: int = 100, task: str | Task = "classification") -> None:
        super().__init__(restarts=restarts, norm=norm, eps=eps, steps=steps, task=task)
        check_choice(self.name, "task", self.task.name, ("classification",))
        self.loss = "dlr-t"
        self.n_target_classes = check_int(self.name, "n_target_classes", n_target_classes, 1)

    def passes(self) -> list[dict[str, int]]:
        """Target rank 2 (the runner-up clean class) to n_target_classes + 1, each with its restarts."""
        return [{"rank": r, "restart": j} for r in range(2, self.n_target_classes + 2) for j in range(self.restarts)]

    def pass_copy(self, setting: dict[str, int], clean: list[Tensor], idx: Tensor) -> APGDT:
        """A one-pass copy aiming every sample at its ``rank``-th class by the sources' mean clean logits."""
        classes = clean[0].shape[1]
        if self.n_target_classes > classes - 1:
            raise RobustgridError(f"{self.name}: n_target_classes must be at most {classes - 1} (classes - 1), "
                                  f"got {self.n_target_classes}")
        sub = copy.copy(self)
        sub.single = True
        sub.targets = torch.stack(clean).mean(0).sort(1)[1][idx, -setting["rank"]]
        return sub

    def labels(self, models: list[nn.Module], x0: Tensor, y: Tensor) -> Tensor:
        """The true labels with each sample's target class as a second column."""
        return torch.stack([y, self.targets.to(y)], 1)

    def objective(self, outputs: Tensor, y: Tensor, step: int) -> Tensor:
        least_classes(self.name, self.loss, outputs, 4)
        return dlr_targeted(outputs, y[:, 0], y[:, 1])

    def success(self, outputs: Tensor, y: Tensor) -> Tensor:
        """Misclassified: any wrong class counts, as in AutoAttack (the target only steers the loss)."""
        return outputs.argmax(1) != y[:, 0]
