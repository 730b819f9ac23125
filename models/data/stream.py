"""Datasets read from files on demand: batches stream through a ``torch.utils.data.DataLoader`` with worker
processes, so memory does not grow with the dataset (ImageNet val at 224 px is ~30 GB as one tensor)."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from robustgrid.core import RobustgridError


def scan_image(path: Path) -> tuple[str, tuple[int, int], str]:
    """SHA-256 of an image file's bytes, its (width, height) and mode, after checking that its header parses (PIL
    reads only the header), so an unreadable file is a one-line error before any compute, not in a loader worker."""
    from PIL import Image, UnidentifiedImageError

    try:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as im:
            size, mode = im.size, im.mode
    except (OSError, UnidentifiedImageError) as exc:
        raise RobustgridError(f"unreadable image {path}: {type(exc).__name__}") from None
    return hashlib.sha256(data).hexdigest(), size, mode


def stream_fingerprint(name: str, split: str, params: dict[str, Any], files: Sequence[Sequence[Path]],
                       labels: Sequence[object],
                       root: Path | None = None) -> tuple[str, list[list[tuple[tuple[int, int], str]]]]:
    """Short SHA-256 over the sample list: each sample's files (path relative to ``root`` and content hash), its
    label and the reading parameters, so equal data read the same way gives equal keys wherever it lies; also
    each file's ((width, height), mode) from its header."""
    h = hashlib.sha256(repr((name, split, sorted(params.items()))).encode())
    sizes = []
    for group, label in zip(files, labels, strict=True):
        sizes.append([])
        for path in group:
            digest, size, mode = scan_image(path)
            sizes[-1].append((size, mode))
            rel = path.relative_to(root) if root is not None and path.is_relative_to(root) else Path(path.name)
            h.update(f"{rel.as_posix()}\0{digest}\0".encode())
        h.update(f"{label!r}\n".encode())
    return h.hexdigest()[:16], sizes


class StreamingDataset(Dataset):
    """Samples ``read(item) -> (image CHW in [0, 1], label)`` loaded lazily, batch by batch, by ``workers`` processes.

    ``labels`` are the cheap per-sample labels known from the index (class ids, MOS); a loader whose labels live in
    files (segmentation maps) passes None and they are read, without the images, the first time they are asked for.
    """

    def __init__(self, name: str, split: str, items: Sequence[Any], read: Callable[[Any], tuple[Tensor, Tensor]],
                 fingerprint: str, sample_shape: tuple[int, int, int], labels: Tensor | None = None,
                 read_label: Callable[[Any], Tensor] | None = None, num_classes: int | None = None,
                 workers: int = 2) -> None:
        self.name, self.split, self.items, self.read = name, split, list(items), read
        self.fingerprint, self.sample_shape, self.num_classes = fingerprint, tuple(sample_shape), num_classes
        self.workers, self._labels, self._read_label = int(workers), labels, read_label

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.read(self.items[i])

    @property
    def labels(self) -> Tensor:
        """Every sample's label (read once from the label files if the index does not hold them)."""
        if self._labels is None:
            read = self._read_label or (lambda item: self.read(item)[1])
            self._labels = torch.stack([read(item) for item in self.items])
        return self._labels

    def batches(self, batch_size: int, start: int = 0, stop: int | None = None) -> Iterator[tuple[Tensor, Tensor]]:
        """Consecutive (images, labels) batches of samples ``start:stop`` in dataset order."""
        stop = len(self) if stop is None else min(stop, len(self))
        part = Subset(self, range(start, stop))
        workers = self.workers if stop - start > batch_size else 0  # a single batch is not worth the processes
        loader = DataLoader(part, batch_size=batch_size, shuffle=False, num_workers=workers,
                            persistent_workers=False, prefetch_factor=2 if workers else None)
        try:
            yield from loader
        except (RuntimeError, RobustgridError) as exc:  # a worker's error comes back wrapped with its traceback
            text = str(exc)
            if "RobustgridError: " not in text:
                raise
            raise RobustgridError(text.rsplit("RobustgridError: ", 1)[1]) from None

    @property
    def images(self) -> Tensor:
        """Every image as one tensor: reads the whole dataset, for small data and tests (the grid streams)."""
        return torch.cat([x for x, _ in self.batches(256)]) if len(self) else torch.empty(0, *self.sample_shape)
