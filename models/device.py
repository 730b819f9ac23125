"""Where and in what precision a grid computes: a device name resolved once, and autocast around forward passes."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robustgrid.core import RobustgridError

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def available_devices() -> list[str]:
    """The device names this machine offers: cpu, and cuda:0 .. cuda:N-1 when CUDA is there."""
    return ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``; anything else, or a device that is
    not there, is a one-line error naming what is available."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    valid = available_devices()
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise RobustgridError(f"unknown device {name!r}; valid: auto, {', '.join(valid)}") from None
    if device.type == "cuda":
        index = 0 if device.index is None else device.index
        if index >= torch.cuda.device_count():
            raise RobustgridError(f"device {name!r} is not available; this machine has: {', '.join(valid)}")
    elif device.type != "cpu":
        raise RobustgridError(f"device {name!r} is not supported; valid: auto, {', '.join(valid)}")
    return device


def check_precision(name: str) -> torch.dtype | None:
    """The autocast dtype of ``fp32`` (None: no autocast), ``bf16`` or ``fp16``."""
    if name not in PRECISIONS:
        raise RobustgridError(f"unknown precision {name!r}; valid: {', '.join(PRECISIONS)}")
    return PRECISIONS[name]


class Autocast(nn.Module):
    """Runs ``module``'s forward pass under autocast to ``dtype`` and returns float32 outputs, so losses, gradients
    with respect to the input and metrics stay in full precision while the network runs in half precision."""

    def __init__(self, module: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.module, self.dtype = module, dtype

    def forward(self, x: Tensor) -> Tensor:
        with torch.autocast(device_type=x.device.type, dtype=self.dtype):
            out = self.module(x)
        return out.float()
