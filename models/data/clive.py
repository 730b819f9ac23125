"""CLIVE (LIVE In the Wild Image Quality Challenge): 1,162 authentically distorted photos, MOS 0-100.

Two layouts are read: the official release (``Images/*.bmp|jpg`` with ``Data/AllImages_release.mat`` and
``Data/AllMOS_release.mat``) or a redistributed CSV ``clive.csv`` of ``name,mos`` next to ``Images/``.
The seven practice images of the release (t1-t7) live in ``Images/trainingImages`` and are found there.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from robustgrid.core import RobustgridError
from robustgrid.models.data.mos import parse_scores, read_score_csv, scored_dataset
from robustgrid.models.data.registry import register_dataset
from robustgrid.models.data.stream import StreamingDataset

NAMES_MAT, MOS_MAT, CSV = "Data/AllImages_release.mat", "Data/AllMOS_release.mat", "clive.csv"


def _mat_variable(path: Path, key: str) -> np.ndarray:
    from scipy.io import loadmat

    if not path.is_file():
        raise RobustgridError(f"CLIVE score file not found: {path}")
    try:
        data = loadmat(str(path))
    except Exception as exc:  # scipy raises several types for a damaged file
        raise RobustgridError(f"unreadable CLIVE file {path}: {type(exc).__name__}") from None
    if key not in data:
        raise RobustgridError(f"CLIVE file {path} has no variable {key!r}")
    return np.asarray(data[key]).reshape(-1)


def read_clive_scores(root: Path) -> tuple[list[str], np.ndarray]:
    """(image names, MOS) from ``clive.csv`` when present, else from the release's two .mat files."""
    if (root / CSV).is_file():
        return read_score_csv(root / CSV)
    names = [str(np.asarray(n).reshape(-1)[0]) for n in _mat_variable(root / NAMES_MAT, "AllImages_release")]
    return parse_scores(names, list(_mat_variable(root / MOS_MAT, "AllMOS_release")), root / MOS_MAT)


def clive_root(root: str | Path | None) -> Path:
    """``root`` or $ROBUSTGRID_DATA/clive; a folder without the expected files is a one-line error."""
    if root is None:
        if not os.environ.get("ROBUSTGRID_DATA"):
            raise RobustgridError("CLIVE needs root = PATH (a folder with Images/ and Data/ or clive.csv), "
                                  "or ROBUSTGRID_DATA with a clive/ folder")
        root = Path(os.environ["ROBUSTGRID_DATA"]) / "clive"
    root = Path(root)
    if not (root / "Images").is_dir():
        raise RobustgridError(f"CLIVE folder {root} has no Images/ folder")
    return root


@register_dataset("clive", task="iqa")
def clive(split: str = "test", size: int | None = None, seed: int = 0, root: str | Path | None = None,
          resize: int | list[int] | None = None, crop: int | list[int] | None = None,
          workers: int = 2) -> StreamingDataset:
    """CLIVE photos with MOS (0-100); split all / train / test (seeded 80/20); crop or resize to one size."""
    folder = clive_root(root)
    names, mos = read_clive_scores(folder)
    return scored_dataset("clive", names, mos, [folder / "Images", folder / "Images" / "trainingImages"],
                          split, size, seed, resize, crop, workers)
