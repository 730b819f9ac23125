"""Attack registry: ``build_attack("pgd", eps=8/255, steps=10)(model, x, y)``; every attack is an ``Attack``.

Attacks may import ``models`` (tasks); never ``defenses`` or ``benchmark``.
"""

from __future__ import annotations

# registration happens on import of each attack module
from robustgrid.attacks import (  # noqa: F401
    apgd,
    apgd_t,
    auto,
    bsr,
    di,
    fmn,
    hsj,
    mifgsm,
    pgd,
    sega,
    segpgd,
    segtrans,
    spsa,
    square,
    ti,
    torchattacks_adapter,
    vmi,
)
from robustgrid.attacks.base import Attack, AttackResult
from robustgrid.attacks.loop import GradientAttack
from robustgrid.attacks.registry import ATTACKS, build_attack, list_attacks, register_attack

__all__ = ["ATTACKS", "Attack", "AttackResult", "GradientAttack", "build_attack", "list_attacks", "register_attack"]
