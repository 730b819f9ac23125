"""The contract every attack honours: its own parameters and budget at construction, run options per run.

The shared projected-gradient loop (``attacks/loop.py``) and the torchattacks adapter both implement it, so the
runner builds an attack once per generation unit and passes early stop, EOT draws and checkpoints to ``run``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from robustgrid.core import RobustgridError, check_choice, check_float, check_int
from robustgrid.models.tasks import Task, build_task

NORMS = ("linf", "l2")
ACCESS = ("gradient", "score", "decision")  # what an attack needs of a model, strongest first

Models = nn.Module | Sequence[nn.Module]
OnCheckpoint = Callable[[int, Tensor], Any]


@dataclass
class AttackResult:
    """Adversarial images plus the iterates at requested checkpoints and the cost paid."""

    x_adv: Tensor
    checkpoints: dict[int, Tensor] = field(default_factory=dict)
    grad_evals: int = 0   # forward+backward passes, summed over images and sources
    forwards: int = 0     # extra gradient-free forward passes (early-stop checks under a view, query attacks)
    grad_evals_at: dict[int, int] = field(default_factory=dict)  # cumulative cost at each checkpoint
    queries: int = 0      # model queries of a query attack (score or decision access), summed over images
    queries_at: dict[int, int] = field(default_factory=dict)  # cumulative queries at each query checkpoint
    min_norms: Tensor | None = None  # minimum-norm attacks: per-sample smallest adversarial norm found (inf: none)
    grad_evals_rows_at: dict[int, Tensor] = field(default_factory=dict)  # the loop's per-sample cost at each
    # recorded by the loop's own passes (``record_outcomes``): per checkpoint, each sample's outcome on the source
    # and whether it fools it
    outcomes_at: dict[int, np.ndarray] = field(default_factory=dict)
    fooled_at: dict[int, Tensor] = field(default_factory=dict)


def check_budget(what: str, norm: str, eps: float, steps: int) -> tuple[str, float, int]:
    """The budget checked by the core's one validation rule: a known norm, eps >= 0 and finite, steps >= 1."""
    return (check_choice(what, "norm", norm, NORMS), check_float(what, "eps", eps, 0.0),
            check_int(what, "steps", steps, 1))


def flat_norm(t: Tensor) -> Tensor:
    """Per-sample L2 norm, shaped to broadcast over NCHW."""
    return t.flatten(1).norm(p=2, dim=1).view(-1, *([1] * (t.dim() - 1)))


def project_ball(norm: str, xa: Tensor, x0: Tensor, eps: float | Tensor) -> Tensor:
    """``xa`` back into the ``norm`` ball of radius ``eps`` around ``x0`` and into [0, 1] (detached); ``eps`` is a
    float or one per sample shaped (B, 1, 1, 1)."""
    delta = xa - x0
    if norm == "linf":
        delta = torch.clamp(delta, -eps, eps) if isinstance(eps, float) else torch.max(torch.min(delta, eps), -eps)
    else:  # the floor only matters at a zero perturbation (0 / 0 at eps 0)
        delta = delta * torch.clamp(eps / flat_norm(delta).clamp_min(1e-12), max=1.0)
    return torch.clamp(x0 + delta, 0, 1).detach()


def as_models(models: Models) -> list[nn.Module]:
    """One target or an ensemble of sources, as a non-empty list."""
    models = [models] if isinstance(models, nn.Module) else list(models)
    if not models:
        raise RobustgridError("an attack needs at least one source model")
    return models


class Attack(ABC):
    """An attack under a budget (norm, eps, steps) on a task; what varies between runs is an argument of ``run``."""

    name = "attack"
    # "gradient": differentiates the model; "score": sees only its outputs; "decision": only the top-1 label.
    # A query attack's ``steps`` is its query budget per image and its checkpoints are query counts.
    access = "gradient"
    # A minimum-norm attack (FMN, HopSkipJump) returns each image's smallest adversarial found within the budget:
    # its perturbation norms give the robust-accuracy curve at every eps from one run at the largest budget.
    minimum_norm = False
    per_sample_eps: ClassVar[bool] = False  # whether ``run`` takes an eps tensor of shape (N,) (the shared loop)

    def __init__(self, *, norm: str = "linf", eps: float = 8 / 255, steps: int = 10,
                 task: str | Task = "classification") -> None:
        self.norm, self.eps, self.steps = check_budget(self.name, norm, eps, steps)
        self.task = build_task(task) if isinstance(task, str) else task

    @abstractmethod
    def run(self, models: Models, x: Tensor, y: Tensor, *, seed: int, eps: float | Tensor | None = None,
            checkpoints: Sequence[int] = (), on_checkpoint: OnCheckpoint | None = None, early_stop: bool = False,
            eot_samples: int = 1) -> AttackResult:
        """Attack ``x`` at budget ``eps`` (default: the constructor's; a tensor of shape (N,), one per sample, where
        ``per_sample_eps``), keeping the iterates at ``checkpoints``.

        ``early_stop`` freezes samples once they fool every source (success-type tasks); ``eot_samples``
        multiplies the gradient draws per step, to average over a randomised model's draws (EOT).
        """

    def __call__(self, models: Models, x: Tensor, y: Tensor, *, seed: int = 0) -> Tensor:
        """Adversarial images for ``x`` against ``models`` (one target or an ensemble of sources)."""
        return self.run(models, x, y, seed=seed).x_adv

    def draws_per_step(self, eot_samples: int = 1) -> int:
        """Gradient evaluations per source, image and step of a run without early stop (the naive cost's factor)."""
        return eot_samples

    def check_run(self, sources: int = 1, checkpoints: Sequence[int] = (), eot_samples: int = 1) -> None:
        """One-line error for run options this attack cannot honour; the runner calls it before any compute."""
        check_int(self.name, "eot_samples", eot_samples, 1)
        bad = [k for k in checkpoints if not 1 <= k <= self.steps]
        if bad:
            unit = "steps" if self.access == "gradient" else "query budget"
            raise RobustgridError(f"checkpoints must lie in 1..{self.steps} ({unit}), got {bad}")

    def check_single(self, sources: int, eot_samples: int, verb: str, why_no_eot: str,
                     fix: str = "set eot_samples = 1") -> None:
        """One-line errors for an attack of one model without EOT draws (query attacks, wrapped libraries)."""
        if sources != 1:
            raise RobustgridError(f"{self.name} {verb} a single model, got {sources} sources")
        if eot_samples != 1:
            raise RobustgridError(f"{self.name} {why_no_eot} (eot_samples={eot_samples}); {fix}")

    def begin(self, models: Models, x: Tensor, y: Tensor, eps: float | None, checkpoints: Sequence[int],
              eot_samples: int) -> tuple[list[nn.Module], float, AttackResult]:
        """A float-eps run's common start: the models as a list, run options and batch checked, the budget
        (the constructor's by default), and a result holding the clean images."""
        models = as_models(models)
        self.check_run(len(models), checkpoints, eot_samples)
        self.task.check_batch(x, y)
        eps = self.eps if eps is None else check_float(self.name, "eps", eps, 0.0)
        return models, eps, AttackResult(x_adv=x.detach().clone())
