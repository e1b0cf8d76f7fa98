"""Models for the BAN default-setting measurements: the shared test zoo plus a few more seeds/targets.

Cached next to the test zoo (.cache/test-models); `models()` returns {name: Checkpoint}.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import zoo  # noqa: E402

EXTRA = {
    "clean-seed2": {**zoo.BASE, "seed": 2},
    "clean-seed3": {**zoo.BASE, "seed": 3},
    "badnets-t7-s1": {**zoo.BASE, "seed": 1, "attack": "badnets", "attack_params": {"target": 7, "poison_rate": 0.1}},
    "badnets-white-t1-s2": {
        **zoo.BASE,
        "seed": 2,
        "attack": "badnets",
        "attack_params": {"target": 1, "poison_rate": 0.1, "patch": "white", "patch_size": 4},
    },
    "blend-t5-s1": {**zoo.BASE, "seed": 1, "attack": "blend", "attack_params": {"target": 5, "poison_rate": 0.1}},
    "wanet-t2-s0": {**zoo.BASE, "attack": "wanet", "attack_params": {"target": 2}},
    "bpp-t8-s0": {**zoo.BASE, "attack": "bpp", "attack_params": {"target": 8}},
}
NAMES = [
    "badnets", "clean", "badnets-t7-s1", "clean-seed1", "blend-t5-s1", "clean-seed2",
    "badnets-white-t1-s2", "clean-seed3", "wanet-t2-s0", "bpp-t8-s0",
]  # fmt: skip


def models(names: list[str] | None = None, skip_missing: bool = True) -> tuple[zoo.Zoo, dict]:
    """(zoo, {name: Checkpoint}); recipes whose attack is not registered yet are skipped."""
    for k, v in EXTRA.items():
        zoo.RECIPES.setdefault(k, v)
    z = zoo.Zoo()
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
