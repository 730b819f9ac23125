"""KonIQ-10k: 10,073 in-the-wild photos (1024x768) with MOS on 1-5 (``MOS``) and 0-100 (``MOS_zscore``).

Reads ``koniq10k_scores_and_distributions.csv`` (columns ``image_name``, ``MOS``, ``MOS_zscore``, ...) and the
images from ``1024x768/`` (or the half-size ``512x384/`` release with ``resolution="512x384"``).
"""

from __future__ import annotations

import os
from pathlib import Path

from robustgrid.core import RobustgridError
from robustgrid.models.data.mos import read_score_csv, scored_dataset
from robustgrid.models.data.registry import register_dataset
from robustgrid.models.data.stream import StreamingDataset

SCORES = "koniq10k_scores_and_distributions.csv"
RESOLUTIONS = ("1024x768", "512x384")


@register_dataset("koniq10k", task="iqa")
def koniq10k(split: str = "test", size: int | None = None, seed: int = 0, root: str | Path | None = None,
             resize: int | list[int] | None = None, crop: int | list[int] | None = None,
             resolution: str = "1024x768", score: str = "MOS", workers: int = 2) -> StreamingDataset:
    """KonIQ-10k photos with MOS (column ``score``: MOS 1-5 or MOS_zscore); split all / train / test (80/20)."""
    if resolution not in RESOLUTIONS:
        raise RobustgridError(f"unknown KonIQ resolution {resolution!r}; valid: {', '.join(RESOLUTIONS)}")
    if root is None:
        if not os.environ.get("ROBUSTGRID_DATA"):
            raise RobustgridError(f"KonIQ-10k needs root = PATH (a folder with {resolution}/ and {SCORES}), "
                                  "or ROBUSTGRID_DATA with a koniq10k/ folder")
        root = Path(os.environ["ROBUSTGRID_DATA"]) / "koniq10k"
    folder = Path(root)
    if not (folder / resolution).is_dir():
        raise RobustgridError(f"KonIQ-10k folder {folder} has no {resolution}/ image folder")
    names, mos = read_score_csv(folder / SCORES, score)
    return scored_dataset("koniq10k", names, mos, [folder / resolution], split, size, seed, resize, crop, workers)
