"""CLIVE and KonIQ-10k loaders on tiny generated fixtures: layouts, splits, subsets and one-line errors."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import savemat

import robustgrid.models.iqa_models  # noqa: F401  (registers the IQA datasets)
from robustgrid.core import RobustgridError
from robustgrid.models.data import build_dataset
from robustgrid.models.data.mos import split_indices

RNG = np.random.default_rng(0)


def write_images(folder: Path, names: list[str], hw: tuple[int, int] = (12, 16)) -> dict[str, np.ndarray]:
    """Random RGB images saved losslessly (PNG data under .bmp/.png names PIL reads back exactly)."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for n in names:
        a = RNG.integers(0, 256, (*hw, 3), dtype=np.uint8)
        Image.fromarray(a).save(folder / n, format="BMP" if n.endswith(".bmp") else "PNG")
        arrays[n] = a
    return arrays


@pytest.fixture
def clive_release(tmp_path: Path) -> tuple[Path, list[str], np.ndarray, dict[str, np.ndarray]]:
    """The official layout: Images/, Images/trainingImages/ and the two .mat files (10 images)."""
    names = ["t1.bmp"] + [f"{i}.bmp" for i in range(10, 19)]
    arrays = write_images(tmp_path / "Images" / "trainingImages", names[:1])
    arrays |= write_images(tmp_path / "Images", names[1:])
    mos = np.round(RNG.uniform(0, 100, len(names)), 3)
    (tmp_path / "Data").mkdir()
    cell = np.empty((len(names), 1), dtype=object)
    for i, n in enumerate(names):
        cell[i, 0] = np.array([n])
    savemat(tmp_path / "Data" / "AllImages_release.mat", {"AllImages_release": cell})
    savemat(tmp_path / "Data" / "AllMOS_release.mat", {"AllMOS_release": mos[None, :]})
    return tmp_path, names, mos, arrays


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def test_clive_release_all_split_matches_files(clive_release) -> None:
    root, names, mos, arrays = clive_release
    ds = build_dataset("clive", split="all", root=root)
    assert ds.images.shape == (10, 3, 12, 16) and ds.images.dtype == torch.float32
    np.testing.assert_allclose(ds.labels.numpy(), mos, rtol=1e-6)
    for i, n in enumerate(names):  # image i is file names[i], scaled to [0, 1]
        assert torch.equal(ds.images[i], torch.from_numpy(arrays[n]).permute(2, 0, 1).float() / 255)


def test_clive_train_test_partition_is_80_20_and_disjoint(clive_release) -> None:
    root = clive_release[0]
    tr, te = build_dataset("clive", split="train", root=root), build_dataset("clive", split="test", root=root)
    assert (len(tr), len(te)) == (8, 2)
    full = build_dataset("clive", split="all", root=root).labels.numpy().tolist()
    assert sorted(tr.labels.tolist() + te.labels.tolist()) == pytest.approx(sorted(full))
    assert set(split_indices(10, "train")).isdisjoint(split_indices(10, "test"))
    again = build_dataset("clive", split="test", root=root)
    assert torch.equal(again.images, te.images) and again.fingerprint == te.fingerprint


def test_clive_csv_layout_crop_and_subset(tmp_path: Path) -> None:
    names = [f"im{i}.png" for i in range(6)]
    arrays = write_images(tmp_path / "Images", names, hw=(20, 24))
    write_csv(tmp_path / "clive.csv", ["name", "mos"], [[n, 10.0 * i] for i, n in enumerate(names)])
    ds = build_dataset("clive", split="all", size=3, seed=1, root=tmp_path, crop=8)
    assert ds.images.shape == (3, 3, 8, 8)
    i = int(ds.labels[0] / 10)
    ref = torch.from_numpy(arrays[names[i]]).permute(2, 0, 1).float() / 255
    assert torch.equal(ds.images[0], ref[:, 6:14, 8:16])  # centre crop of a 20x24 image


def test_koniq_reads_mos_column_and_zscore(tmp_path: Path) -> None:
    names = [f"{i}.jpg" for i in range(5)]
    write_images(tmp_path / "1024x768", names)
    rows = [[n, 1, 2, 3, 4, 5, 1.0 + i / 2, 0.5, 10.0 * i] for i, n in enumerate(names)]
    write_csv(tmp_path / "koniq10k_scores_and_distributions.csv",
              ["image_name", "c1", "c2", "c3", "c4", "c5", "MOS", "SD", "MOS_zscore"], rows)
    ds = build_dataset("koniq10k", split="all", root=tmp_path)
    assert ds.labels.tolist() == [1.0, 1.5, 2.0, 2.5, 3.0]
    z = build_dataset("koniq10k", split="all", root=tmp_path, score="MOS_zscore")
    assert z.labels.tolist() == [0.0, 10.0, 20.0, 30.0, 40.0]


def test_missing_image_is_a_one_line_error(clive_release) -> None:
    root, names = clive_release[0], clive_release[1]
    (root / "Images" / names[3]).unlink()
    with pytest.raises(RobustgridError, match=r"1 image\(s\) listed in the score file are missing.*'12.bmp'"):
        build_dataset("clive", split="all", root=root)


def test_non_numeric_score_is_a_one_line_error(tmp_path: Path) -> None:
    write_images(tmp_path / "1024x768", ["a.jpg", "b.jpg"])
    write_csv(tmp_path / "koniq10k_scores_and_distributions.csv", ["image_name", "MOS"], [["a.jpg", 3.1],
                                                                                         ["b.jpg", "n/a"]])
    with pytest.raises(RobustgridError, match=r"non-numeric score 'n/a' for image 'b.jpg' \(row 2\)") as info:
        build_dataset("koniq10k", split="all", root=tmp_path)
    assert "\n" not in str(info.value)


def test_missing_columns_and_mixed_sizes_are_errors(tmp_path: Path) -> None:
    write_images(tmp_path / "Images", ["a.png"], hw=(8, 8))
    write_images(tmp_path / "Images", ["b.png"], hw=(8, 10))
    write_csv(tmp_path / "clive.csv", ["file", "quality"], [["a.png", 1], ["b.png", 2]])
    with pytest.raises(RobustgridError, match="needs an image-name column"):
        build_dataset("clive", split="all", root=tmp_path)
    write_csv(tmp_path / "clive.csv", ["file", "MOS"], [["a.png", 1], ["b.png", 2]])
    with pytest.raises(RobustgridError, match="differ in size.*crop = N"):
        build_dataset("clive", split="all", root=tmp_path)
    assert build_dataset("clive", split="all", root=tmp_path, resize=[6, 6]).images.shape == (2, 3, 6, 6)
