"""Models for the BAN default-setting measurements: the reference zoo (`ban.zoo`) plus a few more seeds/targets.

Cached with the test zoo (.cache/test-models, or $BAN_TEST_CACHE); `models()` returns (zoo, {name: Checkpoint}).
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from ban.checkpoint import Checkpoint
from ban.recipe import Recipe
from ban.zoo import BASE, Zoo, cache_folder

ROOT = Path(__file__).resolve().parents[1]
EXTRA: dict[str, Recipe] = {
    "clean-seed2": replace(BASE, seed=2),
    "clean-seed3": replace(BASE, seed=3),
    "badnets-t7-s1": replace(BASE, seed=1, attack="badnets", attack_params={"target": 7, "poison_rate": 0.1}),
    "badnets-white-t1-s2": replace(
        BASE,
        seed=2,
        attack="badnets",
        attack_params={"target": 1, "poison_rate": 0.1, "patch": "white", "patch_size": 4},
    ),
    "blend-t5-s1": replace(BASE, seed=1, attack="blend", attack_params={"target": 5, "poison_rate": 0.1}),
    "wanet-t2-s0": replace(BASE, attack="wanet", attack_params={"target": 2}),
    "bpp-t8-s0": replace(BASE, attack="bpp", attack_params={"target": 8}),
}
NAMES = [
    "badnets", "clean", "badnets-t7-s1", "clean-seed1", "blend-t5-s1", "clean-seed2",
    "badnets-white-t1-s2", "clean-seed3", "wanet-t2-s0", "bpp-t8-s0",
]  # fmt: skip


def zoo() -> Zoo:
    """The reference zoo over the shared cache, with the extra recipes above."""
    z = Zoo(cache_folder(ROOT))
    for name, recipe in EXTRA.items():
        z.add(name, recipe)
    return z


def models(names: list[str] | None = None, skip_missing: bool = True) -> tuple[Zoo, dict[str, Checkpoint]]:
    """(zoo, {name: Checkpoint}); recipes whose attack is not registered yet are skipped."""
    z = zoo()
    out = {}
    for name in names or NAMES:
        try:
            out[name] = z.get(name)
        except Exception as exc:  # an attack another helper has not registered yet
            if not skip_missing:
                raise
            print(f"skip {name}: {exc}", file=sys.stderr)
    return z, out


if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)
    _, ms = models()
    for n, c in ms.items():
        print(n, c.meta.get("target"), round(c.meta.get("ba", 0), 4), c.meta.get("asr"))
