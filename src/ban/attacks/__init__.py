"""Backdoor attacks behind one interface, registered in one `Registry`."""

from __future__ import annotations

import inspect
from typing import Any

from ban.attacks.adap_blend import AdapBlend
from ban.attacks.badnets import BadNets
from ban.attacks.base import Attack, PerBatchAttack, PoisonedData, StaticPoisonAttack
from ban.attacks.blend import Blend
from ban.attacks.bpp import Bpp
from ban.attacks.iad import IAD
from ban.attacks.implant import IMPLANT_ASR, implant_warning
from ban.attacks.ssdt import SSDT
from ban.attacks.wanet import WaNet
from ban.errors import BanError
from ban.registry import Registry, preset_values
from ban.setting_values import convert_setting, kind_of

ATTACKS: Registry[type[Attack]] = Registry("attack")
ATTACKS.register_named(BadNets, Blend, WaNet, IAD, Bpp, AdapBlend, SSDT)
list_attacks = ATTACKS.list


def preset_lines() -> list[str]:
    """One line per attack preset, `  NAME -p preset=P: key=value, ...` (for `ban info`)."""
    return ATTACKS.preset_lines("-p")


def attack_class(name: str) -> type[Attack]:
    """The registered class of attack `name` (case and `_`/`-` do not matter)."""
    return ATTACKS.entry(name)


def resolve_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """`params` with a `preset` key expanded: the preset's values, then the explicit ones on top.

    An explicit None (an unset command-line option such as --poison-rate) does not override a
    preset's value. The `preset` key itself is kept, so the result still names it.
    """
    preset = params.get("preset")
    if preset is None:
        return {k: v for k, v in params.items() if k != "preset"}
    cls = attack_class(name)
    values = preset_values(f"attack '{cls.name}'", cls.PRESETS, preset)
    explicit = {k: v for k, v in params.items() if v is not None or k not in values}
    return {**values, **explicit}


def attack_parameters(cls: type[Attack]) -> dict[str, tuple[str, Any]]:
    """Every keyword the attack's constructors take, with its annotation and default: the class's own
    `__init__`, then its bases' as long as each passes `**kwargs` on (the most derived wins)."""
    found: dict[str, tuple[str, Any]] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        for p in params:
            if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                found.setdefault(p.name, (str(p.annotation), None if p.default is p.empty else p.default))
        if not any(p.kind is p.VAR_KEYWORD for p in params) or klass is Attack:
            break
    return found


def version_fields(name: str | None) -> dict[str, int]:
    """What a model's cache key adds for its attack's training code: `attack_version` when it is not 1
    (keys of version-1 attacks and of clean models stay what they were before versions existed)."""
    version = attack_class(name).training_version if name is not None else 1
    return {"attack_version": version} if version != 1 else {}


def create_attack(name: str, **params: Any) -> Attack:
    """Build a registered attack; `preset=NAME` starts from one of its PRESETS. Bad parameters give a BanError."""
    cls = attack_class(name)
    resolved = resolve_params(name, params)
    preset = resolved.pop("preset", None)
    known = attack_parameters(cls)
    for key, value in resolved.items():
        if key not in known:
            raise BanError(f"unknown parameter '{key}' for attack '{cls.name}'; choose from {', '.join(sorted(known))}")
        annotation, default = known[key]
        kind = kind_of(annotation)
        if kind in (bool, int, float) and value is not None:
            resolved[key] = convert_setting(key, kind, value, default, what="parameter")
    try:
        attack = cls(**resolved)
    except (TypeError, ValueError) as exc:
        raise BanError(f"bad parameters for attack '{cls.name}': {exc}") from exc
    attack.preset = preset
    return attack


__all__ = [
    "ATTACKS",
    "IMPLANT_ASR",
    "Attack",
    "PerBatchAttack",
    "PoisonedData",
    "StaticPoisonAttack",
    "attack_class",
    "create_attack",
    "implant_warning",
    "list_attacks",
    "preset_lines",
    "resolve_params",
    "version_fields",
]
