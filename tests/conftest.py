"""Shared fixtures: offline hub, fixed threads, small real data and the committed zoo."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ROBUSTGRID_NO_TRAIN", "1")  # tests use committed weights; training is zoo's job

import pytest  # noqa: E402
import torch  # noqa: E402

# two threads on the idle 2-core machine; ROBUSTGRID_THREADS=1 when other jobs share the cores (two threads
# under contention can be many times slower than one)
torch.set_num_threads(int(os.environ.get("ROBUSTGRID_THREADS", "2")))


@pytest.fixture(scope="session")
def fmnist_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """64 Fashion-MNIST test images (seeded subset) and labels."""
    from robustgrid.models.data import build_dataset

    ds = build_dataset("fashion-mnist", split="test", size=64, seed=0)
    return ds.images, ds.labels


@pytest.fixture(scope="session")
def zoo_resnet():
    """The committed Fashion-MNIST ResNet target (never trains in tests)."""
    from robustgrid.models.zoo import zoo_target

    return zoo_target("fmnist-resnet", allow_train=False)
