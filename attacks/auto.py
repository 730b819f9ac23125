"""``auto``: one fixed, parameter-free cascade per task, the strongest evaluation the project offers.

Classification (AutoAttack's order): APGD-CE, APGD-T (targeted DLR), then Square, each on the samples still robust.
Segmentation (SEA-style): APGD on the task objective and on the pixel margin, per sample the worse image mIoU.
IQA: APGD on the score objective, then Square, per sample the larger score shift. Square is another engineer's
attack, looked up in the registry by name when the cascade is built.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from robustgrid.attacks.apgd import APGD
from robustgrid.attacks.apgd_t import APGDT
from robustgrid.attacks.base import Attack, AttackResult, Models, OnCheckpoint
from robustgrid.attacks.loop import GradientAttack
from robustgrid.attacks.registry import ATTACKS, register_attack
from robustgrid.core import RobustgridError, check_int, declared_params
from robustgrid.models.iqa_task import quality
from robustgrid.models.tasks import Task

QUERY_ATTACK = "square"


@register_attack("auto")
class Auto(Attack):
    """The fixed per-task cascade: APGD-CE, APGD-T, Square; APGD losses for segmentation; APGD, Square for IQA."""

    name = "auto"

    def __init__(self, *, steps: int = 100, queries: int = 5000, n_target_classes: int = 9, norm: str = "linf",
                 eps: float = 8 / 255, task: str | Task = "classification") -> None:
        super().__init__(norm=norm, eps=eps, steps=steps, task=task)
        self.queries = check_int(self.name, "queries", queries, 1)
        self.n_target_classes = check_int(self.name, "n_target_classes", n_target_classes, 1)

    def check_run(self, sources: int = 1, checkpoints: Sequence[int] = (), eot_samples: int = 1) -> None:
        """Only the whole cascade has an answer: no checkpoints but ``steps``; every stage must be registered."""
        super().check_run(sources, checkpoints, eot_samples)
        early = sorted({k for k in checkpoints if k != self.steps})
        if early:
            raise RobustgridError(f"auto has no iterates at checkpoints {early}; its only checkpoint is steps "
                                  f"({self.steps})")
        self.stages()

    def stages(self) -> list[Attack]:
        """The cascade of this task, in order (Square built from the registry by name)."""
        budget = {"norm": self.norm, "eps": self.eps, "steps": self.steps, "task": self.task}
        if self.task.name == "segmentation":
            return [APGD(loss="task", **budget), APGD(loss="margin", **budget)]
        if self.task.name == "classification":
            first = [APGD(loss="ce", **budget), APGDT(n_target_classes=self.n_target_classes, **budget)]
        else:
            first = [APGD(loss="task", **budget)]
        return [*first, self.query_attack()]

    def query_attack(self) -> Attack:
        """Square with our norm and eps, ``queries`` per image; a one-line error when it is not registered."""
        if QUERY_ATTACK not in ATTACKS:
            raise RobustgridError(f"auto on {self.task.name} needs the {QUERY_ATTACK!r} attack, which is not "
                                  f"registered; registered: {', '.join(ATTACKS.names())}")
        params: dict[str, object] = {"norm": self.norm, "eps": self.eps, "steps": self.queries}
        hints, open_ended = declared_params(ATTACKS.entry(QUERY_ATTACK).fn)
        if "task" in hints or open_ended:
            params["task"] = self.task
        return ATTACKS.build(QUERY_ATTACK, **params)

    def run(self, models: Models, x: Tensor, y: Tensor, *, seed: int, eps: float | None = None,
            checkpoints: Sequence[int] = (), on_checkpoint: OnCheckpoint | None = None, early_stop: bool = False,
            eot_samples: int = 1) -> AttackResult:
        """Run the stages; success-type tasks pass on only the samples still robust, others keep the worst case."""
        models, eps, result = self.begin(models, x, y, eps, checkpoints, eot_samples)
        x0 = x.detach()
        stages = self.stages() if eps > 0 else []  # eps 0: nothing to attack and nothing paid, as in the loop
        robust = torch.ones(len(x0), dtype=torch.bool, device=x0.device)
        clean = self.outputs(models, x0, result) if stages else []
        damage = None
        if stages and self.task.success_type:  # the clean image already fools every source: nothing to attack
            robust = ~torch.stack([self.task.success(o, y) for o in clean]).all(0)
        elif stages:
            damage = self.damage(models, x0, y, clean, result)
        for s, stage in enumerate(stages):
            idx = robust.nonzero().flatten()
            if not len(idx):
                break
            res = stage.run(models, x0[idx], y[idx], seed=seed, eps=eps, early_stop=early_stop,
                            eot_samples=eot_samples)
            result.grad_evals += res.grad_evals
            result.forwards += res.forwards
            result.queries += res.queries
            if self.task.success_type:
                result.x_adv[idx] = res.x_adv
                if s < len(stages) - 1:
                    robust[idx[self.fooled(models, res.x_adv, y[idx], result)]] = False
                continue
            worse = self.damage(models, res.x_adv, y, clean, result)
            better = worse > damage
            result.x_adv[better], damage = res.x_adv[better], torch.maximum(worse, damage)
        GradientAttack.record(result, self.steps, result.x_adv, checkpoints, on_checkpoint)
        return result

    def outputs(self, models: list[nn.Module], x: Tensor, result: AttackResult) -> list[Tensor]:
        """Every source's outputs on ``x``: gradient-free forwards, counted."""
        with torch.no_grad():
            outs = [m(x) for m in models]
        result.forwards += len(x) * len(models)
        return outs

    def fooled(self, models: list[nn.Module], x: Tensor, y: Tensor, result: AttackResult) -> Tensor:
        return torch.stack([self.task.success(o, y) for o in self.outputs(models, x, result)]).all(0)

    def damage(self, models: list[nn.Module], x: Tensor, y: Tensor, clean: list[Tensor],
               result: AttackResult) -> Tensor:
        """Per-sample harm averaged over the sources: the score shift from ``clean`` (IQA), else 1 - the task metric
        of the image alone (segmentation: its mIoU)."""
        outs = self.outputs(models, x, result)
        if self.task.name == "iqa":
            return torch.stack([(quality(o) - quality(c)).abs() for o, c in zip(outs, clean, strict=True)]).mean(0)
        labels = y.cpu().numpy()
        harm = [[1 - self.task.metrics(self.task.outcome(o[i:i + 1], y[i:i + 1]), labels[i:i + 1])[self.task.metric]
                 for i in range(len(x))] for o in outs]
        return torch.as_tensor(np.nan_to_num(np.mean(harm, 0), nan=0.0), dtype=torch.float32, device=x.device)
