"""A Target is a model under evaluation: an nn.Module on [0, 1] images plus what identifies it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from robustgrid.core import Registry, RobustgridError


class Normalized(nn.Module):
    """Wraps a network so that it takes [0, 1] images: (x - mean) / std happens inside."""

    def __init__(self, net: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.net((x - self.mean) / self.std)


@dataclass
class Target:
    """A model ready for attack: eval mode, frozen parameters, inputs in [0, 1]."""

    name: str
    task: str
    module: nn.Module
    input_shape: tuple[int, int, int]           # (C, H, W) the module expects
    num_classes: int | None = None
    score_range: tuple[float, float] | None = None  # IQA: range of the score
    lower_better: bool = False                      # IQA: is a lower score a better image?
    provenance: dict[str, Any] = field(default_factory=dict)  # architecture, weights file, sha256, metric
    size_flexible: bool = False  # takes any H x W (a CNN with global pooling): the data's size is used

    def __post_init__(self) -> None:
        self.module.eval()
        self.module.requires_grad_(False)

    def __call__(self, x: Tensor) -> Tensor:
        return self.module(x)

    def accepts(self, shape: tuple[int, ...]) -> bool:
        """Whether images of ``shape`` (C, H, W) fit: same channels, and the same size unless size-flexible."""
        shape = tuple(shape)
        return shape == tuple(self.input_shape) or (self.size_flexible and len(shape) == 3
                                                    and shape[0] == self.input_shape[0])


TARGETS: Registry[Target] = Registry("target")


def register_target(name: str, *, task: str, **meta: Any) -> Callable[[Callable[..., Target]], Callable[..., Target]]:
    """Decorator registering a zero-argument (or keyword) builder of a Target under ``name``."""
    return TARGETS.register(name, task=task, **meta)


TARGET_PREFIXES: Registry[Target] = Registry("target source")


def register_target_prefix(prefix: str, **meta: Any) -> Callable[[Callable[..., Target]], Callable[..., Target]]:
    """Decorator for builders of external targets named ``prefix:<arch>`` (timm, pyiqa, smp ...)."""
    return TARGET_PREFIXES.register(prefix, **meta)


@register_target_prefix("python")
def python_target(arch: str, *, task: str | None = None, input_shape: tuple[int, int, int] | None = None,
                  num_classes: int | None = None, score_range: tuple[float, float] | None = None,
                  lower_better: bool = False, **params: Any) -> Target:
    """python:module:function: a user's function returning a Target, or an nn.Module on [0, 1] images (then
    task and input_shape say what it is); the function's keyword arguments come from the config."""
    import importlib

    module_name, _, fn_name = arch.rpartition(":")
    if not module_name or not fn_name:
        raise RobustgridError(f"target 'python:{arch}' must name module:function, e.g. python:mypkg.nets:build")
    try:
        fn = getattr(importlib.import_module(module_name), fn_name)
    except (ImportError, AttributeError) as exc:
        raise RobustgridError(f"target 'python:{arch}': {type(exc).__name__}: {exc}") from None
    made = fn(**params)
    if isinstance(made, Target):
        return made
    if not isinstance(made, nn.Module):
        raise RobustgridError(f"target 'python:{arch}' returned a {type(made).__name__}, not an nn.Module or Target")
    if task is None or input_shape is None:
        raise RobustgridError(f"target 'python:{arch}' returned a bare nn.Module: give task and "
                              f"input_shape = [C, H, W]")
    span = None if score_range is None else (float(score_range[0]), float(score_range[1]))
    c, h, w = (int(v) for v in input_shape)
    return Target(name=f"python:{arch}", task=task, module=made, input_shape=(c, h, w), num_classes=num_classes,
                  score_range=span, lower_better=lower_better,
                  provenance={"source": "python", "callable": arch, "params": params})


def build_target(name: str, **params: Any) -> Target:
    """A zoo target by name, or an external one as ``prefix:<arch>`` with keyword params (weights=...)."""
    if ":" in name:
        prefix, arch = name.split(":", 1)
        return TARGET_PREFIXES.build(prefix, arch=arch, **params)
    return TARGETS.build(name, **params)


def target_task(name: str, **params: Any) -> str | None:
    """The task a target name declares without building it (None for prefixes that serve several)."""
    if ":" in name:
        return TARGET_PREFIXES.entry(name.split(":", 1)[0]).meta.get("task")
    return TARGETS.entry(name).meta.get("task")
