"""skimage-iqa: deterministic generation, disjoint source photographs, labels in range and monotone in level."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from robustgrid.models.data import build_dataset
from robustgrid.models.data.iqa_patches import (
    DISTORTIONS,
    SOURCES,
    PatchConfig,
    generate_patches,
    load_patches,
    load_photo,
    pristine_patches,
    unlabeled_patches,
)

TINY = PatchConfig(train_per_source=1, test_per_source=1, train_kinds_per_patch=1, test_kinds_per_patch=1)


@pytest.fixture(scope="module")
def test_split():
    """The full default test split (cached under $ROBUSTGRID_HOME after its first generation)."""
    return load_patches("test")


def test_generation_is_deterministic_and_seeded(tmp_path) -> None:
    a, b = generate_patches("test", TINY), generate_patches("test", TINY)
    for key, value in a.arrays().items():
        np.testing.assert_array_equal(value, b.arrays()[key])
    picks = [pristine_patches("coffee", PatchConfig(seed=s), 4, np.random.default_rng(s)) for s in (0, 0, 1)]
    assert torch.equal(picks[0], picks[1]) and not torch.equal(picks[0], picks[2])
    cached = load_patches("test", TINY, cache=tmp_path, generate=lambda *_: a)  # written to the cache ...
    again = load_patches("test", TINY, cache=tmp_path, generate=lambda *_: pytest.fail("cache was not used"))
    for key, value in cached.arrays().items():  # ... and read back identically
        np.testing.assert_array_equal(value, again.arrays()[key])
    assert load_patches("test", PatchConfig(seed=5), cache=tmp_path, generate=lambda *_: b) is b  # other key


def test_train_and_test_come_from_disjoint_photographs() -> None:
    assert not set(SOURCES["train"]) & set(SOURCES["test"])
    digests = {name: hashlib.sha256(load_photo(name).tobytes()).hexdigest() for split in SOURCES
               for name in SOURCES[split]}
    assert len(set(digests.values())) == len(digests)  # no photograph appears under two names
    tiles = {split: {t.numpy().tobytes() for name in SOURCES[split]
                     for t in pristine_patches(name, PatchConfig(), 4, np.random.default_rng(0))} for split in SOURCES}
    assert len(tiles["train"]) == 4 * len(SOURCES["train"]) and len(tiles["test"]) == 4 * len(SOURCES["test"])
    assert not tiles["train"] & tiles["test"]


def test_labels_lie_in_range_and_fall_with_the_level(test_split) -> None:
    p = test_split
    assert p.labels.min() >= 0 and p.labels.max() <= 100
    assert (p.labels[p.distortion == -1] >= 99.99).all()  # FSIMc of a patch with itself is 1 -> label 100
    monotone = []
    for pid in np.unique(p.patch_id):
        for d in np.unique(p.distortion[(p.patch_id == pid) & (p.distortion >= 0)]):
            k = (p.patch_id == pid) & (p.distortion == d)
            assert sorted(p.level[k]) == [1, 2, 3, 4, 5]
            monotone.append(bool(np.all(np.diff(p.labels[k][np.argsort(p.level[k])]) <= 0)))
    assert len(monotone) == 2 * len(np.unique(p.patch_id))
    assert np.mean(monotone) >= 0.97  # measured: 1.000 on test, 0.995 on train (pixelate, jpeg)
    assert set(np.unique(p.distortion)) == set(range(-1, len(DISTORTIONS)))


def test_dataset_view_matches_the_patches(test_split) -> None:
    ds = build_dataset("skimage-iqa", split="test", size=50, seed=2)
    assert ds.images.shape == (50, 3, 48, 48) and ds.images.dtype == torch.float32
    assert 0 <= ds.images.min() and ds.images.max() <= 1
    idx = torch.randperm(len(test_split.labels), generator=torch.Generator().manual_seed(2))[:50].sort().values
    np.testing.assert_array_equal(ds.labels.numpy(), test_split.labels[idx.numpy()])
    assert build_dataset("skimage-iqa", split="test", size=50, seed=2).fingerprint == ds.fingerprint


def test_kinds_per_patch_is_per_split_and_capped_at_the_source_kinds() -> None:
    """Asking for more kinds than a source has gives every patch all of them (five on grey sources, six on colour)."""
    p = generate_patches("test", PatchConfig(test_per_source=1, test_kinds_per_patch=9, train_kinds_per_patch=1))
    saturation = DISTORTIONS.index("saturation")
    for pid in np.unique(p.patch_id):
        got = set(p.distortion[(p.patch_id == pid) & (p.distortion >= 0)].tolist())
        grey = SOURCES["test"][int(p.source[p.patch_id == pid][0])] in ("coins", "gravel")
        assert got == set(range(len(DISTORTIONS))) - ({saturation} if grey else set())


def test_unlabeled_patches_are_the_labelled_splits_images(test_split, monkeypatch) -> None:
    """The label-free path a blind-spot network trains on (seconds, not FSIMc's ~45 s on the train split) makes
    the same images as the labelled split, and reads them from the labelled cache once that exists."""
    from robustgrid.models.data import iqa_patches

    np.testing.assert_array_equal(unlabeled_patches("test", TINY), generate_patches("test", TINY).images)
    monkeypatch.setattr(iqa_patches, "degraded_patches", lambda *_: pytest.fail("the labelled cache was not used"))
    np.testing.assert_array_equal(unlabeled_patches("test"), test_split.images)
