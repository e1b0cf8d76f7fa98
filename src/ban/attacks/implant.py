"""Whether a backdoor took: the ASR a poisoned model needs before anyone counts it as backdoored."""

from __future__ import annotations

import math
from typing import Literal

from ban.attacks.base import Attack

#: below this ASR a poisoned model is "not implanted": `ban train` and `ban bench` warn, and the
#: benchmark report counts it neither as backdoored nor as clean (its spec's `min_asr`).
IMPLANT_ASR = 0.8


def implanted(asr: float | None, min_asr: float = IMPLANT_ASR) -> bool:
    """Whether an ASR (None or NaN: not measured) reaches `min_asr`."""
    return asr is not None and not math.isnan(float(asr)) and float(asr) >= min_asr


def implant_warning(
    attack: Attack, asr: float | None, where: Literal["train", "bench"] = "train", min_asr: float = IMPLANT_ASR
) -> str | None:
    """One warning line when `attack`'s model ended below `min_asr` (None when it did not).

    Names the attack, the ASR (on the victim class for source-specific attacks) and what helps:
    the attack's `cpu` preset when it has one and it is not in use, and more epochs.
    """
    if implanted(asr, min_asr):
        return None
    shown = "not measured" if asr is None or math.isnan(float(asr)) else f"{float(asr):.3f}"
    on = f" on victim class {attack.victim}" if attack.mode == "source-specific" else ""
    epochs = "more --epochs" if where == "train" else "more train.epochs"
    if "cpu" in attack.PRESETS and attack.preset != "cpu":
        preset = "-p preset=cpu" if where == "train" else "params: {preset: cpu}"
        helps = f"{preset} (its short-schedule parameters, docs/attacks.md) or {epochs}"
    else:
        helps = epochs
    return (
        f"{attack.name} reached ASR {shown}{on}, below {min_asr:g}: the backdoor is not implanted "
        f"(the model is still written); try {helps}"
    )
