"""The fmnist-scenes generator: deterministic, labels in range, garments drawn from their own split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustgrid.core import RobustgridError
from robustgrid.models.data import build_dataset
from robustgrid.models.data.fashion_mnist import load_fashion_mnist
from robustgrid.models.data.scenes import (
    IGNORE,
    NUM_CLASSES,
    SCENE_CLASSES,
    SCENE_LABEL,
    SceneConfig,
    make_scenes,
    render_scene,
)

CFG = SceneConfig()


def _scene(seed: int, split: str, index: int):
    return render_scene(seed, split, index, *load_fashion_mnist(split), CFG)


def test_same_seed_same_scene_and_other_seeds_differ():
    a, b = _scene(0, "test", 7), _scene(0, "test", 7)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    assert not np.array_equal(_scene(1, "test", 7)[0], a[0])
    assert not np.array_equal(_scene(0, "test", 8)[0], a[0])
    assert not np.array_equal(_scene(0, "train", 7)[0], a[0])


def test_a_scene_depends_on_its_index_only():
    x_all, y_all = make_scenes("test", [0, 1, 2, 3])
    x_one, y_one = make_scenes("test", [2])
    assert torch.equal(x_all[2], x_one[0]) and torch.equal(y_all[2], y_one[0])


def test_images_and_labels_are_well_formed():
    ds = build_dataset("fmnist-scenes", split="test", size=16, seed=0)
    assert ds.images.shape == (16, 3, 64, 64) and ds.images.dtype == torch.float32
    assert ds.labels.shape == (16, 64, 64) and ds.labels.dtype == torch.int64
    assert 0 <= ds.images.min() and ds.images.max() <= 1
    assert torch.equal(ds.images * 255, (ds.images * 255).round())  # 8-bit levels, like real photos
    assert set(ds.labels.unique().tolist()) <= set(range(NUM_CLASSES)) | {IGNORE}
    assert ds.num_classes == NUM_CLASSES == len(SCENE_CLASSES) == 6
    ignored = (ds.labels == IGNORE).float().mean().item()
    background = (ds.labels == 0).float().mean().item()
    assert 0.0 < ignored < 0.1 and 0.5 < background < 0.9
    for labels in ds.labels:  # every scene shows at least one garment
        assert ((labels > 0) & (labels != IGNORE)).any()


def test_background_is_not_separable_by_brightness():
    x, y = make_scenes("test", range(32))
    lum = x.mean(1)
    bg, fg = lum[y == 0], lum[(y > 0) & (y != IGNORE)]
    # the garment and background brightness ranges overlap almost completely
    assert bg.quantile(0.1) < fg.median() < bg.quantile(0.9)


@pytest.mark.parametrize("split", ["train", "test"])
def test_garments_come_from_their_own_split(split):
    src_images, src_labels = load_fashion_mnist(split)
    other_labels = load_fashion_mnist("test" if split == "train" else "train")[1]
    agree_other = 0
    for index in range(20):
        _, labels, placements = render_scene(0, split, index, src_images, src_labels, CFG)
        assert 2 <= len(placements) <= 4
        for p in placements:
            assert p.source_split == split
            assert p.label == SCENE_LABEL[src_labels[p.source_index]]
            agree_other += p.source_index < len(other_labels) and p.label == SCENE_LABEL[other_labels[p.source_index]]
        top = placements[-1]  # painted last, so never occluded: its label shows inside its box
        box = labels[top.top:top.top + top.side, top.left:top.left + top.side]
        assert (box == top.label).any()
    assert agree_other < 30  # the other split's labels at the same indices agree by chance (~28% of ~60 garments)


def test_fingerprint_identifies_the_scenes():
    a = build_dataset("fmnist-scenes", split="test", size=4, seed=0)
    b = build_dataset("fmnist-scenes", split="test", size=4, seed=0)
    c = build_dataset("fmnist-scenes", split="test", size=4, seed=1)
    assert a.fingerprint == b.fingerprint != c.fingerprint


@pytest.mark.parametrize("params, message", [
    ({"split": "val"}, "fmnist-scenes has no split 'val'; valid: train, test"),
    ({"min_items": 1}, "min_items"),
    ({"image_size": 20}, "smaller than the largest garment"),
    ({"size": 5, "scenes": 4}, "exceeds the 4 available"),
])
def test_bad_parameters_are_one_line_errors(params, message):
    with pytest.raises(RobustgridError, match=message):
        build_dataset("fmnist-scenes", **params)


def test_scene_classes_group_the_garments_that_cannot_be_told_apart_at_scene_size():
    """Every Fashion-MNIST class maps to one scene class: the four tops and the three shoes each to one."""
    from robustgrid.models.data.fashion_mnist import CLASSES

    by_class = dict(zip(CLASSES, (SCENE_CLASSES[i] for i in SCENE_LABEL), strict=True))
    assert {c for c, s in by_class.items() if s == "top"} == {"T-shirt/top", "Pullover", "Coat", "Shirt"}
    assert {c for c, s in by_class.items() if s == "footwear"} == {"Sandal", "Sneaker", "Ankle boot"}
    assert sorted(set(SCENE_LABEL.tolist())) == list(range(1, NUM_CLASSES))  # background is never a garment
