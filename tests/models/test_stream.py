"""Real-data loaders stream from disk: batches through DataLoader workers equal direct reads, and the
fingerprint follows file contents, not where the folder lies."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from robustgrid.core import RobustgridError
from robustgrid.models.data import build_dataset
from robustgrid.models.data.imagefolder import load_image
from robustgrid.models.data.stream import StreamingDataset


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """root/<class>/*.png of seeded noise, 3 classes x 7 images of varying size."""
    rng = np.random.default_rng(0)
    root = tmp_path / "val"
    for c in ("a", "b", "c"):
        (root / c).mkdir(parents=True)
        for i in range(7):
            arr = rng.integers(0, 256, (30 + i, 40 + 2 * i, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / c / f"{i}.png")
    return root


def test_worker_batches_equal_direct_reads(folder: Path) -> None:
    ds = build_dataset("imagefolder", root=folder, resize=32, crop=24, workers=2)
    assert isinstance(ds, StreamingDataset) and len(ds) == 21 and ds.sample_shape == (3, 24, 24)
    batches = list(ds.batches(4))
    assert [len(x) for x, _ in batches] == [4, 4, 4, 4, 4, 1]
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    files = sorted(folder.glob("*/*.png"))
    direct = torch.stack([load_image(f, 32, 24, "bilinear") for f in files])
    assert torch.equal(x, direct) and y.tolist() == [i // 7 for i in range(21)]
    assert torch.equal(y, ds.labels)
    part = torch.cat([b[0] for b in ds.batches(4, start=5, stop=13)])
    assert torch.equal(part, direct[5:13])


def test_fingerprint_follows_content_not_location(folder: Path, tmp_path: Path) -> None:
    base = build_dataset("imagefolder", root=folder, resize=32, crop=24).fingerprint
    moved = tmp_path / "elsewhere" / "val"
    shutil.copytree(folder, moved)
    assert build_dataset("imagefolder", root=moved, resize=32, crop=24).fingerprint == base
    assert build_dataset("imagefolder", root=moved, resize=32, crop=16).fingerprint != base  # read differently
    img = np.asarray(Image.open(moved / "b" / "3.png")).copy()
    img[0, 0, 0] ^= 1  # one bit of one pixel
    Image.fromarray(img).save(moved / "b" / "3.png")
    assert build_dataset("imagefolder", root=moved, resize=32, crop=24).fingerprint != base


def test_unreadable_files_fail_before_any_batch(folder: Path) -> None:
    (folder / "a" / "9.png").write_bytes(b"\x89PNG truncated")
    with pytest.raises(RobustgridError, match=r"unreadable image .*9\.png"):
        build_dataset("imagefolder", root=folder, resize=32, crop=24)


def test_bad_worker_count_is_one_line(folder: Path) -> None:
    with pytest.raises(RobustgridError, match="workers must be an integer >= 0"):
        build_dataset("imagefolder", root=folder, workers=-1)
