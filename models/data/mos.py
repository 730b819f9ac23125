"""Scored image folders (CLIVE, KonIQ-10k): a table of (image name, MOS) plus the images, as an ImageDataset.

Shared by the real-data IQA loaders: score-table checks, the seeded 80/20 train/test split, reading only
the selected images, and centre crop / resize to one common size (a dataset is one NCHW tensor).
"""

from __future__ import annotations

import csv
import functools
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from robustgrid.core import RobustgridError
from robustgrid.models.data.base import subset_indices
from robustgrid.models.data.stream import StreamingDataset, stream_fingerprint

SPLITS = ("all", "train", "test")
TRAIN_FRACTION = 0.8   # the usual IQA convention: a random 80/20 split of the images
SPLIT_SEED = 0         # fixed, so "test" is the same images for every run and every seed
NAME_COLUMNS = ("image_name", "img_name", "image", "name", "filename", "file")


def parse_scores(names: Sequence[object], scores: Sequence[object], source: Path) -> tuple[list[str], np.ndarray]:
    """Names as strings and scores as finite floats; an empty table or a non-numeric score is a one-line error."""
    if len(names) == 0:
        raise RobustgridError(f"score file {source} lists no images")
    if len(names) != len(scores):
        raise RobustgridError(f"score file {source} has {len(names)} image names but {len(scores)} scores")
    values = []
    for i, (name, s) in enumerate(zip(names, scores)):
        try:
            v = float(s)
        except (TypeError, ValueError):
            v = math.nan
        if not math.isfinite(v):
            raise RobustgridError(f"score file {source}: non-numeric score {s!r} for image {name!r} (row {i + 1})")
        values.append(v)
    return [str(n).strip() for n in names], np.asarray(values, dtype=np.float32)


def read_score_csv(path: Path, score_column: str | None = None) -> tuple[list[str], np.ndarray]:
    """(names, scores) from a CSV with a header: a name column (image_name, name, ...) and ``score_column``
    (default: the first of mos / MOS / score), e.g. KonIQ's file or a redistributed CLIVE ``name,mos``."""
    if not path.is_file():
        raise RobustgridError(f"score file not found: {path}")
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    header = {k.strip().lower(): k for k in (rows[0].keys() if rows else [])}
    name_col = next((header[c] for c in NAME_COLUMNS if c in header), None)
    wanted = [score_column.lower()] if score_column else ["mos", "score"]
    score_col = next((header[c] for c in wanted if c in header), None)
    if name_col is None or score_col is None:
        raise RobustgridError(f"score file {path} needs an image-name column ({', '.join(NAME_COLUMNS)}) and a "
                              f"score column ({' or '.join(wanted)}); it has {', '.join(header.values()) or 'none'}")
    return parse_scores([r[name_col] for r in rows], [r[score_col] for r in rows], path)


def resolve_images(names: Sequence[str], folders: Sequence[Path]) -> list[Path]:
    """The file of every name, searched in ``folders`` in order; any missing image is a one-line error."""
    paths, missing = [], []
    for n in names:
        hit = next((d / n for d in folders if (d / n).is_file()), None)
        (paths if hit is not None else missing).append(hit if hit is not None else n)
    if missing:
        where = ", ".join(str(d) for d in folders)
        raise RobustgridError(f"{len(missing)} image(s) listed in the score file are missing from {where}, "
                              f"e.g. {missing[0]!r}")
    return paths


def split_indices(n: int, split: str) -> np.ndarray:
    """Indices of ``split``: all, or the seeded 80 % train / 20 % test partition of the score table."""
    if split not in SPLITS:
        raise RobustgridError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    if split == "all":
        return np.arange(n)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED)).numpy()
    cut = int(round(TRAIN_FRACTION * n))
    return np.sort(order[:cut] if split == "train" else order[cut:])


def _pair(v: int | Sequence[int] | None, what: str) -> tuple[int, int] | None:
    if v is None:
        return None
    hw = (v, v) if isinstance(v, int) else tuple(v)
    if len(hw) != 2 or not all(isinstance(s, int) and s > 0 for s in hw):
        raise RobustgridError(f"{what} must be a positive integer or [H, W], got {v!r}")
    return hw  # type: ignore[return-value]


def read_image(path: Path, resize: tuple[int, int] | None, crop: tuple[int, int] | None) -> torch.Tensor:
    """One image as float CHW in [0, 1]: RGB, resized (antialiased bilinear) then centre-cropped if asked."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise RobustgridError(f"unreadable image {path}: {type(exc).__name__}") from None
    x = torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div(255)
    if resize is not None:
        x = F.interpolate(x[None], size=resize, mode="bilinear", antialias=True, align_corners=False)[0].clamp(0, 1)
    if crop is not None:
        h, w = x.shape[-2:]
        if crop[0] > h or crop[1] > w:
            raise RobustgridError(f"crop {crop[0]}x{crop[1]} is larger than image {path.name} ({h}x{w})")
        top, left = (h - crop[0]) // 2, (w - crop[1]) // 2
        x = x[:, top:top + crop[0], left:left + crop[1]]
    return x


def read_scored(item: tuple[Path, float], resize: tuple[int, int] | None,
                crop: tuple[int, int] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One (image, MOS) sample, read when a batch asks for it (picklable for loader workers)."""
    return read_image(item[0], resize, crop), torch.tensor(item[1], dtype=torch.float32)


def scored_dataset(name: str, names: list[str], scores: np.ndarray, folders: Sequence[Path], split: str,
                   size: int | None, seed: int, resize: int | Sequence[int] | None = None,
                   crop: int | Sequence[int] | None = None, workers: int = 2) -> StreamingDataset:
    """Check every listed image exists and reads, pick the split and the seeded subset, and stream those images."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise RobustgridError(f"{name} workers must be an integer >= 0, got {workers!r}")
    paths = resolve_images(names, folders)
    idx = split_indices(len(names), split)
    idx = idx[subset_indices(len(idx), size, seed).numpy()]
    rs, cr = _pair(resize, "resize"), _pair(crop, "crop")
    items = [(paths[i], float(scores[i])) for i in idx]
    key, sizes = stream_fingerprint(name, split, {"resize": rs, "crop": cr}, [[p] for p, _ in items],
                                    [(names[i], float(scores[i])) for i in idx], folders[0])
    shapes = sorted({cr or rs or (h, w) for ((w, h), _), in sizes})
    for (path, _), (((w, h), _),) in zip(items, sizes, strict=True):
        if cr is not None and (cr[0] > (rs or (h, w))[0] or cr[1] > (rs or (h, w))[1]):
            raise RobustgridError(f"crop {cr[0]}x{cr[1]} is larger than image {path.name} ({h}x{w})")
    if len(shapes) > 1:
        raise RobustgridError(f"{name} images differ in size ({shapes[0][0]}x{shapes[0][1]} vs "
                              f"{shapes[-1][0]}x{shapes[-1][1]}); pass crop = N or resize = [H, W]")
    return StreamingDataset(name, split, items, functools.partial(read_scored, resize=rs, crop=cr), key,
                            (3, *shapes[0]) if shapes else (3, 0, 0),
                            labels=torch.tensor([s for _, s in items], dtype=torch.float32), workers=workers)
