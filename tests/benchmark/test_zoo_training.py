"""``robustgrid zoo train``: trains what is missing or stale, reuses what is fresh, promotes with ``commit``."""

from __future__ import annotations

import pytest

from robustgrid.benchmark.zoo_training import train_zoo
from robustgrid.models.zoo import ZOO, zoo_target


def test_train_zoo_skips_fresh_committed_weights() -> None:
    (rec,) = train_zoo(["fmnist-resnet"], progress=False)
    assert rec.source == "committed" and rec.metrics["test_accuracy"] >= 0.88


def test_the_whole_zoo_includes_the_blind_spot_networks_of_defenses() -> None:
    assert {"fmnist-resnet", "scenes-fpn", "iqa-cnniqa", "ncis-bsn-fashion-mnist"} <= set(ZOO.names())


@pytest.fixture
def toy_calls(toy_zoo) -> list[bool]:
    return toy_zoo


def test_train_zoo_trains_missing_reuses_fresh_commits_and_forces(toy_calls, tmp_path) -> None:
    (rec,) = train_zoo(["toy"], progress=False, workers=1)
    assert rec.source == "trained" and rec.path.parent == tmp_path / "home" / "weights" and toy_calls == [False]
    (rec,) = train_zoo(["toy"], progress=False, workers=1)
    assert rec.source == "cache" and len(toy_calls) == 1
    (rec,) = train_zoo(["toy"], commit=True, workers=1)
    assert rec.source == "committed" and rec.path == tmp_path / "committed" / "toy.safetensors" and len(toy_calls) == 1
    assert zoo_target("toy", allow_train=False).provenance["source"] == "committed"
    train_zoo(["toy"], force=True, progress=False, workers=1)
    assert len(toy_calls) == 2
