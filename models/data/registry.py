"""The dataset registry: ``register_dataset`` decorates loaders, ``build_dataset`` loads by name.

Loader modules import this module (not the package), so the package can import them without a cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from robustgrid.core import Registry
from robustgrid.models.data.base import ImageDataset

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
