"""Backdoor attacks behind one interface, registered in one dict."""

from __future__ import annotations

from typing import Any

from ban.attacks.badnets import BadNets
from ban.attacks.base import Attack, PoisonedData, StaticPoisonAttack
from ban.errors import BanError

ATTACKS: dict[str, type[Attack]] = {
    "badnets": BadNets,
}


def list_attacks() -> list[str]:
    return sorted(ATTACKS)


def create_attack(name: str, **params: Any) -> Attack:
    """Build a registered attack; unknown parameters and bad values give a BanError."""
    key = name.lower().replace("_", "-")
    if key not in ATTACKS:
        raise BanError(f"unknown attack '{name}'; choose one of {', '.join(list_attacks())}")
    try:
        return ATTACKS[key](**params)
    except TypeError as exc:
        raise BanError(f"bad parameters for attack '{key}': {exc}") from exc


__all__ = ["ATTACKS", "Attack", "PoisonedData", "StaticPoisonAttack", "create_attack", "list_attacks"]
