"""Backdoor attacks behind one interface, registered in one dict."""

from __future__ import annotations

from typing import Any

from ban.attacks.adap_blend import AdapBlend
from ban.attacks.badnets import BadNets
from ban.attacks.base import Attack, PerBatchAttack, PoisonedData, StaticPoisonAttack
from ban.attacks.blend import Blend
from ban.attacks.bpp import Bpp
from ban.attacks.iad import IAD
from ban.attacks.ssdt import SSDT
from ban.attacks.wanet import WaNet
from ban.errors import BanError

ATTACKS: dict[str, type[Attack]] = {
    "badnets": BadNets,
    "blend": Blend,
    "wanet": WaNet,
    "iad": IAD,
    "bpp": Bpp,
    "adap-blend": AdapBlend,
    "ssdt": SSDT,
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
    except (TypeError, ValueError) as exc:
        raise BanError(f"bad parameters for attack '{key}': {exc}") from exc


__all__ = ["ATTACKS", "Attack", "PerBatchAttack", "PoisonedData", "StaticPoisonAttack", "create_attack", "list_attacks"]
