"""Backdoor removal methods, one interface, registered in one dict."""

from __future__ import annotations

from typing import Any

from ban.errors import BanError
from ban.mitigations.base import Mitigation, MitigationReport

MITIGATIONS: dict[str, type[Mitigation]] = {}


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
