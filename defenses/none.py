"""The identity purifier: the undefended baseline every defense is compared with."""

from __future__ import annotations

from torch import Tensor

from robustgrid.defenses.base import Purifier, register_defense


@register_defense("none")
class NoDefense(Purifier):
    """No purification (identity); the undefended baseline."""

    def purify(self, x: Tensor) -> Tensor:
        return x
