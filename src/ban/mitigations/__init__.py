"""Backdoor removal methods, one interface, registered in one dict."""

from __future__ import annotations

from typing import Any

from ban.errors import BanError
from ban.mitigations.anp import ANP
from ban.mitigations.ban_finetune import BANFineTune
from ban.mitigations.base import Mitigation, MitigationReport
from ban.mitigations.btidbf_unlearn import BTIDBFUnlearn
from ban.mitigations.fine_pruning import FinePruning
from ban.mitigations.finetune import FineTune
from ban.mitigations.ftsam import FTSAM
from ban.mitigations.ibau import IBAU
from ban.mitigations.nad import NAD

MITIGATIONS: dict[str, type[Mitigation]] = {
    "ft": FineTune,
    "fp": FinePruning,
    "nad": NAD,
    "ibau": IBAU,
    "ftsam": FTSAM,
    "anp": ANP,
    "btidbf-u": BTIDBFUnlearn,
    "ban": BANFineTune,
}


def list_mitigations() -> list[str]:
    return sorted(MITIGATIONS)


def create_mitigation(name: str, **settings: Any) -> Mitigation:
    key = name.lower().replace("_", "-")
    if key not in MITIGATIONS:
        raise BanError(f"unknown mitigation method '{name}'; choose one of {', '.join(list_mitigations())}")
    try:
        return MITIGATIONS[key](**settings)
    except TypeError as exc:
        raise BanError(f"bad settings for mitigation '{key}': {exc}") from exc


__all__ = ["MITIGATIONS", "Mitigation", "MitigationReport", "create_mitigation", "list_mitigations"]
