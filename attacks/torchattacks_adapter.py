"""Run any torchattacks attack on classifier targets as ``torchattacks:<Name>`` in configs."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
from robustgrid.attacks.loop import AttackResult, GradientAttack
from torch import Tensor, nn

from robustgrid.core import RobustgridError


class _Counting(nn.Module):
    """Counts images through the model: with autograd on = a gradient evaluation, else a forward."""

    def __init__(self, model: nn.Module, result: AttackResult) -> None:
        super().__init__()
        self.model, self.result = model, result
        # a new Module starts in training mode, and torchattacks restores the mode it finds, so mirror the
        # wrapped model's mode: otherwise the target is left with BatchNorm in training mode
        self.train(model.training)

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled():
            self.result.grad_evals += len(x)
        else:
            self.result.forwards += len(x)
        return self.model(x)


class TorchattacksAttack(GradientAttack):
    """Adapter: our budget and seed in, torchattacks' own algorithm inside (classification only)."""

    def __init__(self, attack_name: str, *, norm: str | None = None, eps: float = 8 / 255, steps: int = 10,
                 task: str = "classification", **params: Any) -> None:
        import torchattacks

        cls = getattr(torchattacks, attack_name, None)
        if not (inspect.isclass(cls) and issubclass(cls, torchattacks.attack.Attack)):
            import difflib

            names = [n for n in dir(torchattacks) if inspect.isclass(getattr(torchattacks, n))]
            close = difflib.get_close_matches(attack_name, names, n=3)
            raise RobustgridError(f"unknown torchattacks attack {attack_name!r}"
                                  + (f"; did you mean {', '.join(close)}?" if close else ""))
        if task != "classification":
            raise RobustgridError(f"torchattacks:{attack_name} only attacks classifiers, not task {task!r}")
        norm = norm or ("l2" if "L2" in attack_name else "linf")
        self.cls, self.params = cls, dict(params)
        self.accepts = set(inspect.signature(cls.__init__).parameters) - {"self", "model"}
        unknown = set(self.params) - self.accepts
        if unknown:
            raise RobustgridError(f"torchattacks:{attack_name} has no parameter {sorted(unknown)[0]!r}; "
                                  f"valid: {', '.join(sorted(self.accepts))}")
        super().__init__(norm=norm, eps=eps, steps=steps, task=task)
        self.name = f"torchattacks:{attack_name}"

    def _build(self, model: nn.Module, eps: float, steps: int) -> Any:
        kw = dict(self.params)
        if "eps" in self.accepts:
            kw["eps"] = eps
        if "steps" in self.accepts:
            kw["steps"] = steps
        return self.cls(model, **kw)

    def run(self, models: nn.Module | Sequence[nn.Module], x: Tensor, y: Tensor, *, seed: int = 0,
            eps: float | None = None, checkpoints: Sequence[int] = (),
            on_checkpoint: Callable[[int, Tensor], Any] | None = None) -> AttackResult:
        """torchattacks has no iteration callback, so each checkpoint is a separate (counted) run."""
        models = [models] if isinstance(models, nn.Module) else list(models)
        if len(models) != 1:
            raise RobustgridError(f"{self.name} attacks a single model, got {len(models)} sources")
        self.task.check_batch(x, y)
        eps = self.eps if eps is None else float(eps)
        result = AttackResult(x_adv=x.detach().clone())
        if eps == 0 and "eps" in self.accepts:
            result.checkpoints = {k: x.detach().clone() for k in checkpoints}
            result.grad_evals_at = {k: 0 for k in checkpoints}
            return result
        model = _Counting(models[0], result)
        for k in sorted(set(checkpoints) | {self.steps}):
            if k != self.steps and "steps" not in self.accepts:
                continue
            with torch.random.fork_rng(devices=[]):  # torchattacks draws from the global RNG
                torch.manual_seed(int(seed))
                adv = self._build(model, eps, k)(x, y).detach()
            if k in checkpoints:
                result.checkpoints[k] = adv
                result.grad_evals_at[k] = result.grad_evals
                if on_checkpoint is not None:
                    on_checkpoint(k, adv)
            if k == self.steps:
                result.x_adv = adv
        return result
