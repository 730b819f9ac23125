"""Run any torchattacks attack on classifier targets as ``torchattacks:<Name>`` in configs."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from robustgrid.attacks.base import Attack, AttackResult, Models, OnCheckpoint
from robustgrid.core import RobustgridError
from robustgrid.models.tasks import Task

NORM_NAMES = {"linf": "Linf", "l2": "L2"}  # our budget norms as torchattacks spells its ``norm`` parameter


class _Counting(nn.Module):
    """Counts images through the model: a gradient evaluation if the input needs its gradient, else a forward.

    (Autograd being on is not enough: Square, a query attack, predicts with it on and never differentiates.)"""

    def __init__(self, model: nn.Module, result: AttackResult) -> None:
        super().__init__()
        self.model, self.result = model, result
        # a new Module starts in training mode, and torchattacks restores the mode it finds, so mirror the
        # wrapped model's mode: otherwise the target is left with BatchNorm in training mode
        self.train(model.training)

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            self.result.grad_evals += len(x)
        else:
            self.result.forwards += len(x)
        return self.model(x)


def torchattacks_class(attack_name: str) -> type:
    """The torchattacks attack class called ``attack_name``; an unknown name lists the closest ones."""
    import torchattacks

    base = torchattacks.attack.Attack

    def is_attack(obj: object) -> bool:
        return inspect.isclass(obj) and issubclass(obj, base) and obj is not base

    cls = getattr(torchattacks, attack_name, None)
    if not is_attack(cls):
        names = [n for n in dir(torchattacks) if is_attack(getattr(torchattacks, n))]
        close = difflib.get_close_matches(attack_name, names, n=3)
        raise RobustgridError(f"unknown torchattacks attack {attack_name!r}"
                              + (f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(names)}"))
    return cls


class TorchattacksAttack(Attack):
    """Adapter: our budget, task and seed in, torchattacks' own algorithm inside (classifiers, one source).

    Our ``norm`` and per-run ``seed`` are passed on to attacks that take them (APGD, Square ...), unless the
    parameters set them. Early stop is not applied: torchattacks runs every sample for every step and has no
    hook to drop fooled samples, so a run's ``early_stop`` is ignored. It cannot average over a randomised
    model's draws either, so a run's ``eot_samples`` must be 1.
    """

    def __init__(self, attack_name: str, *, norm: str | None = None, eps: float = 8 / 255, steps: int = 10,
                 task: str | Task = "classification", **params: Any) -> None:
        cls = torchattacks_class(attack_name)
        super().__init__(norm=norm or ("l2" if "L2" in attack_name else "linf"), eps=eps, steps=steps, task=task)
        self.name = f"torchattacks:{attack_name}"
        if self.task.name != "classification":
            raise RobustgridError(f"{self.name} only attacks classifiers, not task {self.task.name!r}")
        self.cls, self.params = cls, dict(params)
        self.accepts = sorted(set(inspect.signature(cls.__init__).parameters) - {"self", "model"})
        for key in self.params:
            if key not in self.accepts:
                close = difflib.get_close_matches(key, self.accepts, n=2, cutoff=0.5)
                raise RobustgridError(f"{self.name} has no parameter {key!r}"
                                      + (f"; did you mean {', '.join(close)}?" if close
                                         else f"; valid: {', '.join(self.accepts)}"))

    def check_run(self, sources: int = 1, checkpoints: Sequence[int] = (), eot_samples: int = 1) -> None:
        """One source, no EOT, and checkpoints other than ``steps`` only if the attack takes a step count."""
        super().check_run(sources, checkpoints, eot_samples)
        self.check_single(sources, eot_samples, "attacks", "cannot average gradients over a randomised model's draws",
                          "set eot_samples = 1 or use a registered attack")
        early = sorted({k for k in checkpoints if k != self.steps})
        if early and "steps" not in self.accepts:
            raise RobustgridError(f"{self.name} has no steps parameter, so it has no iterates at checkpoints "
                                  f"{early}; give it no checkpoints below its steps ({self.steps})")

    def _build(self, model: nn.Module, eps: float, steps: int, seed: int) -> Any:
        kw = dict(self.params)
        if "eps" in self.accepts:
            kw["eps"] = eps
        if "steps" in self.accepts:
            kw["steps"] = steps
        if "norm" in self.accepts:
            kw["norm"] = NORM_NAMES[self.norm]
        if "seed" in self.accepts:
            kw.setdefault("seed", seed)  # APGD and Square reseed the global RNG from their own seed
        return self.cls(model, **kw)

    def run(self, models: Models, x: Tensor, y: Tensor, *, seed: int, eps: float | None = None,
            checkpoints: Sequence[int] = (), on_checkpoint: OnCheckpoint | None = None, early_stop: bool = False,
            eot_samples: int = 1) -> AttackResult:
        """torchattacks has no iteration callback, so each checkpoint is a separate (counted) run of that many
        steps from the same seed; ``early_stop`` is not applied (see the class docstring)."""
        models, eps, result = self.begin(models, x, y, eps, checkpoints, eot_samples)
        if eps == 0 and "eps" in self.accepts:
            result.checkpoints = {k: x.detach().clone() for k in checkpoints}
            result.grad_evals_at = {k: 0 for k in checkpoints}
            return result
        model = _Counting(models[0], result)
        for k in sorted(set(checkpoints) | {self.steps}):
            # torchattacks draws from the global generators: the CPU's, and the CUDA device's for a batch there
            with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
                torch.manual_seed(int(seed))
                adv = self._build(model, eps, k, int(seed))(x, y).detach()
            if k in checkpoints:
                result.checkpoints[k] = adv
                result.grad_evals_at[k] = result.grad_evals
                if on_checkpoint is not None:
                    on_checkpoint(k, adv)
            if k == self.steps:
                result.x_adv = adv
        return result
