"""SEGA (Liu et al. 2025, reconstructed in METHODS.md 1.4): Signed Ensemble Gaussian transfer attack on NR-IQA.

Each source function is Gaussian-smoothed, its gradient estimated from N noisy evaluations (the loop's
``samples`` with a ``view`` that adds sigma * noise, so the cost counter shows N per source per step), the
sources are averaged (uniform 1/K unless weighted) and signed after averaging (the official figure, METHODS
7.1; sign-then-average stays an option), and one content mask from the clean image (``sega_masks``: tiles of
texture, flat regions dropped) multiplies the signed step, every step. The sources' sign-agreement mask is not
in the figure: it is the ``sega-agreement`` variant only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from robustgrid.attacks.loop import GradientAttack, flat_norm
from robustgrid.attacks.registry import register_attack
from robustgrid.attacks.sega_masks import agreement, agreement_mask, content_mask
from robustgrid.core import RobustgridError, check_bool, check_choice, check_float, check_int, check_type
from robustgrid.models.tasks import Task

SIGN_PLACEMENTS = ("average-then-sign", "sign-then-average")


def check_weights(what: str, weights: Sequence[float]) -> list[float]:
    """The ensemble weights as floats: a non-empty list of finite numbers >= 0 with a positive sum."""
    check_type(what, "weights", weights, Sequence[float])
    if not weights or any(not 0 <= w < math.inf for w in weights) or sum(weights) <= 0:
        raise RobustgridError(f"{what}: weights must be non-negative with a positive sum, got {list(weights)!r}")
    return [float(w) for w in weights]


@register_attack("sega", tasks=("iqa",))
class SEGA(GradientAttack):
    """SEGA: Gaussian-smoothed signed source ensemble with a content filter mask (Liu et al., METHODS 7.1).

    sigma: noise scale in [0, 1] pixel units; samples: N noise draws per source per step; sign: where the
    sign goes; weights: per-source ensemble weights (uniform if None, normalised to sum 1); smooth/signed/
    vis_mask switch the ingredients off for ablations; vis_window/vis_threshold/mask_block/mask_dilate: the
    content mask's rule (sega_masks); sem_mask/tau: the agreement variant (off by default). Step 1.25 eps / T.
    """

    name = "sega"

    def __init__(self, *, sigma: float = 0.05, samples: int = 8, sign: str = "average-then-sign",
                 weights: Sequence[float] | None = None, smooth: bool = True, signed: bool = True,
                 vis_mask: bool = True, vis_window: int = 5, vis_threshold: float = 4e-4, mask_block: int = 8,
                 mask_dilate: int = 0, sem_mask: bool = False, tau: float = 0.5, random_start: bool = False,
                 task: str | Task = "iqa", step_size: float | None = None, rel_step_size: float | None = None,
                 steps: int = 10, **params: object) -> None:
        what = self.name
        self.sigma = check_float(what, "sigma", sigma, 0.0, low_open=True)
        samples = check_int(what, "samples (noise draws N)", samples, 1)
        self.sign = check_choice(what, "sign placement", sign, SIGN_PLACEMENTS)
        self.vis_window = check_int(what, "vis_window", vis_window, 1, odd=True)
        self.vis_threshold = check_float(what, "vis_threshold", vis_threshold, 0.0)
        self.mask_block = check_int(what, "mask_block", mask_block, 1)
        self.mask_dilate = check_int(what, "mask_dilate", mask_dilate, 0)
        self.tau = check_float(what, "tau", tau, 0.0, 1.0)
        self.weights = None if weights is None else check_weights(what, weights)
        self.smooth, self.signed = check_bool(what, "smooth", smooth), check_bool(what, "signed", signed)
        self.vis_mask, self.sem_mask = check_bool(what, "vis_mask", vis_mask), check_bool(what, "sem_mask", sem_mask)
        if step_size is None and rel_step_size is None:
            rel_step_size = 1.25 / check_int(what, "steps", steps, 1)  # METHODS 1.5 default alpha = 1.25 eps / T
        super().__init__(samples=samples if self.smooth else 1, random_start=random_start, task=task,
                         step_size=step_size, rel_step_size=rel_step_size, steps=steps, **params)

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
            raise RobustgridError(f"{self.name} has {len(self.weights)} weights but the attack has {k} sources")
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
        """Ensemble direction times the content mask of the clean image (and the agreement mask if enabled)."""
        w = self.source_weights(len(grads), grads[0])
        d = self.ensemble(grads, w)
        if self.vis_mask:
            d = d * content_mask(x0, self.vis_window, self.vis_threshold, self.mask_block, self.mask_dilate)
        if self.sem_mask:
            d = d * agreement_mask(grads, w, self.tau)
        return d

    def direction(self, grad: Tensor, state: dict[str, Tensor], idx: Tensor) -> Tensor:
        """The combined direction is already bounded by 1 per entry (Linf); L2 normalises it."""
        if self.norm == "linf":
            return grad
        return grad / (flat_norm(grad) + 1e-10)


# The ablations are SEGA with one default switched, as classes (not builders taking **params), so that their
# declared parameters (and so the config's type checks) are SEGA's.
@register_attack("sega-nosmooth", tasks=("iqa",))
class SEGANoSmooth(SEGA):
    """SEGA ablation without Gaussian smoothing (one plain gradient per source per step)."""

    name = "sega-nosmooth"

    def __init__(self, *, smooth: bool = False, **params: object) -> None:
        super().__init__(smooth=smooth, **params)


@register_attack("sega-nosign", tasks=("iqa",))
class SEGANoSign(SEGA):
    """SEGA ablation without the sign: L1-balanced weighted mean of smoothed gradients, max-normalised."""

    name = "sega-nosign"

    def __init__(self, *, signed: bool = False, **params: object) -> None:
        super().__init__(signed=signed, **params)


@register_attack("sega-nomask", tasks=("iqa",))
class SEGANoMask(SEGA):
    """SEGA ablation without any filter mask (the content mask off; the agreement mask stays off)."""

    name = "sega-nomask"

    def __init__(self, *, vis_mask: bool = False, sem_mask: bool = False, **params: object) -> None:
        super().__init__(vis_mask=vis_mask, sem_mask=sem_mask, **params)


@register_attack("sega-agreement", tasks=("iqa",))
class SEGAAgreement(SEGA):
    """SEGA variant with the sources' sign-agreement mask on top of the content mask (the pre-7.1 reading)."""

    name = "sega-agreement"

    def __init__(self, *, sem_mask: bool = True, **params: object) -> None:
        super().__init__(sem_mask=sem_mask, **params)
