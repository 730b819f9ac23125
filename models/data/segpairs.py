"""Image and label-map file pairs (VOC, Cityscapes): read both, resize and crop them identically."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from robustgrid.core import RobustgridError
from robustgrid.models.data.base import subset_indices
from robustgrid.models.data.stream import StreamingDataset, stream_fingerprint


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


def resized_hw(width: int, height: int, resize: int, crop: tuple[int, int] | None) -> tuple[int, int]:
    """(H, W) after torchvision's shorter-side resize to ``resize`` and the centre crop."""
    if crop is not None:
        return crop
    if width <= height:
        return int(resize * height / width), resize
    return resize, int(resize * width / height)


def read_pair(item: tuple[Path, Path], resize: int, crop: tuple[int, int] | None,
              lut: np.ndarray | None) -> tuple[Tensor, Tensor]:
    """One (image, label map) sample, read when a batch asks for it (picklable for loader workers)."""
    return load_pair(item[0], item[1], resize, crop, lut)


def read_labels(item: tuple[Path, Path], resize: int, crop: tuple[int, int] | None,
                lut: np.ndarray | None) -> Tensor:
    """The label map alone, as ``read_pair`` gives it (nearest resize, same crop), without decoding the image."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    lab = TF.resize(_open(item[1], None), resize, interpolation=InterpolationMode.NEAREST)
    if crop is not None:
        lab = TF.center_crop(lab, list(crop))
    ids = np.asarray(lab, dtype=np.uint8)
    return torch.from_numpy((lut[ids] if lut is not None else ids).astype(np.int64))


def pair_dataset(name: str, split: str, pairs: list[tuple[Path, Path]], size: int | None, seed: int,
                 resize: int, crop: int | tuple[int, int] | None, num_classes: int,
                 lut: np.ndarray | None = None, workers: int = 2) -> StreamingDataset:
    """A seeded subset of (image, label) pairs, streamed from disk; every pair must come out one size."""
    if not isinstance(resize, int) or resize < 1:
        raise RobustgridError(f"resize must be a positive integer, got {resize!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise RobustgridError(f"{name} workers must be an integer >= 0, got {workers!r}")
    hw = as_crop(crop)
    items = [pairs[i] for i in subset_indices(len(pairs), size, seed).tolist()]
    for image, labels in items:
        for path in (image, labels):
            if not path.is_file():
                raise RobustgridError(f"missing file {path}")
    params = {"resize": resize, "crop": hw, "lut": None if lut is None else lut.tolist()}
    key, sizes = stream_fingerprint(name, split, params, [list(pair) for pair in items], [""] * len(items),
                                    items[0][0].parents[1] if items else None)
    for (_, labels), ((im_size, _), (lab_size, mode)) in zip(items, sizes, strict=True):
        if im_size != lab_size:
            raise RobustgridError(f"label map {labels} is {lab_size[0]}x{lab_size[1]}, its image is "
                                  f"{im_size[0]}x{im_size[1]}")
        if mode not in ("P", "L"):
            raise RobustgridError(f"label map {labels} has mode {mode}; expected 8-bit ids (P or L)")
    shapes = sorted({resized_hw(*im_size, resize, hw) for (im_size, _), _ in sizes})
    if len(shapes) > 1:
        raise RobustgridError(f"{name} images differ in size after resize {resize} ({shapes[:2]}); "
                              "set crop to get one size")
    reading = {"resize": resize, "crop": hw, "lut": lut}
    return StreamingDataset(name, split, items, functools.partial(read_pair, **reading), key, (3, *shapes[0]),
                            read_label=functools.partial(read_labels, **reading), num_classes=num_classes,
                            workers=workers)
