"""Cityscapes fine annotations: label ids mapped to the 19 evaluation (train) ids, everything else 255."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robustgrid.core import RobustgridError
from robustgrid.models.data.registry import register_dataset
from robustgrid.models.data.segpairs import pair_dataset
from robustgrid.models.data.stream import StreamingDataset

NUM_CLASSES = 19
SPLITS = ("train", "val", "test")
# labelId -> trainId of the 19 evaluated classes (cityscapesScripts' labels.py), others ignored
TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13,
             27: 14, 28: 15, 31: 16, 32: 17, 33: 18}


def train_id_lut() -> np.ndarray:
    """256-entry lookup table labelId -> trainId (255 = ignore)."""
    lut = np.full(256, 255, dtype=np.uint8)
    for label_id, train_id in TRAIN_IDS.items():
        lut[label_id] = train_id
    return lut


def cityscapes_pairs(root: str | Path | None, split: str) -> list[tuple[Path, Path]]:
    """(leftImg8bit/<split>/<city>/*_leftImg8bit.png, gtFine/<split>/<city>/*_gtFine_labelIds.png) pairs."""
    if root is None:
        raise RobustgridError("dataset 'cityscapes' needs root = the folder holding leftImg8bit and gtFine")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise RobustgridError(f"Cityscapes root {root} does not exist")
    images_dir = root / "leftImg8bit" / split
    if not images_dir.is_dir():
        raise RobustgridError(f"Cityscapes root {root} has no leftImg8bit/{split}")
    images = sorted(images_dir.glob("*/*_leftImg8bit.png"))
    if not images:
        raise RobustgridError(f"no *_leftImg8bit.png images under {images_dir}")
    gt = root / "gtFine" / split
    return [(p, gt / p.parent.name / p.name.replace("_leftImg8bit.png", "_gtFine_labelIds.png")) for p in images]


@register_dataset("cityscapes", task="segmentation", splits=SPLITS, num_classes=NUM_CLASSES, ignore_index=255)
def cityscapes(split: str = "val", size: int | None = None, seed: int = 0, root: str | Path | None = None,
               resize: int = 512, crop: int | tuple[int, int] | None = None, workers: int = 2) -> StreamingDataset:
    """Cityscapes fine, 19 classes (val 500, 1024x2048): shorter side resized (512 -> 512x1024), optional crop."""
    if split not in SPLITS:
        raise RobustgridError(f"cityscapes has no split {split!r}; valid: {', '.join(SPLITS)}")
    return pair_dataset("cityscapes", split, cityscapes_pairs(root, split), size, seed, resize, crop, NUM_CLASSES,
                        lut=train_id_lut(), workers=workers)
