"""Dataset registry: ``build_dataset(name, split, size, seed, root)`` returns an in-memory ImageDataset."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from robustgrid.models.data.base import ImageDataset, fingerprint, subset, subset_indices

from robustgrid.core import Registry

DATASETS: Registry[ImageDataset] = Registry("dataset")


def register_dataset(name: str, **meta: Any) -> Callable[[Callable[..., ImageDataset]], Callable[..., ImageDataset]]:
    """Decorator registering a loader ``fn(split, size, seed, root, **kw) -> ImageDataset``."""
    return DATASETS.register(name, **meta)


def build_dataset(name: str, split: str = "test", size: int | None = None, seed: int = 0,
                  root: str | Path | None = None, **kw: Any) -> ImageDataset:
    """Load ``size`` samples (all if None) of ``split``, chosen by ``seed``; unknown names list close ones."""
    return DATASETS.build(name, split=split, size=size, seed=seed, root=root, **kw)


def list_datasets() -> list[tuple[str, str]]:
    """(name, description) of every registered dataset."""
    return DATASETS.describe()


# loaders register themselves on import
from robustgrid.models.data import cityscapes, clive, fashion_mnist, imagefolder, iqa_patches, koniq, scenes, voc  # noqa: E402, F401

__all__ = ["DATASETS", "ImageDataset", "build_dataset", "fingerprint", "list_datasets", "register_dataset",
           "subset", "subset_indices"]
