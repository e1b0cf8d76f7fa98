"""Where BAN's signal sits on a zoo: run BAN under several configurations on every model of a bench folder.

For each model of `ban bench run`'s folder (its models/*.safetensors) this runs the BAN detector once per
configuration below, with early stopping off so every confusion matrix is complete, and appends one JSON
line per (model, configuration) to OUT: the three recorded confusion matrices (no-mask under noise,
(1 - m) under noise, (1 - m) without noise), the loss rise, the seconds, and the model's ground truth
(attack, target, ASR: read from the checkpoint's metadata by this evaluator, never passed to BAN).
`benchmarks/ban_rules.py --signals OUT` re-scores candidate rules on those lines without running a model.

Usage: python benchmarks/ban_signals.py runs/fmnist-r18 --out runs/fmnist-r18/signals.jsonl [--configs a,b]
Resumable: lines already in OUT are skipped.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch

from ban.bench.store import load_bench_spec
from ban.checkpoint import load_model
from ban.clean_data import CleanData
from ban.data.registry import load_dataset
from ban.data.split import defender_split
from ban.detectors.ban_detector import BAN

# name -> BAN settings (early stopping off, so the matrices are complete)
CONFIGS: dict[str, dict[str, Any]] = {
    "paper": {"preset": "paper"},
    "paper-eval-bn": {"preset": "paper", "noise_train_mode": False},
    "paper-recal": {"preset": "paper", "recalibrate_bn": True},
    "paper-eval-bn-eps0.1": {"preset": "paper", "noise_train_mode": False, "eps": 0.1},
    "paper-eval-bn-eps0.2": {"preset": "paper", "noise_train_mode": False, "eps": 0.2},
    # the mask learned with train-mode BatchNorm (features recomputed per batch), 20 drawn batches per
    # mask epoch as the official code (400 steps)
    "paper-train-mask": {"preset": "paper", "mask_train_mode": True, "mask_batches": 20},
    # the same mask steps on features computed once in train mode (each batch of 128 normalised by its
    # own statistics), instead of recomputed for every step: an option no setting reaches
    "paper-train-mask-cached": {
        "preset": "paper",
        "options": {"mask_train_mode": True, "cache_features": True, "mask_batches": 20},
    },
    # the same, but one pass over the optimisation images per mask epoch (the paper preset's sampling, 80 steps)
    "paper-train-mask-1pass": {
        "preset": "paper",
        "batches_per_epoch": 0,
        "mask_train_mode": True,
    },
    # eval-mode BatchNorm and cached features as in the paper preset, as many mask steps as the
    # train-mode variant above (100 epochs of 4 batches = 20 epochs of 20 batches)
    # the ablation "mask only" of paper-train-mask: no noise (eps 0), the same mask learning
    "paper-train-mask-eps0": {
        "preset": "paper",
        "eps": 0.0,
        "mask_train_mode": True,
        "mask_batches": 20,
    },
    "paper-mask-100ep": {"preset": "paper", "mask_epochs": 100},
    # the mask alone at the official code's 400 steps (20 drawn batches per epoch) on cached eval-mode
    # features, no noise: what the (1 - m) collapse says without BAN's noise (2026-12-03)
    "paper-mask20-eps0": {"preset": "paper", "mask_batches": 20, "eps": 0.0},
    "paper-mask-100ep-eps0": {"preset": "paper", "mask_epochs": 100, "eps": 0.0},  # ablation: mask only
    # the ablation "mask only": no noise at all (eps 0), same mask learning
    "paper-train-mask-1pass-eps0": {
        "preset": "paper",
        "eps": 0.0,
        "batches_per_epoch": 0,
        "mask_train_mode": True,
    },
    "faithful": {"preset": "faithful"},
    # how soon the mask alone collapses (1 - m): 1, 3 and 20 mask epochs of 20 drawn batches (20, 60, 400 steps) on
    # cached eval-mode features, no noise (eps 0, one noise step, so BatchNorm's running statistics move alike)
    "mask-steps20": {"preset": "paper", "mask_batches": 20, "mask_epochs": 1, "eps": 0.0, "steps": 1},
    "mask-steps60": {"preset": "paper", "mask_batches": 20, "mask_epochs": 3, "eps": 0.0, "steps": 1},
    "mask-steps400": {"preset": "paper", "mask_batches": 20, "mask_epochs": 20, "eps": 0.0, "steps": 1},
    # twice the paper's eps with its train-mode noise; one mask epoch (the no-mask statistic ignores the mask):
    # does a stronger noise reach the target on ResNet18? (2026-12-03)
    "paper-eps0.6-mask1": {"preset": "paper", "eps": 0.6, "mask_epochs": 1},
}


def defender_data(folder: Path) -> CleanData:
    spec = load_bench_spec(folder)
    d = spec.data
    train = load_dataset(d.dataset, "train", d.data_dir)
    return CleanData.from_images(defender_split(train, d.defender_fraction, d.split_seed)[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--eval-samples", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--clean-first", action="store_true", help="scan the clean models first")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [c for c in args.configs.split(",") if c]
    unknown = [c for c in names if c not in CONFIGS]
    if unknown:
        raise SystemExit(f"unknown configuration {unknown[0]}; choose from {', '.join(CONFIGS)}")
    done = set()
    if args.out.exists():
        for line in args.out.read_text().splitlines():
            r = json.loads(line)
            done.add((r["model"], r["config"]))
    clean = defender_data(args.folder)
    paths = sorted((args.folder / "models").glob("*.safetensors"))
    if args.clean_first:
        paths.sort(key=lambda p: not p.stem.startswith("clean-"))
    for path in paths:
        todo = [c for c in names if (path.stem, c) not in done]
        if not todo:
            continue
        ckpt = load_model(path)
        meta = ckpt.meta
        attack = meta.get("attack") or {}
        truth = {
            "group": (meta.get("bench") or {}).get("group"),
            "attack": attack.get("name"),
            "target": (attack.get("params") or {}).get("target"),
            "asr": meta.get("asr"),
            "ba": meta.get("ba"),
            "arch": meta.get("arch"),
            "seed": meta.get("seed"),
        }
        for c in todo:
            cfg = dict(CONFIGS[c])
            options = cfg.pop("options", {})
            det = BAN(seed=args.seed, quiet=True, early_stop=False, eval_samples=args.eval_samples, **cfg)
            if options:  # an option no setting reaches: replace the detector's resolved options
                det.options = MappingProxyType({**det.options, **options})
            t = time.perf_counter()
            v = det.detect(ckpt.model, clean)
            d = v.details
            row = {
                "model": path.stem,
                "config": c,
                **truth,
                "seconds": time.perf_counter() - t,
                "loss_rise": d["loss_rise"],
                "confusion_no_mask": d["confusion_no_mask"],
                "confusion_negative_mask": d["confusion_negative_mask"],
                "confusion_negative_mask_no_noise": d["confusion_negative_mask_no_noise"],
            }
            with args.out.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(
                f"{path.stem} {c}: {truth['group']} t={truth['target']} asr={truth['asr']} "
                f"default-score {v.score:.3f} -> {v.target} ({row['seconds']:.1f} s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
