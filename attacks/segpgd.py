"""SegPGD (Gu et al., ECCV 2022): PGD whose loss shifts weight from correct to wrong pixels over time.

Step t of T weighs the cross-entropy of still-correct pixels by (1 - lambda_t) and of already-wrong
pixels by lambda_t, lambda_t = (t - 1) / (2T): early steps push the pixels that still resist.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from robustgrid.attacks.loop import GradientAttack
from robustgrid.attacks.registry import register_attack
from robustgrid.core import RobustgridError
from robustgrid.models.segmentation_task import IGNORE, check_label_ids
from robustgrid.models.tasks import Task

LABEL_TASKS = ("segmentation", "classification")  # tasks whose outputs are class logits


@register_attack("segpgd", tasks=LABEL_TASKS)
class SegPGD(GradientAttack):
    """SegPGD: PGD with the correct/wrong pixel re-weighting lambda_t = (t-1)/(2T) (Gu et al. 2022)."""

    name = "segpgd"

    def __init__(self, *, task: str | Task = "segmentation", **params: object) -> None:
        super().__init__(task=task, **params)
        if self.task.name not in LABEL_TASKS:
            raise RobustgridError(f"segpgd needs class logits; task {self.task.name!r} is not one of "
                                  f"{', '.join(LABEL_TASKS)}")

    def objective(self, outputs: Tensor, y: Tensor, step: int) -> Tensor:
        """Per-sample weighted CE over valid pixels (a classifier's sample is its one 'pixel')."""
        check_label_ids(y, outputs.shape[1])
        lam = (step - 1) / (2 * self.steps)
        ce = F.cross_entropy(outputs, y, ignore_index=IGNORE, reduction="none")
        correct = outputs.argmax(1) == y
        weighted = (ce * ((1 - lam) * correct + lam * ~correct)).reshape(len(y), -1)
        valid = (y != IGNORE).reshape(len(y), -1).sum(1).clamp_min(1)
        return weighted.sum(1) / valid
