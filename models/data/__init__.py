"""Dataset registry: ``build_dataset(name, split, size, seed, root)`` returns an in-memory ImageDataset."""

from __future__ import annotations

# loaders register themselves on import
from robustgrid.models.data import cityscapes, clive, fashion_mnist, imagefolder, iqa_patches, koniq, scenes, voc  # noqa: F401
from robustgrid.models.data.base import ImageDataset, fingerprint, subset, subset_indices
from robustgrid.models.data.registry import DATASETS, build_dataset, list_datasets, register_dataset

__all__ = ["DATASETS", "ImageDataset", "build_dataset", "fingerprint", "list_datasets", "register_dataset",
           "subset", "subset_indices"]
