"""Margin losses of the strongest evaluations (AutoAttack's DLR and targeted DLR, the CW margin), per sample.

Each takes class logits (B, C) or per-pixel logits (B, C, H, W) with labels (B,) or (B, H, W); a segmentation
sample's value is the mean over its valid (not ignored) pixels, so a classifier's sample is its one pixel.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from robustgrid.core import RobustgridError
from robustgrid.models.segmentation_task import IGNORE

Loss = Callable[[Tensor, Tensor], Tensor]  # (logits (P, C), labels (P,)) -> per-pixel value (P,)


def least_classes(what: str, loss: str, logits: Tensor, need: int) -> None:
    """One-line error when a loss reads more sorted logits than the model has classes."""
    if logits.shape[1] < need:
        raise RobustgridError(f"{what}: loss {loss!r} needs at least {need} classes, got {logits.shape[1]}")


def true_logit(z: Tensor, y: Tensor) -> Tensor:
    return z.gather(1, y[:, None]).squeeze(1)


def best_other(z: Tensor, y: Tensor) -> Tensor:
    """Largest logit of a class other than ``y``."""
    return z.scatter(1, y[:, None], float("-inf")).amax(1)


def ce(z: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(z, y, reduction="none")


def margin(z: Tensor, y: Tensor) -> Tensor:
    """CW margin: best other logit minus the true one (positive = fooled)."""
    return best_other(z, y) - true_logit(z, y)


def dlr(z: Tensor, y: Tensor) -> Tensor:
    """Difference of logits ratio (Croce & Hein 2020): the margin over z_pi1 - z_pi3, invariant to logit scale."""
    zs = z.sort(1)[0]
    return margin(z, y) / (zs[:, -1] - zs[:, -3] + 1e-12)


def dlr_targeted(z: Tensor, y: Tensor, t: Tensor) -> Tensor:
    """Targeted DLR: (z_t - z_y) / (z_pi1 - (z_pi3 + z_pi4) / 2)."""
    zs = z.sort(1)[0]
    return (true_logit(z, t) - true_logit(z, y)) / (zs[:, -1] - 0.5 * (zs[:, -3] + zs[:, -4]) + 1e-12)


LOSSES: dict[str, tuple[Loss, int]] = {"ce": (ce, 2), "margin": (margin, 2), "dlr": (dlr, 3)}  # fn, least classes


def per_sample(fn: Loss, logits: Tensor, *labels: Tensor) -> Tensor:
    """``fn`` per sample: directly on (B, C) logits, else averaged over each sample's valid pixels."""
    if logits.dim() == 2:
        return fn(logits, *labels)
    b, c = logits.shape[:2]
    z = logits.movedim(1, -1).reshape(-1, c)
    flat = [t.reshape(-1) for t in labels]
    valid = flat[0] != IGNORE
    safe = [torch.where(valid, t, 0) for t in flat]
    values = torch.where(valid, fn(z, *safe), 0.0).reshape(b, -1)
    return values.sum(1) / valid.reshape(b, -1).sum(1).clamp_min(1)
