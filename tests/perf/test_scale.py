"""Scale, as ratios measured in the same run (``make bench-scale``; written to ``.benchmarks/scale.json``).

(a) Peak resident memory of the same grid on an ImageFolder of 200 and of 2,000 generated 224x224 images (goal
    <= 1.15: the loaders stream, so memory must not grow with the dataset);
(b) a grid of many shards on the local executor and on a local Ray cluster: shard throughput, Ray's overhead on the
    same work (one worker against the local executor, both one thread) and the two-worker speed-up.
No absolute time or size is asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.perf
OUT = Path(__file__).resolve().parents[2] / ".benchmarks" / "scale.json"
RESULTS: dict[str, float] = {}


def _save() -> None:
    OUT.parent.mkdir(exist_ok=True)
    old = json.loads(OUT.read_text()) if OUT.is_file() else {}
    OUT.write_text(json.dumps({**old, **RESULTS}, indent=2, sort_keys=True) + "\n")


def image_folder(root: Path, n: int, classes: int = 10) -> Path:
    """``n`` smooth random 224x224 JPEGs in ``classes`` class folders (seeded)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:224, 0:224] / 224.0
    for i in range(n):
        folder = root / f"c{i % classes:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        a, b, c = rng.uniform(0, 6, 3)
        img = 0.5 + 0.5 * np.sin(a * xx[..., None] + b * yy[..., None] + c + np.array([0, 2, 4]))
        img = (img * 255 + rng.normal(0, 8, img.shape)).clip(0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"{i:05d}.jpg", quality=85)
    return root


def tiny_cnn(path: Path, classes: int = 10) -> Path:
    """A small random-weight timm ResNet saved as safetensors (a size-flexible CNN)."""
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net = timm.create_model("resnet10t", num_classes=classes, channels=(8, 16, 32, 64), stem_width=8)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


def config(root: Path, weights: Path, size: int, extra: str = "", batch: int = 50, shard: int = 200,
           eps: str = "[0.0, 0.01]") -> str:
    target = f'name = "timm:resnet10t", weights = "{weights}", num_classes = 10, channels = [8, 16, 32, 64], ' \
             'stem_width = 8'
    return f"""
seed = 0
{extra}
[[suite]]
name = "scale"
task = "classification"
dataset = {{ name = "imagefolder", root = "{root}", size = {size}, resize = 224, crop = 224, workers = 2 }}
targets = [{{ {target} }}]
budget = {{ norm = "linf", eps = {eps} }}
batch_size = {batch}
shard_size = {shard}

[[suite.attacks]]
name = "pgd"
steps = 2
"""


def peak_rss_mb(cfg: Path, out: Path) -> float:
    """Peak resident memory (MB) of a ``robustgrid run`` in a fresh process (its loader workers included)."""
    code = ("import resource, subprocess, sys\n"
            f"subprocess.run([sys.executable, '-m', 'robustgrid.benchmark.cli', 'run', {str(cfg)!r}, '--out', "
            f"{str(out)!r}, '--quiet'], check=True)\n"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)\n")
    env = {**os.environ, "ROBUSTGRID_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return float(done.stdout.split()[-1])


def test_a_peak_memory_does_not_grow_with_the_dataset(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "val", 2000)
    weights = tiny_cnn(tmp_path / "w.safetensors")
    peaks = {}
    for n in (200, 2000):
        cfg = tmp_path / f"c{n}.toml"
        cfg.write_text(config(root, weights, n))
        peaks[n] = peak_rss_mb(cfg, tmp_path / f"out{n}")
    RESULTS.update(peak_rss_mb_200=peaks[200], peak_rss_mb_2000=peaks[2000],
                   peak_rss_ratio_2000_over_200=peaks[2000] / peaks[200])
    _save()
    print(f"\npeak RSS: 200 images {peaks[200]:.0f} MB, 2000 images {peaks[2000]:.0f} MB, "
          f"ratio {peaks[2000] / peaks[200]:.3f} (goal <= 1.15)")


def _timed_run(cfg: Path, out: Path, *args: str) -> float:
    env = {**os.environ, "ROBUSTGRID_THREADS": "1"}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "robustgrid.benchmark.cli", "run", str(cfg), "--out", str(out), "--quiet",
                    *args], check=True, env=env, capture_output=True)
    return time.perf_counter() - start


def test_b_ray_against_local_on_many_shards(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "val", 256)
    weights = tiny_cnn(tmp_path / "w.safetensors")
    eps = "[0.0, 0.01, 0.02, 0.04]"
    shards = 4 * 256 // 16  # four units of sixteen one-batch shards
    seconds = {}
    for name, extra, args in (("local", "", ()),
                              ("ray1", 'executor = "ray"\nray = { workers = 1, num_cpus = 1 }', ()),
                              ("ray2", 'executor = "ray"\nray = { workers = 2, num_cpus = 1 }', ())):
        cfg = tmp_path / f"{name}.toml"
        cfg.write_text(config(root, weights, 256, extra, batch=16, shard=16, eps=eps))
        seconds[name] = _timed_run(cfg, tmp_path / f"out-{name}", *args)
    RESULTS.update(shards=shards, local_shards_per_s=shards / seconds["local"],
                   ray1_shards_per_s=shards / seconds["ray1"], ray2_shards_per_s=shards / seconds["ray2"],
                   ray1_over_local_time=seconds["ray1"] / seconds["local"],
                   ray2_over_local_time=seconds["ray2"] / seconds["local"])
    _save()
    print(f"\n{shards} shards: local {seconds['local']:.1f} s, Ray 1 worker {seconds['ray1']:.1f} s "
          f"({seconds['ray1'] / seconds['local']:.2f}x the local time), Ray 2 workers {seconds['ray2']:.1f} s "
          f"({seconds['ray2'] / seconds['local']:.2f}x); whole runs, Ray's start and worker set-up included")
