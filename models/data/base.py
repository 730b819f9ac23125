"""The in-memory image dataset every loader returns, and the deterministic subset and fingerprint helpers."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor

from robustgrid.core import RobustgridError

ArrayT = TypeVar("ArrayT", np.ndarray, Tensor)


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """Images (float32 NCHW in [0, 1]) with labels and a fingerprint that keys stored results.

    ``groups`` (optional, one id per sample) names the root a sample was cut from (the source photograph of
    an IQA patch): samples of one root are correlated, so bootstrap intervals resample roots."""

    name: str
    split: str
    images: Tensor
    labels: Tensor
    fingerprint: str
    num_classes: int | None = None
    groups: Tensor | None = None

    def __len__(self) -> int:
        return len(self.images)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one image, (C, H, W)."""
        return tuple(self.images.shape[1:])

    def batches(self, batch_size: int, start: int = 0, stop: int | None = None) -> Iterator[tuple[Tensor, Tensor]]:
        """Consecutive (images, labels) batches of samples ``start:stop`` in dataset order."""
        stop = len(self) if stop is None else min(stop, len(self))
        for i in range(start, stop, batch_size):
            j = min(i + batch_size, stop)
            yield self.images[i:j], self.labels[i:j]


def fingerprint(*arrays: np.ndarray | Tensor | bytes | str) -> str:
    """Short SHA-256 over the raw bytes of arrays (and strings), so equal data gives equal keys."""
    h = hashlib.sha256()
    for a in arrays:
        if isinstance(a, Tensor):
            a = a.detach().cpu().contiguous().numpy()
        if isinstance(a, np.ndarray):
            h.update(f"{a.dtype.str}{a.shape}".encode())
            a = np.ascontiguousarray(a).tobytes()
        h.update(a.encode() if isinstance(a, str) else a)
    return h.hexdigest()[:16]


def subset_indices(n: int, size: int | None, seed: int) -> Tensor:
    """Sorted indices of a seeded random subset of ``size`` out of ``n`` items (all when size is None)."""
    if size is None:
        return torch.arange(n)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise RobustgridError(f"dataset size must be a positive integer or None, got {size!r}")
    if size > n:
        raise RobustgridError(f"dataset size {size} exceeds the {n} available samples")
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=gen)[:size].sort().values


def subset(images: ArrayT, labels: ArrayT, size: int | None, seed: int) -> tuple[ArrayT, ArrayT]:
    """The same seeded subset of images and labels (numpy arrays or tensors)."""
    if len(images) != len(labels):
        raise RobustgridError(f"{len(images)} images but {len(labels)} labels")
    idx = subset_indices(len(images), size, seed)
    if isinstance(images, np.ndarray):
        idx = idx.numpy()
    return images[idx], labels[idx]
