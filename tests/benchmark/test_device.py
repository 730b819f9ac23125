"""Device and precision: a device that is not there is one line naming what is; bf16 autocast runs the grid with
close numbers keyed apart from fp32; on CUDA (tests marked gpu) a small grid matches the CPU's within tolerance."""

from __future__ import annotations

import sqlite3
import tomllib
from pathlib import Path

import pytest
import torch

from robustgrid.benchmark import parse_config, run_grid
from robustgrid.benchmark.cli import main
from robustgrid.core import RobustgridError
from robustgrid.models.device import Autocast, available_devices, resolve_device
from tests.benchmark.conftest import SMALL_TOML

GPU_TOLERANCE = 0.05  # accuracy on 48 images: a few flipped decisions between CPU and CUDA kernels


def values(out: Path) -> dict[tuple, float]:
    rows = sqlite3.connect(out / "cells.sqlite").execute(
        "SELECT attack, threat, sources, target, eps, steps, value FROM cells").fetchall()
    return {r[:6]: r[6] for r in rows}


def test_an_unavailable_device_is_one_line_naming_what_is_available(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(SMALL_TOML)
    bad = f"cuda:{torch.cuda.device_count()}"
    assert main(["run", str(cfg), "--out", str(tmp_path / "out"), "--quiet", "--device", bad]) == 2
    err = capsys.readouterr().err
    assert err == (f"robustgrid: error: device {bad!r} is not available; this machine has: "
                   f"{', '.join(available_devices())}\n")
    assert not (tmp_path / "out").exists()
    for name in ("tpu", "cuda:x", "mps"):
        with pytest.raises(RobustgridError, match="valid: auto, cpu"):
            resolve_device(name)
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_bf16_autocast_gives_close_numbers_under_other_keys(tmp_path: Path) -> None:
    base = tomllib.loads(SMALL_TOML)
    run_grid(parse_config(base), tmp_path / "fp32", progress=False, report=False)
    run_grid(parse_config({**base, "precision": "bf16"}), tmp_path / "bf16", progress=False, report=False)
    fp32, bf16 = values(tmp_path / "fp32"), values(tmp_path / "bf16")
    assert fp32.keys() == bf16.keys()
    assert max(abs(fp32[k] - bf16[k]) for k in fp32) <= 0.15  # 48 images: within a few decisions
    keys = [set(sqlite3.connect(tmp_path / d / "cells.sqlite").execute("SELECT key FROM cells").fetchall())
            for d in ("fp32", "bf16")]
    assert not keys[0] & keys[1]  # cells computed in another precision never mix with fp32 ones in a store
    x = torch.rand(2, 3, 4, 4)
    net = Autocast(torch.nn.Conv2d(3, 2, 3), torch.bfloat16)
    assert net(x).dtype == torch.float32  # outputs (and so losses and gradients) stay fp32


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_small_grid_on_cuda_matches_the_cpu(tmp_path: Path) -> None:
    cfg = parse_config(tomllib.loads(SMALL_TOML))
    run_grid(cfg, tmp_path / "cpu", progress=False, report=False, device="cpu")
    run_grid(cfg, tmp_path / "cuda", progress=False, report=False, device="cuda")
    cpu, cuda = values(tmp_path / "cpu"), values(tmp_path / "cuda")
    assert cpu.keys() == cuda.keys()
    assert max(abs(cpu[k] - cuda[k]) for k in cpu) <= GPU_TOLERANCE
    again = tmp_path / "cuda2"
    run_grid(cfg, again, progress=False, report=False, device="cuda")
    assert values(again) == cuda  # same config, seed and device: the same numbers
