"""The Purifier interface (x in [0, 1] -> x' in [0, 1]) and the defense registry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from robustgrid.core import Registry, RobustgridError


class Purifier(nn.Module):
    """A pre-processor placed in front of any model: float NCHW images in [0, 1] to purified images in [0, 1].

    Subclasses implement ``purify`` and ``params``; ``forward`` checks the input layout once for all of them.
    ``differentiable`` says whether exact gradients exist (else use BPDA); ``randomized`` whether EOT is needed.
    """

    name: str = ""
    differentiable: bool = True
    randomized: bool = False

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or not x.is_floating_point():
            raise RobustgridError(f"{self.name or type(self).__name__} expects float NCHW images, "
                                  f"got a {x.dtype} tensor of shape {tuple(x.shape)}")
        return self.purify(x)

    def purify(self, x: Tensor) -> Tensor:
        """The purification itself on a checked batch."""
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """The parameters that determine the output (JSON-able), for provenance and result keys."""
        return {}

    def describe(self) -> dict[str, Any]:
        """Name, gradient/randomness flags and parameters: what a stored result needs to identify this defense."""
        return {"name": self.name, "differentiable": self.differentiable, "randomized": self.randomized,
                **self.params()}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.params().items() if not isinstance(v, dict))


DEFENSES: Registry[Purifier] = Registry("defense")


def register_defense(name: str, **meta: Any) -> Callable[[Callable[..., Purifier]], Callable[..., Purifier]]:
    """Decorator registering a Purifier class (or builder) under ``name``; a class also gets ``name`` set."""
    register = DEFENSES.register(name, **meta)

    def deco(fn: Callable[..., Purifier]) -> Callable[..., Purifier]:
        if isinstance(fn, type) and issubclass(fn, Purifier):
            fn.name = name
        return register(fn)

    return deco


def build_defense(name: str, **params: Any) -> Purifier:
    """Build the defense ``name`` with keyword overrides; unknown names or keywords raise RobustgridError."""
    return DEFENSES.build(name, **params)


def list_defenses() -> list[tuple[str, str]]:
    """(name, one-line description) of every registered defense."""
    return DEFENSES.describe()
