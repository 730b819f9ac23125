"""ImageNet-style folders ``root/<class>/*.jpg``: the loader for real-scale classification data."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import torch

from robustgrid.core import RobustgridError
from robustgrid.models.data.base import subset_indices
from robustgrid.models.data.registry import register_dataset
from robustgrid.models.data.stream import StreamingDataset, stream_fingerprint

EXTENSIONS = (".jpg", ".jpeg", ".png")


def read_class_index(path: str | Path) -> dict[str, int]:
    """Folder name -> label id from a JSON file ({name: id} or Keras' {"id": [wnid, label]}) or a text
    file whose line i starts with the folder name of class i (as in ImageNet's LOC_synset_mapping.txt)."""
    path = Path(path)
    try:
        text = path.read_text()
        if path.suffix == ".json":
            raw = json.loads(text)
            if all(isinstance(v, list) and v for v in raw.values()):
                return {str(v[0]): int(k) for k, v in raw.items()}
            return {str(k): int(v) for k, v in raw.items()}
        return {line.split()[0]: i for i, line in enumerate(text.splitlines()) if line.strip()}
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise RobustgridError(f"unreadable class index {path}: {type(exc).__name__}") from None


def list_images(root: Path, class_index: dict[str, int] | None) -> tuple[list[Path], list[int], int]:
    """Image files sorted by (class, name), their labels and the number of classes."""
    if not root.is_dir():
        raise RobustgridError(f"image folder root {root} does not exist")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise RobustgridError(f"image folder {root} has no class sub-folders (expected root/<class>/*.jpg)")
    if class_index is None:
        class_index = {c: i for i, c in enumerate(classes)}
    unknown = [c for c in classes if c not in class_index]
    if unknown:
        raise RobustgridError(f"class folder {unknown[0]!r} in {root} is not in the class index")
    files, labels = [], []
    for c in classes:
        found = sorted(p for p in (root / c).iterdir() if p.suffix.lower() in EXTENSIONS and p.is_file())
        files += found
        labels += [class_index[c]] * len(found)
    if not files:
        raise RobustgridError(f"image folder {root} holds no {'/'.join(EXTENSIONS)} images")
    return files, labels, max(class_index.values()) + 1


def load_image(path: Path, resize: int, crop: int, interpolation: str) -> torch.Tensor:
    """RGB float [0, 1] CHW: shorter side resized to ``resize``, centre crop ``crop`` (standard eval)."""
    from PIL import Image
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
    except (OSError, ValueError) as exc:  # UnidentifiedImageError and truncated files are OSErrors
        raise RobustgridError(f"unreadable image {path}: {type(exc).__name__}") from None
    im = TF.center_crop(TF.resize(im, resize, interpolation=InterpolationMode(interpolation)), crop)
    return TF.pil_to_tensor(im).float().div_(255)


def read_sample(item: tuple[Path, int], resize: int, crop: int,
                interpolation: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One (image, label) of an image folder, read when a batch asks for it (picklable for loader workers)."""
    path, label = item
    return load_image(path, resize, crop, interpolation), torch.tensor(label, dtype=torch.int64)


@register_dataset("imagefolder", task="classification")
def imagefolder(split: str = "test", size: int | None = None, seed: int = 0, root: str | Path | None = None,
                resize: int = 256, crop: int = 224, interpolation: str = "bilinear",
                class_index: str | Path | None = None, workers: int = 2) -> StreamingDataset:
    """ImageNet-style root/<class>/*.jpg (classes sorted = label ids, or a class index file), resized and cropped,
    streamed from disk in batches by ``workers`` loader processes."""
    if root is None:
        raise RobustgridError("dataset 'imagefolder' needs root = the folder of class sub-folders")
    if interpolation not in ("nearest", "bilinear", "bicubic"):
        raise RobustgridError(f"interpolation {interpolation!r} is not one of nearest, bilinear, bicubic")
    if crop > resize:
        raise RobustgridError(f"crop {crop} is larger than resize {resize}")
    root = Path(root).expanduser()
    files, labels, num_classes = list_images(root, read_class_index(class_index) if class_index else None)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise RobustgridError(f"imagefolder workers must be an integer >= 0, got {workers!r}")
    idx = subset_indices(len(files), size, seed).tolist()
    items = [(files[i], labels[i]) for i in idx]
    params = {"resize": resize, "crop": crop, "interpolation": interpolation}
    key, _ = stream_fingerprint("imagefolder", split, params, [[p] for p, _ in items], [lab for _, lab in items], root)
    return StreamingDataset("imagefolder", split, items, functools.partial(read_sample, **params), key, (3, crop, crop),
                            labels=torch.tensor([lab for _, lab in items], dtype=torch.int64),
                            num_classes=num_classes, workers=workers)
