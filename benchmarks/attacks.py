"""Train every attack on Fashion-MNIST and print BA, the clean model's BA of the same recipe, ASR and time.

    .venv/bin/python benchmarks/attacks.py                       # all seven, the CPU budget below
    .venv/bin/python benchmarks/attacks.py --attacks wanet,bpp --epochs 8 --subset 20000
    .venv/bin/python benchmarks/attacks.py --arch resnet18 --width 0.25 --augment --device cuda
    .venv/bin/python benchmarks/attacks.py --recipe cpu --arch resnet18 --width 0.25 --seeds 300,301,302

`--recipe cpu` is the user's CPU budget of docs/attacks.md: 12000 images, 8 epochs for every
attack, lr 0.05, no augmentation, and each attack's `cpu` preset where it has one (no other
parameter changed). `--seeds` trains every attack once per seed, with a target per (attack, seed)
that is never 0 unless --targets says so; the table then ends with each attack's mean and worst.

Recipe (defaults): small_cnn (width 1), a class-balanced 8000-image subset of the attacker's 90%
of the Fashion-MNIST training set (the zoo's split), 2000 balanced test images, SGD lr 0.05,
momentum 0.9, wd 5e-4, batch 128, cosine schedule, no augmentation, seed 0. Each attack's own
epochs and parameters for this budget are in SETTINGS (the attacks' defaults are the papers';
where this budget needs another value the table's `settings` column says so). A clean model is
trained once per distinct recipe (epochs), so "clean BA" is always the same recipe's.
Goal: ASR ≥ 0.90 (SSDT: on the victim class; non-victim accuracy reported too) with BA within
2 points of the clean model (a model read from --cache reports its original training time).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from typing import Any

import torch

from ban.attacks import ATTACKS
from ban.checkpoint import Checkpoint
from ban.recipe import Recipe, recipe_data
from ban.trainer import train_checkpoint

# Per-attack epochs and parameters for the CPU budget (small_cnn, 8000 images). Paper defaults otherwise.
SETTINGS: dict[str, dict[str, Any]] = {
    "badnets": {"epochs": 4, "params": {}},
    "blend": {"epochs": 4, "params": {}},
    "wanet": {"epochs": 6, "params": {}},  # 4 epochs: ASR 0.884
    "iad": {"epochs": 8, "params": {"mask_epochs": 5}},  # 4 epochs: ASR 0.771
    "bpp": {"epochs": 16, "params": {}},  # 8 epochs: ASR 0.215
    # the paper's 0.3% of 8000 images is 24 poisoned images: ASR 0.256 after 4 epochs
    "adap-blend": {"epochs": 8, "params": {"poison_rate": 0.02, "cover_rate": 0.02}},
    "ssdt": {"epochs": 8, "params": {"mask_epochs": 5}},  # 4 epochs: ASR 0.820
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--attacks", default=",".join(ATTACKS), help="comma-separated attack names (default: all seven)")
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--arch", default="small_cnn")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--subset", type=int, default=8000, help="training images (class-balanced)")
    p.add_argument("--test-subset", type=int, default=2000, help="test images (class-balanced)")
    p.add_argument("--epochs", type=int, default=None, help="override every attack's epochs")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--augment", action="store_true", help="random crop + flip (off by default, as in the zoo)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", default=None, help="comma-separated seeds: every attack once per seed (overrides --seed)")
    p.add_argument(
        "--recipe",
        choices=("script", "cpu"),
        default="script",
        help="script: SETTINGS below; cpu: 12000 images, 8 epochs, each attack's cpu preset (docs/attacks.md)",
    )
    p.add_argument("--target", type=int, default=0)
    p.add_argument(
        "--targets", default=None, help="per-attack targets ATTACK=T,... (e.g. badnets=7,wanet=2); others use --target"
    )
    p.add_argument(
        "--save-dir", default=None, help="also write every trained model (clean ones too) as a ban checkpoint here"
    )
    p.add_argument(
        "--param",
        "-p",
        action="append",
        default=[],
        metavar="ATTACK:KEY=VALUE",
        help="extra attack parameter, e.g. -p bpp:squeeze_num=4 (repeatable)",
    )
    p.add_argument(
        "--cache",
        default=None,
        help="reuse models of the same recipe from this folder (NAME-KEY.safetensors), train and add the others; "
        "not with --save-dir",
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--json", default=None, help="also write the rows as JSON here")
    return p.parse_args(argv)


def extra_params(items: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        name, _, kv = item.partition(":")
        key, _, value = kv.partition("=")
        if not key or not _:
            raise SystemExit(f"-p {item}: use ATTACK:KEY=VALUE")
        try:
            out.setdefault(name, {})[key] = json.loads(value)
        except json.JSONDecodeError:
            out.setdefault(name, {})[key] = value
    return out


CPU_RECIPE = {"subset": 12000, "epochs": 8}


def target_for(name: str, seed: int, num_classes: int = 10) -> int:
    """A target other than 0 that moves with the attack and the seed; SSDT's also differs from its victim (1)."""
    first = 2 if name == "ssdt" else 1
    return first + (ATTACKS.list().index(name) * 3 + seed) % (num_classes - first)


def setting_for(name: str, recipe: str) -> dict[str, Any]:
    """Epochs and attack parameters of `name` under the script's SETTINGS or the CPU recipe (its cpu preset)."""
    if recipe == "cpu":
        preset = {"preset": "cpu"} if "cpu" in ATTACKS[name].PRESETS else {}
        return {"epochs": CPU_RECIPE["epochs"], "params": preset}
    return SETTINGS.get(name, {"epochs": 4, "params": {}})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.recipe == "cpu":
        args.subset = CPU_RECIPE["subset"]
    seeds = [int(v) for v in args.seeds.split(",")] if args.seeds else [args.seed]
    rows: list[dict[str, Any]] = []
    for seed in seeds:
        rows += run_seed(args, seed, multi=len(seeds) > 1)
    print_table(rows, args, multi=len(seeds) > 1)
    return 0


def run_seed(args: argparse.Namespace, seed: int, multi: bool) -> list[dict[str, Any]]:
    """Train the clean model(s) and every attack at `seed`; the rows of the table."""
    torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.attacks.split(",") if n.strip()]
    unknown = [n for n in names if n not in ATTACKS]
    if unknown:
        raise SystemExit(f"unknown attacks {unknown}; choose from {', '.join(ATTACKS)}")
    if args.cache and args.save_dir:
        raise SystemExit("--cache and --save-dir: choose one (a cache folder keeps every model too)")
    extra = extra_params(args.param)
    base = Recipe(
        arch=args.arch,
        width=args.width,
        dataset=args.data,
        subset=args.subset,
        test_subset=args.test_subset,
        lr=args.lr,
        batch_size=args.batch_size,
        augment=args.augment,
        seed=seed,
    )
    train, test, _ = recipe_data(base)
    print(
        f"{args.data}: {len(train)} train / {len(test)} test images {train.image_shape}, "
        f"{args.arch} width {args.width}, lr {args.lr}, batch {args.batch_size}, augment {args.augment}, "
        f"seed {seed}, {torch.get_num_threads()} threads",
        flush=True,
    )

    targets = {k: int(v) for k, _, v in (t.partition("=") for t in (args.targets or "").split(",") if t)}

    def fit(recipe: Recipe, name: str) -> tuple[Checkpoint, dict[str, Any]]:
        """Train `recipe` (also written to --save-dir/NAME.safetensors when given); checkpoint, training report."""
        stem = f"{name}-s{seed}" if multi else name
        path = os.path.join(args.save_dir, f"{stem}.safetensors") if args.save_dir else None
        ckpt = train_checkpoint(
            recipe,
            path,
            cache_dir=args.cache,
            name=name,
            data=(train, test),
            device=args.device,
            meta={"epochs": recipe.epochs},
        )
        return ckpt, ckpt.meta["train"]

    clean: dict[int, float] = {}
    rows = []
    for name in names:
        setting = setting_for(name, args.recipe)
        epochs = args.epochs or setting["epochs"]
        default_target = target_for(name, seed) if args.seeds else args.target  # --seeds 300 alone too
        params = {"target": targets.get(name, default_target), **setting["params"], **extra.get(name, {})}
        if epochs not in clean:
            _, trained = fit(replace(base, epochs=epochs), f"clean-e{epochs}")
            clean[epochs] = trained["test"]["ba"]
            print(f"  clean, {epochs} epochs: BA {clean[epochs]:.4f} ({trained['seconds']:.0f} s)", flush=True)
        target = int(params["target"])
        ckpt, trained = fit(replace(base, epochs=epochs, attack=name, attack_params=params), f"{name}-t{target}")
        assert ckpt.attack is not None
        report, seconds = trained["test"], trained["seconds"]
        row = {
            "attack": name,
            "seed": seed,
            "epochs": epochs,
            "settings": {k: v for k, v in params.items() if k != "target"},
            "target": ckpt.attack.target,
            "poison_rate": ckpt.attack.poison_rate,
            "ba": report["ba"],
            "clean_ba": clean[epochs],
            "asr": report["asr"],
            "nvt_accuracy": report.get("nvt_accuracy"),
            "seconds": seconds,
        }
        rows.append(row)
        nvt = f"  non-victim acc {row['nvt_accuracy']:.4f}" if row["nvt_accuracy"] is not None else ""
        print(f"  {name}: BA {row['ba']:.4f}  ASR {row['asr']:.4f}{nvt}  ({seconds:.0f} s)", flush=True)

    return rows


def print_table(rows: list[dict[str, Any]], args: argparse.Namespace, multi: bool) -> None:
    print()
    seed_col = "seed | " if multi else ""
    print(f"| attack | {seed_col}target | epochs | settings | BA | clean BA | ΔBA | ASR | non-victim acc | s | goal |")
    print("|---|" + ("---|" if multi else "") + "---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        delta = r["ba"] - r["clean_ba"]
        nvt = f"{r['nvt_accuracy']:.4f}" if r["nvt_accuracy"] is not None else "–"
        settings = ", ".join(f"{k}={v}" for k, v in r["settings"].items()) or "defaults"
        seed = f"{r['seed']} | " if multi else ""
        print(
            f"| {r['attack']} | {seed}{r['target']} | {r['epochs']} | {settings} | {r['ba']:.4f} | "
            f"{r['clean_ba']:.4f} | {100 * delta:+.1f} | {r['asr']:.4f} | {nvt} | {r['seconds']:.0f} | "
            f"{'met' if met(r) else 'missed'} |"
        )
    if multi:
        print()
        print("| attack | models | ASR mean | ASR worst | ΔBA mean | ΔBA worst | every cell met |")
        print("|---|---|---|---|---|---|---|")
        for name in dict.fromkeys(r["attack"] for r in rows):
            mine = [r for r in rows if r["attack"] == name]
            asr = [r["asr"] for r in mine]
            delta = [100 * (r["ba"] - r["clean_ba"]) for r in mine]
            print(
                f"| {name} | {len(mine)} | {sum(asr) / len(asr):.4f} | {min(asr):.4f} | "
                f"{sum(delta) / len(delta):+.1f} | {min(delta):+.1f} | {'yes' if all(map(met, mine)) else 'no'} |"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=2)


def met(row: dict[str, Any]) -> bool:
    """The goal: ASR ≥ 0.9 with BA within 2 points of the clean model of the same recipe (rates are
    float32 counts, so 180 of 200 reads 0.89999998: compared at 6 decimals)."""
    return round(row["asr"], 6) >= 0.9 and round(row["ba"] - row["clean_ba"], 6) >= -0.02


if __name__ == "__main__":
    sys.exit(main())
