"""PGD (Madry et al.): signed (Linf) or normalised (L2) gradient steps from a random start."""

from __future__ import annotations

from attacks import register_attack
from attacks.loop import GradientAttack


class PGD(GradientAttack):
    """The shared loop with its default hooks is exactly PGD."""

    name = "pgd"


@register_attack("pgd")
def pgd(**params: object) -> PGD:
    """Projected gradient descent, Linf or L2, random start (Madry et al. 2018)."""
    return PGD(**params)


@register_attack("ifgsm")
def ifgsm(**params: object) -> PGD:
    """I-FGSM / BIM: PGD without the random start (Kurakin et al. 2017)."""
    params.setdefault("random_start", False)
    return PGD(**params)


@register_attack("fgsm")
def fgsm(**params: object) -> PGD:
    """FGSM: one signed step of size eps, no random start (Goodfellow et al. 2015)."""
    params.setdefault("random_start", False)
    params.setdefault("steps", 1)
    params.setdefault("rel_step_size", 1.0)
    return PGD(**params)
