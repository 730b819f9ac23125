"""Semantic segmentation as a Task: per-pixel cross-entropy objective, label-map outcomes, dataset mIoU.

mIoU comes from one confusion matrix accumulated over every pixel of the split (never a mean of
per-batch or per-image mIoUs); pixels labelled ``IGNORE`` count nowhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from robustgrid.core import RobustgridError
from robustgrid.models.tasks import TASKS, Task, check_images, check_metric_names

IGNORE = 255


def confusion_matrix(pred: np.ndarray, labels: np.ndarray, num_classes: int, ignore: int = IGNORE) -> np.ndarray:
    """(C, C) int64 counts, rows = true class, columns = predicted class, ignored pixels dropped."""
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    pred = np.asarray(pred).reshape(-1).astype(np.int64)
    keep = labels != ignore
    return np.bincount(labels[keep] * num_classes + pred[keep], minlength=num_classes ** 2).reshape(
        num_classes, num_classes)


def class_iou(cms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per class IoU of confusion matrices (..., C, C), and whether the class is present in the labels or the
    predictions (its IoU is 0 where it is not)."""
    tp = np.diagonal(cms, axis1=-2, axis2=-1).astype(np.float64)
    union = cms.sum(-2) + cms.sum(-1) - tp
    present = union > 0
    return np.where(present, tp / np.where(present, union, 1), 0.0), present


def miou(cm: np.ndarray) -> float:
    """Mean IoU over the classes present in the labels or the predictions (absent in both: excluded)."""
    iou, present = class_iou(cm)
    return float(np.mean(iou[present])) if present.any() else float("nan")


def pixel_accuracy(cm: np.ndarray) -> float:
    """Share of valid pixels whose predicted class is the true class."""
    total = cm.sum()
    return float(np.trace(cm) / total) if total else float("nan")


def _num_classes(*maps: np.ndarray) -> int:
    """Smallest C covering every class id in the maps (ignore label excluded)."""
    top = [int(m[m != IGNORE].max()) for m in maps if m is not None and (m != IGNORE).any()]
    return max(top, default=0) + 1


def check_label_ids(y: Tensor, num_classes: int | None, ignore: int = IGNORE) -> None:
    """One-line error for class ids below 0 or at/above ``num_classes`` (the ignore label is allowed)."""
    ids = y[y != ignore]
    if not len(ids):
        return
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or (num_classes is not None and hi >= num_classes):
        top = f"{num_classes - 1}" if num_classes is not None else "C-1"
        raise RobustgridError(f"label maps hold class id {lo if lo < 0 else hi}; valid ids are 0..{top} "
                              f"and {ignore} (ignore)")


@TASKS.register("segmentation")
class Segmentation(Task):
    """Per-pixel classification: maximise mean CE over valid pixels; outcome is the predicted label map."""

    name = "segmentation"
    metric = "miou"
    success_type = False
    transfer_metrics = ("miou", "pixel_asr", "miou_drop")

    def __init__(self, num_classes: int | None = None, ignore_index: int = IGNORE) -> None:
        self.num_classes, self.ignore_index = num_classes, ignore_index

    def objective(self, outputs: Tensor, y: Tensor) -> Tensor:
        """Per-sample cross-entropy averaged over that sample's valid pixels (0 if it has none)."""
        check_label_ids(y, outputs.shape[1], self.ignore_index)
        ce = F.cross_entropy(outputs, y, ignore_index=self.ignore_index, reduction="none")
        valid = (y != self.ignore_index).flatten(1)
        return ce.flatten(1).sum(1) / valid.sum(1).clamp_min(1)

    def outcome(self, outputs: Tensor, y: Tensor) -> np.ndarray:
        pred = outputs.argmax(1).cpu().numpy()
        return pred.astype(np.uint8 if outputs.shape[1] <= 255 else np.int16)

    def metrics(self, outcome: np.ndarray, y: np.ndarray, clean: np.ndarray | None = None) -> dict[str, float]:
        """mIoU and pixel accuracy from the summed confusion matrix; with the clean outcomes, the two
        transfer-success measures ``pixel_asr`` and ``miou_drop``."""
        return self.resampler(outcome, y, clean)(np.arange(len(outcome)))

    def resampler(self, outcome: np.ndarray, y: np.ndarray, clean: np.ndarray | None = None,
                  names: Sequence[str] | None = None) -> Callable[[np.ndarray], dict[str, float]]:
        """``f(indices)`` from per-scene confusion matrices: any set of scenes (with repeats) sums them."""
        check_metric_names(self.name, names,
                           ["miou", "pixel_accuracy"] + (["pixel_asr", "miou_drop"] if clean is not None else []))
        y = np.asarray(y)
        c = max(self.num_classes or 0, _num_classes(outcome, y, clean))
        adv = np.stack([confusion_matrix(o, t, c, self.ignore_index) for o, t in zip(outcome, y, strict=True)])
        if clean is not None:
            base = np.stack([confusion_matrix(o, t, c, self.ignore_index) for o, t in zip(clean, y, strict=True)])
            right = (y != self.ignore_index) & (clean == y)
            n_right = right.reshape(len(y), -1).sum(1)
            n_flipped = (right & (outcome != y)).reshape(len(y), -1).sum(1)

        def metrics(idx: np.ndarray) -> dict[str, float]:
            cm = adv[idx].sum(0)
            out = {"miou": miou(cm), "pixel_accuracy": pixel_accuracy(cm)}
            if clean is not None:
                total = n_right[idx].sum()
                out["pixel_asr"] = float(n_flipped[idx].sum() / total) if total else float("nan")
                clean_miou = miou(base[idx].sum(0))
                out["miou_drop"] = 1.0 - out["miou"] / clean_miou if clean_miou > 0 else float("nan")
            return out

        return metrics

    def bootstrap(self, outcome: np.ndarray, y: np.ndarray, clean: np.ndarray | None, metric: str,
                  idx: np.ndarray) -> np.ndarray:
        """mIoU of every resample at once: each one's confusion matrix is its draw counts times the scenes'."""
        if metric != "miou" or idx.dtype == object:
            return super().bootstrap(outcome, y, clean, metric, idx)
        y = np.asarray(y)
        c = max(self.num_classes or 0, _num_classes(outcome, y))
        scenes = np.stack([confusion_matrix(o, t, c, self.ignore_index) for o, t in zip(outcome, y, strict=True)])
        counts = np.zeros((len(idx), len(y)), dtype=np.int64)
        np.add.at(counts, (np.arange(len(idx))[:, None], idx), 1)
        iou, present = class_iou((counts @ scenes.reshape(len(y), -1)).reshape(len(idx), c, c))
        n = present.sum(1)
        return np.where(n > 0, iou.sum(1) / np.maximum(n, 1), np.nan)

    def check_batch(self, x: Tensor, y: Tensor | None = None) -> None:
        check_images(x)
        if y is None:
            return
        if y.dim() != 3 or tuple(y.shape) != (x.shape[0], *x.shape[2:]):
            raise RobustgridError(f"label maps must have shape {(x.shape[0], *x.shape[2:])} (N, H, W) to match "
                                  f"the images, got {tuple(y.shape)}")
        if y.is_floating_point() or y.dtype == torch.bool:
            raise RobustgridError(f"label maps must hold integer class ids, got dtype {y.dtype}")
        check_label_ids(y, self.num_classes, self.ignore_index)
