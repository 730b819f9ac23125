"""PASCAL VOC 2012 segmentation (21 classes, 255 = object boundary / ignore) from its own folder layout."""

from __future__ import annotations

from pathlib import Path

from robustgrid.core import RobustgridError
from robustgrid.models.data.registry import register_dataset
from robustgrid.models.data.segpairs import pair_dataset
from robustgrid.models.data.stream import StreamingDataset

NUM_CLASSES = 21
SPLITS = ("train", "val", "trainval")


def find_voc(root: str | Path | None) -> Path:
    """The VOC2012 folder under ``root`` (root itself, root/VOC2012 or root/VOCdevkit/VOC2012)."""
    if root is None:
        raise RobustgridError("dataset 'voc2012' needs root = the folder holding VOCdevkit/VOC2012")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise RobustgridError(f"VOC root {root} does not exist")
    for folder in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (folder / "ImageSets" / "Segmentation").is_dir():
            return folder
    raise RobustgridError(f"VOC root {root} has no VOCdevkit/VOC2012/ImageSets/Segmentation")


def voc_pairs(folder: Path, split: str) -> list[tuple[Path, Path]]:
    """(JPEGImages/<id>.jpg, SegmentationClass/<id>.png) for every id of the split list."""
    listing = folder / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not listing.is_file():
        raise RobustgridError(f"missing VOC split list {listing}")
    ids = [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]
    if not ids:
        raise RobustgridError(f"VOC split list {listing} is empty")
    return [(folder / "JPEGImages" / f"{i}.jpg", folder / "SegmentationClass" / f"{i}.png") for i in ids]


@register_dataset("voc2012", task="segmentation", splits=SPLITS, num_classes=NUM_CLASSES, ignore_index=255)
def voc2012(split: str = "val", size: int | None = None, seed: int = 0, root: str | Path | None = None,
            resize: int = 512, crop: int | tuple[int, int] | None = 512, workers: int = 2) -> StreamingDataset:
    """PASCAL VOC 2012 segmentation, 21 classes (val 1,449): shorter side resized, centre crop."""
    if split not in SPLITS:
        raise RobustgridError(f"voc2012 has no split {split!r}; valid: {', '.join(SPLITS)}")
    return pair_dataset("voc2012", split, voc_pairs(find_voc(root), split), size, seed, resize, crop, NUM_CLASSES,
                        workers=workers)
