"""Attack registry: ``build_attack("pgd", eps=8/255, steps=10)(model, x, y)``; every attack is an ``Attack``.

Attacks may import ``models`` (tasks); never ``defenses`` or ``benchmark``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from robustgrid.attacks.base import Attack, AttackResult
from robustgrid.attacks.loop import GradientAttack

from robustgrid.core import Registry

ATTACKS: Registry[Attack] = Registry("attack")


def register_attack(name: str, **meta: Any) -> Callable[[Callable[..., Attack]], Callable[..., Attack]]:
    """Decorator registering an attack constructor under ``name`` (first docstring line = description)."""
    return ATTACKS.register(name, **meta)


def build_attack(name: str, **params: Any) -> Attack:
    """Build a registered attack, or any torchattacks attack as ``torchattacks:<Name>``."""
    if name.startswith("torchattacks:"):
        from robustgrid.attacks.torchattacks_adapter import TorchattacksAttack

        return TorchattacksAttack(name.split(":", 1)[1], **params)
    return ATTACKS.build(name, **params)


def list_attacks() -> list[tuple[str, str]]:
    """(name, one-line description) of every registered attack."""
    return ATTACKS.describe()


# registration happens on import of each attack module
from robustgrid.attacks import di, mifgsm, pgd, sega, segpgd, segtrans, ti, torchattacks_adapter  # noqa: E402,F401

__all__ = ["ATTACKS", "Attack", "AttackResult", "GradientAttack", "build_attack", "list_attacks", "register_attack"]
