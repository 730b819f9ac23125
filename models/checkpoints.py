"""Safe checkpoint I/O: safetensors or ``torch.load(weights_only=True)``, never arbitrary unpickling."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import Tensor, nn

from robustgrid.core import RobustgridError


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, recorded as model provenance."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a state dict from .safetensors or a torch file; corrupt files give a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise RobustgridError(f"checkpoint not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # every reader error means the same thing to the user
        raise RobustgridError(f"corrupt or unreadable checkpoint {path}: {type(exc).__name__}") from None
    for key in ("state_dict", "model", "params"):  # common wrappers around the weights
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise RobustgridError(f"checkpoint {path} does not hold a state dict of tensors")
    return state


def load_weights(module: nn.Module, path: str | Path, strict: bool = True) -> None:
    """Load weights into ``module``; missing or mismatched keys give a one-line error."""
    state = load_state_dict(path)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        module.load_state_dict(state, strict=strict)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "mismatch"
        raise RobustgridError(f"checkpoint {path} does not fit the model: {first}") from None


def save_weights(module: nn.Module, path: str | Path) -> str:
    """Write a module's weights as safetensors and return the file's SHA-256."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}, str(tmp))
    tmp.chmod(0o644)  # safetensors writes 0600; weights are data to share, not secrets
    tmp.replace(path)  # atomic: a killed run never leaves half a checkpoint
    return file_sha256(path)
