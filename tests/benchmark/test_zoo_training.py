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


class InlinePool:
    """A ProcessPoolExecutor stand-in that runs each job at submit, in this process (where the toy zoo lives)."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __enter__(self) -> InlinePool:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def submit(self, fn, *args):
        from concurrent.futures import Future

        future: Future = Future()
        future.set_result(fn(*args))
        return future


def test_parallel_training_makes_shared_data_once_before_any_worker(toy_zoo, monkeypatch) -> None:
    import dataclasses

    from robustgrid.models.zoo import register_zoo

    events: list[str] = []

    def prepare() -> None:
        events.append("prepare")

    toy = ZOO.build("toy")
    for name in ("toy-a", "toy-b"):
        def train(progress: bool, name=name):
            events.append(name)
            return toy.train(progress)
        register_zoo(dataclasses.replace(toy, name=name, train=train, prepare=prepare))
    monkeypatch.setattr("robustgrid.benchmark.zoo_training.ProcessPoolExecutor", InlinePool)
    train_zoo(["toy-a", "toy-b", "toy"], progress=False, workers=2)
    assert events[0] == "prepare" and events.count("prepare") == 1 and sorted(events[1:]) == ["toy-a", "toy-b"]
    events.clear()
    train_zoo(["toy-a"], force=True, progress=False, workers=1)  # one worker trains in this process: no preparing
    assert events == ["toy-a"]
