"""Purification defenses: pre-processors x -> x' placed in front of any model; imports only ``models``."""

from robustgrid.defenses import bsn_zoo, gaussian, ncis, none  # noqa: F401  (defenses and zoo BSNs register on import)
from robustgrid.defenses.base import DEFENSES, Purifier, build_defense, list_defenses, register_defense
from robustgrid.defenses.bpda import BPDA, bpda
from robustgrid.defenses.defended import Defended
from robustgrid.defenses.unlabeled import list_unlabeled, register_unlabeled, unlabeled_images

__all__ = ["BPDA", "DEFENSES", "Defended", "Purifier", "bpda", "build_defense", "list_defenses", "list_unlabeled",
           "register_defense", "register_unlabeled", "unlabeled_images"]
