"""Backdoor removal methods, one interface, registered in one `Registry`."""

from __future__ import annotations

from typing import Any

from ban.mitigations.anp import ANP
from ban.mitigations.ban_finetune import BANFineTune
from ban.mitigations.base import Mitigation, MitigationReport
from ban.mitigations.btidbf_unlearn import BTIDBFUnlearn
from ban.mitigations.fine_pruning import FinePruning
from ban.mitigations.finetune import FineTune
from ban.mitigations.ftsam import FTSAM
from ban.mitigations.ibau import IBAU
from ban.mitigations.nad import NAD
from ban.registry import Registry

MITIGATIONS: Registry[type[Mitigation]] = Registry("mitigation", label="mitigation method")
MITIGATIONS.register("ft", FineTune)
MITIGATIONS.register("fp", FinePruning)
MITIGATIONS.register("nad", NAD)
MITIGATIONS.register("ibau", IBAU)
MITIGATIONS.register("ftsam", FTSAM)
MITIGATIONS.register("anp", ANP)
MITIGATIONS.register("btidbf-u", BTIDBFUnlearn)
MITIGATIONS.register("ban", BANFineTune)


def list_mitigations() -> list[str]:
    return MITIGATIONS.list()


def create_mitigation(name: str, **settings: Any) -> Mitigation:
    """Build the mitigation `name` spells; an unknown name or a refused setting is a BanError."""
    return MITIGATIONS.create(name, **settings)


__all__ = ["MITIGATIONS", "Mitigation", "MitigationReport", "create_mitigation", "list_mitigations"]
