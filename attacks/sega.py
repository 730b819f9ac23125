"""SEGA (Liu et al. 2025, reconstructed in METHODS.md 1.4): Signed Ensemble Gaussian transfer attack on NR-IQA.

Each source's gradient is Gaussian-smoothed by N noisy evaluations (the loop's ``samples`` with a
``view`` that adds sigma * noise, so the cost counter shows N per source per step), the sources are
ensembled with weights and signed (either placement of the sign, METHODS 1.4 step 2), and two filter
masks (step 5) delete perturbation in flat regions and where the sources disagree. Masks act every step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from robustgrid.attacks import register_attack
from robustgrid.attacks.loop import GradientAttack, flat_norm
from torch import Tensor

from robustgrid.core import RobustgridError

SIGN_PLACEMENTS = ("average-then-sign", "sign-then-average")
LUMA = (0.299, 0.587, 0.114)


def local_variance(x: Tensor, window: int) -> Tensor:
    """Variance of the luma (grey for 1-channel images) over a window x window box, reflect padding, (N,1,H,W)."""
    g = x if x.shape[1] == 1 else sum(w * x[:, c:c + 1] for c, w in enumerate(LUMA))
    pad = window // 2
    gp = F.pad(g, (pad, pad, pad, pad), mode="reflect")
    mean = F.avg_pool2d(gp, window, stride=1)
    return (F.avg_pool2d(gp * gp, window, stride=1) - mean * mean).clamp_min(0)


def visual_mask(x0: Tensor, window: int, threshold: float) -> Tensor:
    """M_vis: 1 where the clean image's local variance is >= threshold (texture hides noise), 0 in flat regions."""
    return (local_variance(x0, window) >= threshold).to(x0)


def agreement(grads: Sequence[Tensor], weights: Tensor) -> Tensor:
    """Weighted vote of the sources' gradient signs, sum_k w_k sign(g_k), entries in [-1, 1]."""
    return sum(w * g.sign() for w, g in zip(weights, grads))


def agreement_mask(grads: Sequence[Tensor], weights: Tensor, tau: float) -> Tensor:
    """M_sem: 1 where |sum_k w_k sign(g_k)| >= tau (the sources agree on the sign), else 0."""
    return (agreement(grads, weights).abs() >= tau).to(grads[0])


class SEGA(GradientAttack):
    """Gaussian-smoothed, weighted, signed source ensemble with visual and agreement masks (METHODS 1.4).

    sigma: noise scale in [0, 1] pixel units; samples: N noise draws per source per step; sign: where the
    sign goes; weights: per-source ensemble weights (uniform if None, normalised to sum 1); smooth/signed/
    vis_mask/sem_mask switch the four ingredients off for ablations; vis_threshold: local luma variance below
    which a pixel counts as flat; tau: least |weighted sign vote| kept. Default step size 1.25 eps / steps.
    """

    name = "sega"

    def __init__(self, *, sigma: float = 0.05, samples: int = 8, sign: str = "average-then-sign",
                 weights: Sequence[float] | None = None, smooth: bool = True, signed: bool = True,
                 vis_mask: bool = True, vis_window: int = 5, vis_threshold: float = 4e-4,
                 sem_mask: bool = True, tau: float = 0.5, random_start: bool = False, task: object = "iqa",
                 step_size: float | None = None, rel_step_size: float | None = None, steps: int = 10,
                 **params: object) -> None:
        if not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma <= 0:
            raise RobustgridError(f"sega sigma must be a finite number > 0, got {sigma!r}")
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise RobustgridError(f"sega samples (noise draws N) must be an integer >= 1, got {samples!r}")
        if sign not in SIGN_PLACEMENTS:
            raise RobustgridError(f"unknown sign placement {sign!r}; valid: {', '.join(SIGN_PLACEMENTS)}")
        if not isinstance(vis_window, int) or vis_window < 1 or vis_window % 2 == 0:
            raise RobustgridError(f"vis_window must be an odd integer >= 1, got {vis_window!r}")
        if not 0 <= vis_threshold < math.inf:
            raise RobustgridError(f"vis_threshold must be a finite number >= 0, got {vis_threshold!r}")
        if not 0 <= tau <= 1:
            raise RobustgridError(f"tau must lie in [0, 1], got {tau!r}")
        if weights is not None and (len(weights) == 0 or any(not w >= 0 for w in weights) or sum(weights) <= 0):
            raise RobustgridError(f"weights must be non-negative with a positive sum, got {list(weights)!r}")
        if step_size is None and rel_step_size is None and isinstance(steps, int) and steps >= 1:
            rel_step_size = 1.25 / steps  # METHODS 1.5 default alpha = 1.25 eps / T
        super().__init__(samples=samples if smooth else 1, random_start=random_start, task=task,
                         step_size=step_size, rel_step_size=rel_step_size, steps=steps, **params)
        self.sigma, self.sign, self.smooth, self.signed = float(sigma), sign, bool(smooth), bool(signed)
        self.weights = None if weights is None else [float(w) for w in weights]
        self.vis_mask, self.vis_window, self.vis_threshold = bool(vis_mask), vis_window, float(vis_threshold)
        self.sem_mask, self.tau = bool(sem_mask), float(tau)

    @property
    def transforms_input(self) -> bool:
        """Only the Gaussian smoothing changes what the sources see (sega-nosmooth's view is the identity)."""
        return self.smooth

    def view(self, x: Tensor, y: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        """x + sigma * u with u ~ N(0, I): one draw per call, so the loop's average over N calls is the MC estimate."""
        if not self.smooth:
            return x, y
        return x + self.sigma * torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype), y

    def source_weights(self, k: int, like: Tensor) -> Tensor:
        """The K ensemble weights, normalised to sum 1 (uniform when none were given)."""
        if self.weights is None:
            return torch.full((k,), 1.0 / k, dtype=like.dtype, device=like.device)
        if len(self.weights) != k:
            raise RobustgridError(f"sega has {len(self.weights)} weights but the attack has {k} sources")
        w = torch.tensor(self.weights, dtype=like.dtype, device=like.device)
        return w / w.sum()

    def ensemble(self, grads: list[Tensor], w: Tensor) -> Tensor:
        """Signed ensemble direction with entries in [-1, 1] (signed=False: L1-balanced mean, scaled to max |d| = 1)."""
        if not self.signed:
            d = sum(wk * g / g.abs().mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-30) for wk, g in zip(w, grads))
            return d / d.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-30)
        if self.sign == "average-then-sign":
            return sum(wk * g for wk, g in zip(w, grads)).sign()
        return agreement(grads, w)

    def combine(self, grads: list[Tensor], x0: Tensor) -> Tensor:
        """Ensemble direction times the filter masks M_vis (from the clean image) and M_sem (source agreement)."""
        w = self.source_weights(len(grads), grads[0])
        d = self.ensemble(grads, w)
        if self.vis_mask:
            d = d * visual_mask(x0, self.vis_window, self.vis_threshold)
        if self.sem_mask:
            d = d * agreement_mask(grads, w, self.tau)
        return d

    def direction(self, grad: Tensor, state: dict[str, Tensor], idx: Tensor) -> Tensor:
        """The combined direction is already bounded by 1 per entry (Linf); L2 normalises it."""
        if self.norm == "linf":
            return grad
        return grad / (flat_norm(grad) + 1e-10)


@register_attack("sega", tasks=("iqa",))
def sega(**params: object) -> SEGA:
    """SEGA: Gaussian-smoothed signed source ensemble with filter masks (Liu et al. 2025, METHODS 1.4)."""
    return SEGA(**params)


@register_attack("sega-nosmooth", tasks=("iqa",))
def sega_nosmooth(**params: object) -> SEGA:
    """SEGA ablation without Gaussian smoothing (one plain gradient per source per step)."""
    params.setdefault("smooth", False)
    return SEGA(**params)


@register_attack("sega-nosign", tasks=("iqa",))
def sega_nosign(**params: object) -> SEGA:
    """SEGA ablation without the sign: L1-balanced weighted mean of smoothed gradients, max-normalised."""
    params.setdefault("signed", False)
    return SEGA(**params)


@register_attack("sega-nomask", tasks=("iqa",))
def sega_nomask(**params: object) -> SEGA:
    """SEGA ablation without the visual-sensitivity and source-agreement masks."""
    params.setdefault("vis_mask", False)
    params.setdefault("sem_mask", False)
    return SEGA(**params)
