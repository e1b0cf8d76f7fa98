"""Every mitigation on the same backdoored models: BA / ASR before and after, and time.

One backdoored small model per attack in ``ban.attacks.ATTACKS`` (Fashion-MNIST, the reference zoo's
recipe, ban.zoo, cached with the tests' models in .cache/test-models), one clean pool for every method, one budget.
Each (attack, method) result is cached as JSON under ``--out``, so the run is resumable: call it
again (or with ``--time-limit``) until the table is complete.

    python benchmarks/mitigations.py --budget 0.1 --clean 500 --time-limit 420
    python benchmarks/mitigations.py --table-only
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ban.attacks import ATTACKS
from ban.checkpoint import load_model
from ban.clean_data import CleanData
from ban.data import balanced_sample
from ban.errors import BanError
from ban.mitigations import MITIGATIONS, create_mitigation
from ban.recipe import Recipe
from ban.utils import atomic_write_text
from ban.zoo import BASE, Zoo, cache_folder
from ban.zoo import RECIPES as ZOO

ROOT = Path(__file__).resolve().parents[1]
# attack -> zoo recipe name and recipe; recipes shared with other benchmarks hash to the same cache file
RECIPES: dict[str, tuple[str, Recipe]] = {
    "badnets": ("badnets", ZOO["badnets"]),
    "blend": ("blend-t5-s1", replace(BASE, seed=1, attack="blend", attack_params={"target": 5, "poison_rate": 0.1})),
    "wanet": ("wanet-t2-s0", replace(BASE, attack="wanet", attack_params={"target": 2})),
    "bpp": ("bpp-t8-s0", replace(BASE, attack="bpp", attack_params={"target": 8})),
}
METHOD_ORDER = ["ft", "fp", "nad", "ibau", "ftsam", "anp", "btidbf-u", "ban"]


def recipe_for(attack: str) -> tuple[str, Recipe]:
    """The zoo recipe of the backdoored model for `attack` (default: the attack's own defaults, target 3)."""
    if attack in RECIPES:
        return RECIPES[attack]
    return f"{attack}-t3-s0", replace(BASE, attack=attack, attack_params={"target": 3})


def methods() -> list[str]:
    known = [m for m in METHOD_ORDER if m in MITIGATIONS]
    return known + sorted(m for m in MITIGATIONS if m not in known)


def cell_path(out: Path, attack: str, method: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in method)
    return out / f"{attack}__{safe}.json"


def parse_method(spec: str) -> tuple[str, dict[str, Any]]:
    """`name` or `name:key=value;key=value` (values parsed as JSON where possible), e.g. `nad:beta=500`."""
    name, _, rest = spec.partition(":")
    settings: dict[str, Any] = {}
    for item in filter(None, rest.split(";")):
        key, _, value = item.partition("=")
        try:
            settings[key] = json.loads(value)
        except json.JSONDecodeError:
            settings[key] = value
    return name, settings


def run_cell(z: Zoo, attack: str, method: str, clean: CleanData, args: argparse.Namespace) -> dict[str, Any]:
    if args.models_dir:  # the attack benchmark's checkpoints: ATTACK-tTARGET.safetensors
        found = sorted(Path(args.models_dir).glob(f"{attack}-t*.safetensors"))
        if not found:
            return {"attack": attack, "method": method, "error": f"no {attack}-t*.safetensors in {args.models_dir}"}
        name, ckpt = found[0].stem, load_model(found[0])
    else:
        name, recipe = recipe_for(attack)
        z.add(name, recipe)
        ckpt = z.get(name)
    key, extra = parse_method(method)
    kwargs: dict[str, Any] = {"seed": args.seed, "device": args.device, "quiet": True, "budget": args.budget, **extra}
    try:
        mitigation = create_mitigation(key, **kwargs, clean_samples=len(clean))
    except BanError:  # a method without a clean_samples setting
        mitigation = create_mitigation(key, **kwargs)
    try:
        _, report = mitigation.run(ckpt.model, clean, z.test, ckpt.attack)
    except BanError as exc:
        return {"attack": attack, "method": method, "error": str(exc)}
    d = report.to_dict()
    return {
        "attack": attack,
        "method": method,
        "model": name,
        "seconds": report.seconds,
        "before": d["before"],
        "after": d["after"],
        "settings": d["settings"],
        "details": {k: v for k, v in d["details"].items() if not isinstance(v, list)},
    }


def fmt(x: float | None) -> str:
    return "  –  " if x is None else f"{x:.3f}"


def table(out: Path, attacks: list[str], names: list[str]) -> str:
    """A markdown table of every cached cell."""
    lines = [
        "| attack | method | BA before | BA after | ASR before | ASR after | time (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for attack in attacks:
        for method in names:
            p = cell_path(out, attack, method)
            if not p.exists():
                continue
            r = json.loads(p.read_text())
            if "error" in r:
                lines.append(f"| {attack} | {method} | error: {r['error']} | | | | |")
                continue
            b, a = r["before"], r["after"]
            lines.append(
                f"| {attack} | {method} | {fmt(b['ba'])} | {fmt(a['ba'])} | {fmt(b['asr'])} | {fmt(a['asr'])} "
                f"| {r['seconds']:.0f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--attacks", default=",".join(ATTACKS), help="comma-separated attacks (default: all registered)")
    ap.add_argument(
        "--methods",
        default=None,
        help="comma-separated mitigations (default: all registered); a setting as name:key=value, e.g. nad:beta=500",
    )
    ap.add_argument("--budget", type=float, default=0.1, help="fraction of each paper's epochs/rounds/iterations")
    ap.add_argument("--clean", type=int, default=500, help="clean defender images handed to every method")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / ".cache" / "bench-mitigations")
    ap.add_argument("--models-dir", default=None, help="ATTACK-tT.safetensors here (attacks.py --save-dir)")
    ap.add_argument("--time-limit", type=float, default=None, help="start no new cell after this many seconds")
    ap.add_argument("--table-only", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    attacks = [a for a in args.attacks.split(",") if a]
    names = args.methods.split(",") if args.methods else methods()
    tag = f"-{Path(args.models_dir).name}" if args.models_dir else ""
    out: Path = args.out / f"budget{args.budget:g}-clean{args.clean}-seed{args.seed}{tag}"
    out.mkdir(parents=True, exist_ok=True)
    if not args.table_only:
        start = time.perf_counter()
        z = Zoo(cache_folder(ROOT))
        clean = CleanData.from_images(balanced_sample(z.defender, args.clean, seed=args.seed + 1))
        for attack in attacks:
            for method in names:
                p = cell_path(out, attack, method)
                if p.exists():
                    continue
                if args.time_limit is not None and time.perf_counter() - start > args.time_limit:
                    print("time limit reached; run again to continue", file=sys.stderr)
                    print(table(out, attacks, names))
                    return 0
                t = time.perf_counter()
                result = run_cell(z, attack, method, clean, args)
                atomic_write_text(p, json.dumps(result, indent=2) + "\n")
                print(f"{attack:>10} {method:>9}: {time.perf_counter() - t:6.1f}s", file=sys.stderr, flush=True)
    print(f"budget {args.budget}, {args.clean} clean images, seed {args.seed}, device {args.device}")
    print(table(out, attacks, names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
