"""Fashion-MNIST from its IDX ``.gz`` files: the embedded classification dataset (1x28x28, 10 classes)."""

from __future__ import annotations

import functools
import gzip
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from robustgrid.core import RobustgridError
from robustgrid.models.cache import robustgrid_home
from robustgrid.models.data.base import ImageDataset, fingerprint, subset
from robustgrid.models.data.registry import register_dataset

FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian package dataset-fashion-mnist
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
MEAN, STD = 0.2860, 0.3530  # of the train split, used to normalise inside the zoo models
IDX_UBYTE = 0x08


def read_idx(path: str | Path) -> np.ndarray:
    """Parse an unsigned-byte IDX file (gzipped or raw); a truncated or corrupt file is a one-line error."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:  # BadGzipFile is an OSError; a cut-off gzip stream raises EOFError
        raise RobustgridError(f"corrupt IDX file {path}: {type(exc).__name__}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != IDX_UBYTE or data[3] == 0:
        raise RobustgridError(f"corrupt IDX file {path}: bad magic number {data[:4].hex() or 'empty'}")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise RobustgridError(f"corrupt IDX file {path}: header cut off")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        raise RobustgridError(f"corrupt IDX file {path}: {len(data)} bytes, header says {expected}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (gzipped if the name ends in .gz); used for fixtures."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, IDX_UBYTE, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())


def _has_files(folder: Path) -> bool:
    return all((folder / name).is_file() for pair in FILES.values() for name in pair)


def search_paths() -> list[Path]:
    """Folders searched, in order, when no explicit root is given."""
    paths = []
    if os.environ.get("ROBUSTGRID_DATA"):
        data = Path(os.environ["ROBUSTGRID_DATA"])
        paths += [data, data / "fashion-mnist"]
    return paths + [SYSTEM_DIR, robustgrid_home() / "data" / "fashion-mnist"]


def _download(dest: Path) -> None:
    """Fetch the four files with torchvision's downloader (needs the internet) into ``dest``."""
    from torchvision.datasets import FashionMNIST

    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        FashionMNIST(tmp, train=True, download=True)
        for pair in FILES.values():
            for name in pair:
                shutil.move(str(Path(tmp) / "FashionMNIST" / "raw" / name), dest / name)


def find_folder(root: str | Path | None = None) -> Path:
    """The folder holding the four IDX files: explicit root, else the search paths, else a download."""
    if root is not None:
        root = Path(root).expanduser()
        if not root.is_dir():
            raise RobustgridError(f"Fashion-MNIST root {root} does not exist")
        for folder in (root, root / "fashion-mnist"):
            if _has_files(folder):
                return folder
        raise RobustgridError(f"Fashion-MNIST root {root} lacks {', '.join(n for p in FILES.values() for n in p)}")
    paths = search_paths()
    for folder in paths:
        if _has_files(folder):
            return folder
    try:
        _download(paths[-1])
    except Exception:  # offline or blocked: the actionable message below says what to do
        raise RobustgridError(
            f"missing Fashion-MNIST: searched {', '.join(map(str, paths))} and could not download it; "
            "apt-get install dataset-fashion-mnist or set ROBUSTGRID_DATA") from None
    return paths[-1]


@functools.lru_cache(maxsize=8)
def _load_folder(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Decoded (images, labels) of one split, cached per process because several callers load it."""
    img_name, lbl_name = FILES[split]
    images, labels = read_idx(folder / img_name), read_idx(folder / lbl_name)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise RobustgridError(f"{folder / img_name} holds shape {images.shape}, expected (N, 28, 28)")
    if labels.ndim != 1 or len(labels) != len(images):
        raise RobustgridError(f"{folder / lbl_name} holds {labels.shape} labels for {len(images)} images")
    if labels.size and labels.max() >= len(CLASSES):
        raise RobustgridError(f"{folder / lbl_name} holds label {labels.max()}, expected 0..9")
    labels = labels.astype(np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def _check_split(split: str) -> None:
    if split not in FILES:
        raise RobustgridError(f"Fashion-MNIST has no split {split!r}; valid: {', '.join(FILES)}")


def load_fashion_mnist(split: str, root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read-only (uint8 images N x 28 x 28, int64 labels) of a split, for loaders and scene generators."""
    _check_split(split)
    return _load_folder(find_folder(root).resolve(), split)


@register_dataset("fashion-mnist", task="classification", splits=tuple(FILES), input_shape=(1, 28, 28))
def fashion_mnist(split: str = "test", size: int | None = None, seed: int = 0,
                  root: str | Path | None = None) -> ImageDataset:
    """Fashion-MNIST clothing images, 1x28x28 grey, 10 classes (train 60k, test 10k)."""
    images, labels = subset(*load_fashion_mnist(split, root), size, seed)
    return ImageDataset(
        name="fashion-mnist", split=split,
        images=torch.from_numpy(images).unsqueeze(1).float().div_(255),
        labels=torch.from_numpy(labels), fingerprint=fingerprint(images, labels), num_classes=len(CLASSES))
