"""Unlabeled image sets that self-supervised purifiers (the NCIS blind-spot network) are trained on.

A source is ``fn(split) -> Tensor`` of N x C x H x W images, uint8 or float in [0, 1]. Register one with
``@register_unlabeled(name)``; any dataset of ``models.data`` also works by name, with its labels dropped.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from robustgrid.core import Registry, RobustgridError
from robustgrid.models.data import DATASETS, build_dataset
from robustgrid.models.data.base import subset_indices

UNLABELED: Registry[Tensor] = Registry("unlabeled image set")


def register_unlabeled(name: str, **meta: Any) -> Callable[[Callable[..., Tensor]], Callable[..., Tensor]]:
    """Decorator registering ``fn(split) -> images`` as the unlabeled image set ``name``."""
    return UNLABELED.register(name, **meta)


def list_unlabeled() -> list[str]:
    """Names usable as ``dataset`` of a self-supervised purifier: registered sources and models.data datasets."""
    return sorted(set(UNLABELED.names()) | set(DATASETS.names()))


def unlabeled_images(name: str, split: str = "train", size: int | None = None, seed: int = 0) -> Tensor:
    """``size`` images (all if None, a seeded subset otherwise) of ``split`` of the set ``name``.

    Returned as float32 NCHW in [0, 1]; uint8 sources are subset first, then divided by 255.
    """
    if name in UNLABELED:
        images = UNLABELED.build(name, split=split)
        images = images[subset_indices(len(images), size, seed)]
    elif name in DATASETS:
        images = build_dataset(name, split=split, size=size, seed=seed).images
    else:
        close = difflib.get_close_matches(name, list_unlabeled(), n=3, cutoff=0.4)
        hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(list_unlabeled())}"
        raise RobustgridError(f"unknown unlabeled image set {name!r}; {hint}")
    return as_unit_images(images, f"unlabeled image set {name!r} ({split})")


def as_unit_images(images: Tensor, what: str) -> Tensor:
    """``images`` as float32 NCHW in [0, 1]; uint8 is scaled, anything else out of range is an error."""
    if images.ndim != 4 or len(images) == 0:
        raise RobustgridError(f"{what} must be a non-empty N x C x H x W tensor, got shape {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images.float().div_(255)
    images = images.float()
    if not bool(torch.isfinite(images).all()) or images.min() < 0 or images.max() > 1:
        raise RobustgridError(f"{what} must hold values in [0, 1]")
    return images


@register_unlabeled("fashion-mnist")
def fashion_mnist_images(split: str = "train") -> Tensor:
    """Fashion-MNIST clothing images, 1 x 28 x 28 grey, uint8 (train 60k, test 10k)."""
    from robustgrid.models.data.fashion_mnist import load_fashion_mnist

    images, _ = load_fashion_mnist(split)
    return torch.from_numpy(images.copy()).unsqueeze(1)  # the loader's cached array is read-only


@register_unlabeled("skimage-iqa")
def skimage_iqa_images(split: str = "train") -> Tensor:
    """skimage-iqa's patches, 3 x 48 x 48 RGB, uint8, without their FSIMc labels (the same images as the dataset's,
    in its order, so a blind-spot network's data fingerprint does not depend on which path made them)."""
    from robustgrid.models.data.iqa_patches import unlabeled_patches

    return torch.from_numpy(unlabeled_patches(split)).permute(0, 3, 1, 2).contiguous()
