"""Backdoor removal methods, one interface, registered in one `Registry`."""

from __future__ import annotations

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
MITIGATIONS.register_named(FineTune, FinePruning, NAD, IBAU, FTSAM, ANP, BTIDBFUnlearn, BANFineTune)
list_mitigations = MITIGATIONS.list
create_mitigation = MITIGATIONS.create  # an unknown name or a refused setting is a BanError


__all__ = ["MITIGATIONS", "Mitigation", "MitigationReport", "create_mitigation", "list_mitigations"]
