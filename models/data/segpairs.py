"""Image and label-map file pairs (VOC, Cityscapes): read both, resize and crop them identically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from robustgrid.models.data.base import ImageDataset, fingerprint, subset_indices
from torch import Tensor

from robustgrid.core import RobustgridError


def _open(path: Path, mode: str | None) -> object:
    from PIL import Image

    if not path.is_file():
        raise RobustgridError(f"missing file {path}")
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert(mode) if mode else im.copy()
    except (OSError, ValueError) as exc:  # UnidentifiedImageError and truncated files are OSErrors
        raise RobustgridError(f"unreadable image {path}: {type(exc).__name__}") from None


def load_pair(image: Path, labels: Path, resize: int, crop: tuple[int, int] | None,
              lut: np.ndarray | None = None) -> tuple[Tensor, Tensor]:
    """RGB float CHW in [0, 1] and int64 HW labels: shorter side to ``resize`` (bilinear / nearest),
    centre crop ``crop`` (H, W) if given, label ids mapped through ``lut`` (256 entries) if given."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    im, lab = _open(image, "RGB"), _open(labels, None)
    if im.size != lab.size:
        raise RobustgridError(f"label map {labels} is {lab.size[0]}x{lab.size[1]}, its image is "
                              f"{im.size[0]}x{im.size[1]}")
    if lab.mode not in ("P", "L"):  # palette PNGs (VOC) and grey id PNGs (Cityscapes) hold the ids
        raise RobustgridError(f"label map {labels} has mode {lab.mode}; expected 8-bit ids (P or L)")
    im = TF.resize(im, resize, interpolation=InterpolationMode.BILINEAR, antialias=True)
    lab = TF.resize(lab, resize, interpolation=InterpolationMode.NEAREST)
    if crop is not None:
        if crop[0] > im.size[1] or crop[1] > im.size[0]:
            raise RobustgridError(f"crop {crop[0]}x{crop[1]} is larger than the resized {im.size[1]}x{im.size[0]} "
                                  f"image {image}")
        im, lab = TF.center_crop(im, list(crop)), TF.center_crop(lab, list(crop))
    ids = np.asarray(lab, dtype=np.uint8)
    if lut is not None:
        ids = lut[ids]
    return TF.pil_to_tensor(im).float().div_(255), torch.from_numpy(ids.astype(np.int64))


def as_crop(crop: int | tuple[int, int] | list[int] | None) -> tuple[int, int] | None:
    """A crop given as one side or (H, W), checked."""
    if crop is None:
        return None
    hw = (crop, crop) if isinstance(crop, int) else tuple(crop)
    if len(hw) != 2 or not all(isinstance(v, int) and v > 0 for v in hw):
        raise RobustgridError(f"crop must be a positive integer or [height, width], got {crop!r}")
    return hw  # type: ignore[return-value]


def pair_dataset(name: str, split: str, pairs: list[tuple[Path, Path]], size: int | None, seed: int,
                 resize: int, crop: int | tuple[int, int] | None, num_classes: int,
                 lut: np.ndarray | None = None) -> ImageDataset:
    """Load a seeded subset of (image, label) pairs into an ImageDataset (all pairs must end up one size)."""
    if not isinstance(resize, int) or resize < 1:
        raise RobustgridError(f"resize must be a positive integer, got {resize!r}")
    hw = as_crop(crop)
    loaded = [load_pair(*pairs[i], resize, hw, lut) for i in subset_indices(len(pairs), size, seed).tolist()]
    shapes = {tuple(x.shape) for x, _ in loaded}
    if len(shapes) > 1:
        raise RobustgridError(f"{name} images differ in size after resize {resize} ({sorted(shapes)[:2]}); "
                              "set crop to get one size")
    images, labels = torch.stack([x for x, _ in loaded]), torch.stack([y for _, y in loaded])
    return ImageDataset(name=name, split=split, images=images, labels=labels,
                        fingerprint=fingerprint(images, labels), num_classes=num_classes)
