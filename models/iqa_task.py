"""No-reference IQA as a Task: the mid-point objective of METHODS 1.4, correlation and score-shift metrics.

Every IQA target's module outputs quality on one common scale, 0-100 with higher = better (the target
wrapper maps each scorer's declared range and direction onto it), so this task needs no per-target
range: objective, reference direction, RMSE/MAE and R all read ``QUALITY_RANGE``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from scipy import stats
from torch import Tensor

from robustgrid.core import RobustgridError
from robustgrid.models.tasks import TASKS, Task, check_images, check_metric_names

QUALITY_RANGE = (0.0, 100.0)  # the common output scale of every IQA target module
R_FLOOR = 1e-3                # added to |p' - p| in R (quality points), so an unchanged score stays finite


def quantize8(x: Tensor) -> Tensor:
    """Round images to 8 bits (round(255 x) / 255), as saved adversarial images are before re-scoring."""
    return torch.round(x * 255) / 255


def image_ssim(x: Tensor, x_adv: Tensor) -> np.ndarray:
    """Per-image SSIM (pyiqa 'ssim': Y channel, Gaussian window) of the perturbed image against the clean one."""
    import pyiqa

    metric = pyiqa.create_metric("ssim", device=x.device)
    with torch.no_grad():
        return metric(x_adv.clamp(0, 1), x.clamp(0, 1)).view(-1).double().cpu().numpy()


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64).reshape(-1), np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise RobustgridError(f"score arrays differ in length: {a.size} vs {b.size}")
    return a, b


def _corr(fn, a: np.ndarray, b: np.ndarray) -> float:  # noqa: ANN001 (a correlation of two arrays)
    a, b = _pair(a, b)
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")  # undefined for fewer than two points or a constant array
    return float(fn(a, b))


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float(np.clip(a @ b / np.sqrt((a @ a) * (b @ b)), -1.0, 1.0))


def _ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties averaged (scipy.stats.rankdata's default), via one stable sort."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    edges = np.flatnonzero(np.concatenate(([True], xs[1:] != xs[:-1], [True])))
    ranks = np.empty(len(x))
    ranks[order] = np.repeat((edges[:-1] + edges[1:] + 1) / 2, np.diff(edges))
    return ranks


def srocc(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank-order correlation: Pearson's on average ranks, as scipy's (NaN when undefined).

    Computed directly because scipy.stats.spearmanr's overhead dominated bootstrap intervals.
    """
    return _corr(lambda x, y: _pearson(_ranks(x), _ranks(y)), a, b)


def plcc(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson linear correlation, no logistic fitting (NaN when undefined)."""
    return _corr(_pearson, a, b)


def krocc(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall rank-order correlation, tau-b (NaN when undefined)."""
    return _corr(lambda x, y: stats.kendalltau(x, y)[0], a, b)


def robustness_r(clean: np.ndarray, adv: np.ndarray, score_range: tuple[float, float] = QUALITY_RANGE,
                 floor: float = R_FLOOR) -> float:
    """R = mean log10(max(p - lo, hi - p) / (|p' - p| + floor)) with p = ``clean``, p' = ``adv`` (in that order).

    Zhang et al. (NeurIPS 2022), METHODS 1.6: the largest possible shift over the shift achieved; lower = weaker model.
    """
    p, q = _pair(clean, adv)
    lo, hi = score_range
    return float(np.mean(np.log10(np.maximum(p - lo, hi - p) / (np.abs(q - p) + floor)))) if p.size else float("nan")


def score_stability(clean: np.ndarray, adv: np.ndarray, score_range: tuple[float, float] = QUALITY_RANGE) -> float:
    """1 - mean |p' - p| / max(p - lo, hi - p): 1 when no score moved, 0 when every score reached the far end.

    The IQA primary metric: R's ratio (achieved over largest possible shift) without the log and its floor, so it
    is bounded, exactly 1 on clean images and falls monotonically with every score shift (docs/iqa.md).
    """
    shifts = relative_shifts(clean, adv, score_range)
    return float(1 - np.mean(shifts)) if shifts.size else math.nan


def relative_shifts(clean: np.ndarray, adv: np.ndarray,
                    score_range: tuple[float, float] = QUALITY_RANGE) -> np.ndarray:
    """Per image |p' - p| / max(p - lo, hi - p): the shift achieved over the largest possible one."""
    p, q = _pair(clean, adv)
    lo, hi = score_range
    return np.abs(q - p) / np.maximum(np.maximum(p - lo, hi - p), 1e-12)


def _shift(p: np.ndarray, q: np.ndarray, power: int) -> float:
    return float(np.mean(np.abs(q - p) ** power)) if p.size else float("nan")


# name -> (needs the clean predictions, fn(adversarial q, labels y, clean p)); the order is the stored order
_METRICS: dict[str, tuple[bool, Callable[[np.ndarray, np.ndarray, np.ndarray | None], float]]] = {
    "score_stability": (True, lambda q, y, p: score_stability(p, q)),
    "srocc": (False, lambda q, y, p: srocc(q, y)),
    "plcc": (False, lambda q, y, p: plcc(q, y)),
    "krocc": (False, lambda q, y, p: krocc(q, y)),
    "clean_srocc": (True, lambda q, y, p: srocc(p, y)),
    "clean_plcc": (True, lambda q, y, p: plcc(p, y)),
    "srocc_clean_adv": (True, lambda q, y, p: srocc(p, q)),
    "plcc_clean_adv": (True, lambda q, y, p: plcc(p, q)),
    "krocc_clean_adv": (True, lambda q, y, p: krocc(p, q)),
    "rmse_shift": (True, lambda q, y, p: math.sqrt(_shift(p, q, 2))),
    "mae_shift": (True, lambda q, y, p: _shift(p, q, 1)),
    "robustness_r": (True, lambda q, y, p: robustness_r(p, q)),
}


@TASKS.register("iqa")
class IQA(Task):
    """NR-IQA regression: push each score toward the far end of the range; metrics are dataset-level correlations."""

    name = "iqa"
    metric = "score_stability"  # falls monotonically as the attack moves scores; SROCC with the labels does not
    columns = ("srocc", "plcc")  # correlations with the labels (MOS), shown next to it on the leaderboard
    success_type = False
    transfer_metrics = ("score_stability", "srocc", "robustness_r")
    quantize = True         # attacked images are rounded to 8 bits before scoring (the group's convention)

    def objective(self, outputs: Tensor, y: Tensor) -> Tensor:
        """s * quality / range, where ``y`` holds the per-sample direction s from ``attack_labels``."""
        lo, hi = QUALITY_RANGE
        return y.to(outputs) * quality(outputs) / (hi - lo)

    def attack_labels(self, models: list, x: Tensor, y: Tensor) -> Tensor:
        """Direction s = -1 (lower the score) where the sources' mean clean score is above mid-range, else +1."""
        with torch.no_grad():
            ref = torch.stack([quality(m(x)) for m in models]).mean(0)
        return direction(ref)

    def outcome(self, outputs: Tensor, y: Tensor) -> np.ndarray:
        return quality(outputs).detach().double().cpu().numpy()

    def metrics(self, outcome: np.ndarray, y: np.ndarray, clean: np.ndarray | None = None) -> dict[str, float]:
        """Correlations of adversarial (and clean) predictions with the labels; clean-vs-attacked shift measures."""
        return self.resampler(outcome, y, clean)(np.arange(len(np.asarray(y))))

    def resampler(self, outcome: np.ndarray, y: np.ndarray, clean: np.ndarray | None = None,
                  names: Sequence[str] | None = None) -> Callable[[np.ndarray], dict[str, float]]:
        """``f(indices)`` computing only the ``names`` metrics (all if None): Kendall's tau is slow to bootstrap."""
        q, y = _pair(outcome, y)
        p = None if clean is None else _pair(clean, q)[0]
        table = {name: fn for name, (needs_clean, fn) in _METRICS.items() if p is not None or not needs_clean}
        check_metric_names(self.name, names, table)
        chosen = {n: table[n] for n in (names or table)}

        def metrics(idx: np.ndarray) -> dict[str, float]:
            pi = None if p is None else p[idx]
            return {n: fn(q[idx], y[idx], pi) for n, fn in chosen.items()}

        return metrics

    def bootstrap(self, outcome: np.ndarray, y: np.ndarray, clean: np.ndarray | None, metric: str,
                  idx: np.ndarray) -> np.ndarray:
        """Score stability of every resample at once (one minus the mean of the per-image relative shifts)."""
        if metric != "score_stability" or clean is None or idx.dtype == object or not idx.shape[1]:
            return super().bootstrap(outcome, y, clean, metric, idx)
        return 1 - relative_shifts(clean, outcome)[idx].mean(1)

    def pair_metrics(self, x: Tensor, x_adv: Tensor) -> dict[str, np.ndarray]:
        """Norms of the perturbation plus SSIM of the 8-bit attacked image against the clean one."""
        return {**super().pair_metrics(x, x_adv), "ssim": image_ssim(x, quantize8(x_adv))}

    def check_batch(self, x: Tensor, y: Tensor | None = None) -> None:
        check_images(x)
        if y is not None and (y.dim() != 1 or len(y) != len(x) or not y.is_floating_point()):
            raise RobustgridError(f"IQA labels must be float scores of shape ({len(x)},), got "
                                  f"{y.dtype} {tuple(y.shape)}")

    @staticmethod
    def check_target(target: object) -> None:
        """One-line error for an IQA target that does not declare its score range."""
        if getattr(target, "score_range", None) is None:
            raise RobustgridError(f"IQA target {getattr(target, 'name', target)!r} declares no score_range; "
                                  "pass score_range = [lo, hi] so scores can be mapped onto 0-100")


def quality(outputs: Tensor) -> Tensor:
    """A module's output as one quality score per image, shape (B,)."""
    if outputs.dim() == 0:  # pyiqa squeezes a batch of one to a scalar
        outputs = outputs.reshape(1)
    return outputs.reshape(len(outputs), -1).mean(1)


def direction(reference: Tensor) -> Tensor:
    """Per-sample attack direction on the quality scale: -1 above the middle of the range, +1 at or below it."""
    lo, hi = QUALITY_RANGE
    return torch.where(reference > (lo + hi) / 2, -1.0, 1.0).to(reference)
