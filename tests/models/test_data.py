"""Fashion-MNIST IDX reader, deterministic subsets, and the ImageFolder loader on generated fixtures."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from robustgrid.core import RobustgridError
from robustgrid.models.data import build_dataset, list_datasets, subset, subset_indices
from robustgrid.models.data import fashion_mnist as fm

# --- Fashion-MNIST -------------------------------------------------------------------------------


def write_idx_gz(path: Path, magic: int, array: np.ndarray) -> None:
    """Independent IDX writer: big-endian magic and dimensions, then the raw bytes."""
    header = struct.pack(">i", magic) + struct.pack(f">{array.ndim}i", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def tiny_fmnist(tmp_path: Path) -> tuple[Path, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """A folder with the four IDX files holding 6 train and 4 test random images."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 6), ("test", 4)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        img_name, lbl_name = fm.FILES[split]
        write_idx_gz(tmp_path / img_name, 2051, images)
        write_idx_gz(tmp_path / lbl_name, 2049, labels)
        arrays[split] = (images, labels)
    return tmp_path, arrays


@pytest.mark.parametrize(("split", "n"), [("train", 60000), ("test", 10000)])
def test_real_files_shapes_dtypes_and_balanced_labels(split: str, n: int) -> None:
    images, labels = fm.load_fashion_mnist(split)
    assert images.shape == (n, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (n,) and labels.dtype == np.int64
    assert np.bincount(labels).tolist() == [n // 10] * 10  # Fashion-MNIST is exactly balanced
    assert not images.flags.writeable  # the per-process cache hands out read-only arrays


def test_dataset_is_the_seeded_subset_scaled_to_unit_range() -> None:
    raw_images, raw_labels = fm.load_fashion_mnist("test")
    ds = build_dataset("fashion-mnist", split="test", size=100, seed=3)
    idx = subset_indices(10000, 100, 3).numpy()
    assert ds.images.shape == (100, 1, 28, 28) and ds.images.dtype == torch.float32
    assert torch.equal(ds.images[:, 0], torch.from_numpy(raw_images[idx]).float() / 255)
    assert torch.equal(ds.labels, torch.from_numpy(raw_labels[idx]))
    assert (ds.name, ds.split, ds.num_classes, len(ds)) == ("fashion-mnist", "test", 10, 100)
    assert ds.fingerprint == build_dataset("fashion-mnist", size=100, seed=3).fingerprint
    assert ds.fingerprint != build_dataset("fashion-mnist", size=100, seed=4).fingerprint


def test_idx_round_trip_exact(tiny_fmnist) -> None:
    root, arrays = tiny_fmnist
    for split, (images, labels) in arrays.items():
        got_images, got_labels = fm.load_fashion_mnist(split, root=root)
        assert np.array_equal(got_images, images) and np.array_equal(got_labels, labels.astype(np.int64))
    ds = build_dataset("fashion-mnist", split="train", root=root)
    assert torch.equal(ds.images[:, 0] * 255, torch.from_numpy(arrays["train"][0]).float())


def test_writer_matches_the_reference_format(tmp_path: Path) -> None:
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    fm.write_idx(tmp_path / "a.gz", array)
    write_idx_gz(tmp_path / "b.gz", 2051, array)
    assert gzip.decompress((tmp_path / "a.gz").read_bytes()) == gzip.decompress((tmp_path / "b.gz").read_bytes())


def test_search_order_finds_robustgrid_data_subfolder(tiny_fmnist, tmp_path_factory, monkeypatch) -> None:
    root, _ = tiny_fmnist
    data = tmp_path_factory.mktemp("data")
    (data / "fashion-mnist").symlink_to(root, target_is_directory=True)
    monkeypatch.setenv("ROBUSTGRID_DATA", str(data))
    assert fm.find_folder() == data / "fashion-mnist"


def _cut_gzip(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-20])


def _short_payload(path: Path) -> None:
    write_idx_gz(path, 2051, np.zeros((3, 28, 28), np.uint8))
    data = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(data[:-5]))


def _bad_magic(path: Path) -> None:
    write_idx_gz(path, 0x0D03, np.zeros((4, 28, 28), np.uint8))  # type 0x0D is float, not ubyte


def _not_gzip(path: Path) -> None:
    path.write_bytes(b"definitely not a gzip stream")


@pytest.mark.parametrize("damage", [_cut_gzip, _short_payload, _bad_magic, _not_gzip])
def test_corrupt_idx_is_one_line_error_naming_the_file(tiny_fmnist, damage) -> None:
    root, _ = tiny_fmnist
    bad = root / fm.FILES["test"][0]
    damage(bad)
    with pytest.raises(RobustgridError) as err:
        fm.load_fashion_mnist("test", root=root)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


def test_wrong_image_shape_is_an_error(tmp_path: Path, tiny_fmnist) -> None:
    root, _ = tiny_fmnist
    write_idx_gz(root / fm.FILES["test"][0], 2051, np.zeros((4, 14, 14), np.uint8))
    with pytest.raises(RobustgridError, match=r"expected \(N, 28, 28\)"):
        fm.load_fashion_mnist("test", root=root)


def test_missing_explicit_root_is_named(tmp_path: Path) -> None:
    with pytest.raises(RobustgridError, match="does not exist") as err:
        build_dataset("fashion-mnist", root=tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value)
    with pytest.raises(RobustgridError, match="lacks") as err:
        build_dataset("fashion-mnist", root=tmp_path)
    assert str(tmp_path) in str(err.value)


def test_missing_everywhere_says_how_to_get_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("ROBUSTGRID_DATA", raising=False)
    monkeypatch.setenv("ROBUSTGRID_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(fm, "SYSTEM_DIR", tmp_path / "system")

    def offline(dest: Path) -> None:
        raise OSError("network is unreachable")

    monkeypatch.setattr(fm, "_download", offline)
    with pytest.raises(RobustgridError) as err:
        fm.load_fashion_mnist("test")
    msg = str(err.value)
    assert "missing Fashion-MNIST" in msg and "apt-get install dataset-fashion-mnist" in msg
    assert "ROBUSTGRID_DATA" in msg and str(tmp_path / "system") in msg and "\n" not in msg


def test_unknown_split_and_dataset_names() -> None:
    with pytest.raises(RobustgridError, match="valid: train, test"):
        build_dataset("fashion-mnist", split="val")
    with pytest.raises(RobustgridError, match="did you mean fashion-mnist"):
        build_dataset("fashion_mnist")
    assert {"fashion-mnist", "imagefolder"} <= {name for name, _ in list_datasets()}


# --- deterministic subsets -----------------------------------------------------------------------


def test_subset_is_seeded_sorted_and_bounded() -> None:
    a, b, c = subset_indices(1000, 50, 1), subset_indices(1000, 50, 1), subset_indices(1000, 50, 2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len(a.unique()) == 50 and torch.equal(a, a.sort().values) and 0 <= a.min() and a.max() < 1000
    assert torch.equal(subset_indices(7, None, 5), torch.arange(7))
    with pytest.raises(RobustgridError, match="exceeds the 7 available"):
        subset_indices(7, 8, 0)
    with pytest.raises(RobustgridError, match="positive integer"):
        subset_indices(7, 0, 0)


def test_subset_selects_the_same_rows_of_arrays_and_tensors() -> None:
    values = np.arange(20) * 10
    np_images, np_labels = subset(values, values + 1, 5, seed=9)
    t_images, t_labels = subset(torch.from_numpy(values), torch.from_numpy(values + 1), 5, seed=9)
    assert np.array_equal(np_images, t_images.numpy()) and np.array_equal(np_labels, np_images + 1)


# --- ImageFolder ---------------------------------------------------------------------------------

COLOURS = {"cat": [(255, 0, 0), (0, 128, 255), (10, 20, 30)], "dog": [(0, 255, 0), (200, 200, 200)]}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """root/<class>/*.png of solid colours and odd sizes, plus a stray non-image file."""
    root = tmp_path / "val"
    for cls, colours in COLOURS.items():
        (root / cls).mkdir(parents=True)
        for i, colour in enumerate(colours):
            Image.new("RGB", (40 + 7 * i, 30 + 5 * i), colour).save(root / cls / f"{i}.png")
    (root / "cat" / "notes.txt").write_text("not an image")
    return root


def test_imagefolder_labels_shape_and_values(folder: Path) -> None:
    ds = build_dataset("imagefolder", root=folder, resize=32, crop=24)
    assert ds.images.shape == (5, 3, 24, 24) and ds.images.dtype == torch.float32
    assert ds.labels.tolist() == [0, 0, 0, 1, 1] and ds.num_classes == 2
    expected = torch.tensor([c for cls in sorted(COLOURS) for c in COLOURS[cls]], dtype=torch.float32) / 255
    assert torch.allclose(ds.images.mean(dim=(2, 3)), expected, atol=1 / 255)
    assert 0.0 <= ds.images.min() and ds.images.max() <= 1.0


def test_imagefolder_subset_and_grey_images(folder: Path) -> None:
    Image.new("L", (50, 50), 77).save(folder / "dog" / "grey.png")
    ds = build_dataset("imagefolder", root=folder, size=3, seed=1, resize=16, crop=16)
    idx = subset_indices(6, 3, 1).tolist()
    assert ds.labels.tolist() == [[0, 0, 0, 1, 1, 1][i] for i in idx]
    full = build_dataset("imagefolder", root=folder, resize=16, crop=16)
    assert torch.equal(ds.images, full.images[idx])
    assert torch.allclose(full.images[5], torch.full((3, 16, 16), 77 / 255))  # 'grey.png' sorts after 1.png


@pytest.mark.parametrize(("content", "suffix", "expected"), [
    ({"dog": 5, "cat": 7}, ".json", ([7, 7, 7, 5, 5], 8)),
    ({"0": ["dog", "Dog"], "1": ["cat", "Cat"]}, ".json", ([1, 1, 1, 0, 0], 2)),
    ("dog a dog\ncat a cat\n", ".txt", ([1, 1, 1, 0, 0], 2)),
])
def test_imagefolder_class_index_files(folder: Path, tmp_path: Path, content, suffix, expected) -> None:
    index = tmp_path / f"index{suffix}"
    index.write_text(content if isinstance(content, str) else json.dumps(content))
    ds = build_dataset("imagefolder", root=folder, resize=16, crop=16, class_index=index)
    assert (ds.labels.tolist(), ds.num_classes) == expected


def test_imagefolder_errors(folder: Path, tmp_path: Path) -> None:
    with pytest.raises(RobustgridError, match="does not exist") as err:
        build_dataset("imagefolder", root=tmp_path / "missing")
    assert str(tmp_path / "missing") in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RobustgridError, match="no class sub-folders"):
        build_dataset("imagefolder", root=tmp_path / "empty")
    (tmp_path / "empty" / "cls").mkdir()
    with pytest.raises(RobustgridError, match="holds no"):
        build_dataset("imagefolder", root=tmp_path / "empty")
    with pytest.raises(RobustgridError, match="needs root"):
        build_dataset("imagefolder")
    (folder / "dog" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(RobustgridError, match="unreadable image") as err:
        build_dataset("imagefolder", root=folder, resize=16, crop=16)
    assert str(folder / "dog" / "broken.jpg") in str(err.value)
    index = tmp_path / "only-dog.json"
    index.write_text(json.dumps({"dog": 0}))
    with pytest.raises(RobustgridError, match="'cat' .* not in the class index"):
        build_dataset("imagefolder", root=folder, class_index=index)
