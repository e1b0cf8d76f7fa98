"""The benchmark's output folder: which spec it belongs to, and where each file lives.

```
OUT/bench.json                  spec name, fingerprint, ban version (which spec this folder holds)
OUT/spec.yaml                   the validated spec (what `ban bench report` reads)
OUT/models/ID.safetensors       the zoo (content-addressed: ID ends in the hash of the model's spec)
OUT/results/detect/ID/*.json    one verdict per (model, detector)
OUT/results/mitigate/ID/*.json  one report per (model, mitigation)
OUT/report/                     tables and plots written by `ban bench report`
```
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from ban.bench.spec import BenchSpec, parse_spec
from ban.errors import BanError
from ban.utils import atomic_write_text, versions

MARKER = "bench.json"
SPEC_COPY = "spec.yaml"


def claim(out: Path, spec: BenchSpec, force: bool = False) -> None:
    """Make `out` this spec's folder; refuse one that holds another spec's (or unrelated) files unless `force`."""
    marker = out / MARKER
    if marker.exists():
        try:
            held = json.loads(marker.read_text())
        except (OSError, json.JSONDecodeError):
            held = {}
        if held.get("fingerprint") != spec.fingerprint() and not force:
            raise BanError(
                f"{out} holds results of a different spec ('{held.get('name', '?')}', fingerprint "
                f"{held.get('fingerprint', '?')}, this one {spec.fingerprint()}); choose another --out, or pass "
                "--force to switch it to this spec (finished work that still matches is reused)"
            )
    elif out.exists() and any(out.iterdir()) and not force:
        raise BanError(f"{out} is not empty and holds no ban benchmark; choose another --out or pass --force")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / SPEC_COPY, yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    info = {"name": spec.name, "fingerprint": spec.fingerprint(), "versions": versions()}
    atomic_write_text(marker, json.dumps(info, indent=2) + "\n")


def load_bench_spec(out: Path) -> BenchSpec:
    """The spec a benchmark folder was run with."""
    if not (out / MARKER).exists() or not (out / SPEC_COPY).exists():
        raise BanError(f"{out} holds no ban benchmark (no {MARKER}); run `ban bench run SPEC --out {out}` first")
    raw = yaml.safe_load((out / SPEC_COPY).read_text())
    return parse_spec(raw, str(out / SPEC_COPY))
