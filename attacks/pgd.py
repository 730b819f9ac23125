"""PGD (Madry et al.) and its special cases I-FGSM and FGSM: the shared loop with default hooks."""

from __future__ import annotations

from typing import Any

from robustgrid.attacks.loop import GradientAttack
from robustgrid.attacks.registry import register_attack


@register_attack("pgd")
class PGD(GradientAttack):
    """Projected gradient descent, Linf or L2, random start (Madry et al. 2018)."""

    name = "pgd"


@register_attack("ifgsm")
class IFGSM(PGD):
    """I-FGSM / BIM: PGD without the random start (Kurakin et al. 2017)."""

    name = "ifgsm"

    def __init__(self, *, random_start: bool = False, **params: Any) -> None:
        super().__init__(random_start=random_start, **params)


@register_attack("fgsm")
class FGSM(PGD):
    """FGSM: one signed step of size eps from the clean image (Goodfellow et al. 2015)."""

    name = "fgsm"

    def __init__(self, *, steps: int = 1, rel_step_size: float | None = 1.0, random_start: bool = False,
                 **params: Any) -> None:
        super().__init__(steps=steps, rel_step_size=rel_step_size, random_start=random_start, **params)
