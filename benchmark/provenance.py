"""What produced a number: package versions, platform, code commit, config hash, model hashes."""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

PACKAGES = ("robustgrid", "torch", "torchvision", "timm", "torchattacks", "pyiqa", "numpy",
            "segmentation-models-pytorch", "safetensors")


@lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    """Installed versions of the packages that shape results (missing ones as 'absent')."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "absent"
    out["torch_threads"] = str(torch.get_num_threads())
    out["git_commit"] = _git_commit()
    return out


def _git_commit() -> str:
    try:
        root = Path(__file__).resolve().parent.parent
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return (head + ("+dirty" if dirty else "")) if head else "unknown"  # +dirty: uncommitted edits
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def module_hash(module: nn.Module) -> str:
    """SHA-256 over a module's parameters and buffers (names, shapes, bytes): identifies the weights."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def config_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def describe(seed: int, raw_config: str, extra: dict[str, Any]) -> dict[str, Any]:
    """The provenance record of a suite, stored once and referenced by id from each of its cells."""
    return {"seed": seed, "config_sha256": config_hash(raw_config), "versions": versions(), **extra}


def compute_provenance(device: torch.device, precision: str) -> dict[str, Any]:
    """Where the numbers were computed: device, GPU model, CUDA and cuDNN versions, and the autocast precision."""
    info: dict[str, Any] = {"device": str(device), "precision": precision}
    if device.type == "cuda":
        info.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version())
    return info
