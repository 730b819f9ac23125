"""Slow (``make test-slow``): retraining zoo entries from their recipes reproduces the committed weights.

Each entry is retrained with ``train_zoo(force=True)`` into an empty cache; its measured test metrics must
match the committed record, and on the reference machine the weights come out bit-identical (reported, not
asserted: float kernels may differ on other CPUs); zoo training runs on one thread for that reason.
About 5 CPU-minutes in all.
"""

from __future__ import annotations

import json

import pytest
import torch

from robustgrid.benchmark.zoo_training import train_zoo
from robustgrid.models.cache import COMMITTED

pytestmark = pytest.mark.slow

# the cheapest entry of each kind: classifier, IQA model, segmenter, blind-spot network
ENTRIES = {
    "fmnist-resnet": ("test_accuracy", 0.005),
    "iqa-cnniqa": ("test_srocc", 0.01),
    "scenes-fpn": ("test_miou", 0.01),
    "ncis-bsn-fashion-mnist": ("test_clean_mse", 5e-4),
}


@pytest.mark.parametrize("name", list(ENTRIES))
def test_retraining_reproduces_the_committed_record(name, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ROBUSTGRID_HOME", str(tmp_path))
    threads = torch.get_num_threads()
    committed = json.loads((COMMITTED / f"{name}.json").read_text())
    (rec,) = train_zoo([name], force=True, progress=False, workers=1)  # trains on one thread, then restores
    assert torch.get_num_threads() == threads
    assert rec.source == "trained" and rec.recipe_hash == committed["recipe_hash"]
    metric, tol = ENTRIES[name]
    assert rec.metrics[metric] == pytest.approx(committed["metrics"][metric], abs=tol)
    with capsys.disabled():
        same = rec.sha256 == committed["sha256"]
        print(f"\n{name}: {metric} {rec.metrics[metric]:.4f} (committed {committed['metrics'][metric]:.4f}); "
              f"weights {'bit-identical' if same else 'differ'}; {rec.train_seconds:.0f} s")
