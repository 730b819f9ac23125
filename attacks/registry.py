"""The attack registry: ``register_attack`` decorates constructors, ``build_attack`` builds them by name.

Attack modules import this module (not the package), so the package can import them without a cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from robustgrid.attacks.base import Attack
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
