"""BAN's default verdict under several detector seeds: how much one noise search's answer varies.

On the augmented ResNet18 zoo (2026-12-04) one model's pooled share moved from 0.17 to 0.66 across
seeds 0-4, and another's from 0.22 to 1.00, while the class stayed the backdoor's target; a clean
model's class changed from seed to seed. This script runs the default detector as one run (restarts 1)
with seeds 0..K-1 on every model of a `ban bench run` folder and appends one JSON line per (model, seed)
with the verdict's score, class and confusion matrices, so rules over restarts (mean share per class,
agreement of the class) can be re-scored offline. `--summary` prints, per model, the scores and classes
by seed, the zoo-level result of the restart rules, the no-mask score per attack, and the ablation of
BAN's parts (noise only, mask only, both) per attack.

    python benchmarks/ban_restarts.py runs/fmnist-r18-aug --out runs/fmnist-r18-aug/restarts.jsonl --seeds 5
    python benchmarks/ban_restarts.py runs/fmnist-r18-aug --out runs/fmnist-r18-aug/restarts.jsonl --summary
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ban_collapse import auroc, defender_data  # noqa: E402

from ban.checkpoint import load_model  # noqa: E402
from ban.commands.common import parse_params  # noqa: E402
from ban.detectors import create_detector  # noqa: E402
from ban.detectors.ban_detector import per_class_scores, pooled_scores  # noqa: E402

KEEP = ("confusion_no_mask", "confusion_negative_mask", "confusion_negative_mask_no_noise", "loss_rise")


def run(folder: Path, out: Path, seeds: int, settings: dict[str, Any]) -> None:
    done = {(r["model"], r["seed"]) for r in map(json.loads, out.read_text().splitlines())} if out.exists() else set()
    clean = defender_data(folder)
    settings = {"restarts": 1, **settings}  # one run a row: the rows are the draws that rules combine
    for path in sorted((folder / "models").glob("*.safetensors")):
        todo = [s for s in range(seeds) if (path.stem, s) not in done]
        if not todo:
            continue
        ckpt = load_model(path)
        attack = ckpt.meta.get("attack") or {}
        for seed in todo:
            t = time.perf_counter()
            v = create_detector("ban", seed=seed, quiet=True, **settings).detect(ckpt.model, clean)
            row = {
                "model": path.stem,
                "attack": attack.get("name"),
                "target": (attack.get("params") or {}).get("target"),
                "asr": ckpt.meta.get("asr"),
                "seed": seed,
                "score": v.score,
                "class": v.details["argmax_class"],
                "seconds": time.perf_counter() - t,
                **{k: v.details[k] for k in KEEP},
            }
            with out.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(f"{path.stem} seed {seed}: {v.score:.2f} ({row['class']}), {row['seconds']:.0f} s", flush=True)


STATISTICS = {
    "no-mask": "confusion_no_mask",  # the noise only
    "(1 - m)": "confusion_negative_mask",  # both: the mask's (1 - m) features under the noise
    "(1 - m), no noise": "confusion_negative_mask_no_noise",  # (1 - m), the noise off after its search
}
#: BAN's parts as the ablation table names them. "(1 - m), noise off" still predicts with the BatchNorm
#: statistics the train-mode noise search left; the mask alone is "both" in rows run with eps=0
#: (`--param eps=0 --param steps=1`), where no noise is ever on.
PARTS = {"noise only": "no-mask", "both": "(1 - m)", "(1 - m), noise off": "(1 - m), no noise"}


def other_classes(confusion: torch.Tensor) -> torch.Tensor:
    """Per class c: the share of the other classes' images predicted c (the pooled share without c's own)."""
    c = confusion.double()
    n = c.sum(1)
    return (c.sum(0) - c.diag()) / (n.sum() - n).clamp(min=1)


def flips(confusion: torch.Tensor) -> torch.Tensor:
    """Per class c: the share of the misclassified images that went to c (how concentrated the errors are)."""
    c = confusion.double()
    return (c.sum(0) - c.diag()) / (c.sum() - c.trace()).clamp(min=1)


RULES = {
    "pooled": pooled_scores,
    "per-class q25": lambda c: per_class_scores(c, q=0.25),
    "other classes": other_classes,
    "flips": flips,
}


#: candidate statistics made of the recorded ones (name -> how the parts' per-class scores combine, parts):
#: their mean; their minimum (agreement: a class scores high only where both the noise and the (1 - m)
#: predictions go); their geometric mean or maximum; a difference (the collapse the noise adds to the mask's own)
MIXES: dict[str, tuple[Callable[[list[np.ndarray]], np.ndarray], tuple[str, ...]]] = {
    "noise only + both": (lambda a: np.mean(a, axis=0), ("no-mask", "(1 - m)")),
    "min(noise only, both)": (lambda a: np.min(a, axis=0), ("no-mask", "(1 - m)")),
    "min(noise only, (1 - m) noise off)": (lambda a: np.min(a, axis=0), ("no-mask", "(1 - m), no noise")),
    "sqrt(noise only x both)": (lambda a: np.sqrt(a[0] * a[1]), ("no-mask", "(1 - m)")),
    "max(noise only, both)": (lambda a: np.max(a, axis=0), ("no-mask", "(1 - m)")),
    "noise only - (1 - m) noise off": (lambda a: a[0] - a[1], ("no-mask", "(1 - m), no noise")),
    "both - (1 - m) noise off": (lambda a: a[0] - a[1], ("(1 - m)", "(1 - m), no noise")),
}


def class_scores(row: dict[str, Any], statistic: str, rule: str) -> np.ndarray:
    """Score of every class of one (model, seed) under a statistic and a rule, from its confusion matrix."""
    if statistic in MIXES:
        how, parts = MIXES[statistic]
        return how([class_scores(row, part, rule) for part in parts])
    return RULES[rule](torch.tensor(row[STATISTICS[statistic]])).numpy()


def combined(rs: list[dict[str, Any]], statistic: str, rule: str, how: str) -> tuple[float, int]:
    """(score, class) of several seeds: the mean of their per-class scores, or the best single seed."""
    per_seed = np.stack([class_scores(r, statistic, rule) for r in rs])
    if how == "mean":
        mean = per_seed.mean(0)
        return float(mean.max()), int(mean.argmax())
    best = np.unravel_index(per_seed.argmax(), per_seed.shape)
    return float(per_seed[best]), int(best[1])


def population(row: dict[str, Any], min_asr: float = 0.8) -> str:
    """Which population a model's row counts in: "clean", "backdoor" (its ASR reaches min_asr) or "weak"
    (a backdoor under the gate, counted neither way)."""
    if row["target"] is None:
        return "clean"
    return "backdoor" if (row.get("asr") or 0) >= min_asr else "weak"


def rows_by_model(out: Path) -> dict[str, list[dict[str, Any]]]:
    """The (model, seed) rows of OUT, grouped by model, each model's in seed order (the first K seeds are [:K])."""
    by_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in map(json.loads, out.read_text().splitlines()):
        by_model[r["model"]].append(r)
    return {name: sorted(rs, key=lambda r: r["seed"]) for name, rs in by_model.items()}


def summary(by_model: dict[str, list[dict[str, Any]]], threshold: float, min_asr: float = 0.8) -> None:
    print("| model | target | score (class) by seed |")
    print("|---|---|---|")
    for name, rs in sorted(by_model.items()):
        cells = ", ".join(f"{r['score']:.2f} ({r['class']})" for r in rs)
        print(f"| {name} | {rs[0]['target']} | {cells} |")
    n_seeds = min(len(rs) for rs in by_model.values())
    print(f"\n{n_seeds} seeds a model, threshold {threshold}; K = the first K seeds\n")
    print("| statistic | rule | seeds combined | K | right | clean flagged | AUROC | highest clean |")
    print("|---|---|---|---|---|---|---|---|")
    for statistic, rule, how, k in product(STATISTICS, RULES, ("mean", "max"), sorted({1, 2, 3, n_seeds})):
        if k > n_seeds or (k == 1 and how == "max"):
            continue
        pos, neg, right = [], [], 0
        for rs in by_model.values():
            rs = rs[:k]
            score, cls = combined(rs, statistic, rule, how)
            kind = population(rs[0], min_asr)
            if kind == "clean":
                neg.append(score)
            elif kind == "backdoor":
                pos.append(score)
                right += score > threshold and cls == rs[0]["target"]
        flagged, top = sum(s > threshold for s in neg), max(neg, default=float("nan"))
        label = "seed 0 alone" if k == 1 else how
        print(
            f"| {statistic} | {rule} | {label} | {k} | {right}/{len(pos)} | {flagged}/{len(neg)} "
            f"| {auroc(pos, neg):.3f} | {top:.2f} |"
        )


def per_attack(
    by_model: dict[str, list[dict[str, Any]]],
    threshold: float,
    k: int,
    how: str,
    min_asr: float = 0.8,
    statistic: str = "no-mask",
    part: str = "",
) -> None:
    """One row for a statistic's pooled score over the first k seeds: Bd. per attack (right target / working
    backdoors), clean models flagged, AUROC, and the TPR at a false-alarm rate of at most 1 % (with fewer
    than 100 clean models: the share of working backdoors scoring above every clean model)."""
    hits: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    pos, neg = [], []
    for rs in by_model.values():
        rs = rs[:k]
        score, cls = combined(rs, statistic, "pooled", how)
        kind = population(rs[0], min_asr)
        if kind == "clean":
            neg.append(score)
        elif kind == "backdoor":
            pos.append(score)
            hits[rs[0]["attack"]][0] += score > threshold and cls == rs[0]["target"]
            hits[rs[0]["attack"]][1] += 1
    allowed = int(0.01 * len(neg))  # clean models allowed above the cut at 1 % FPR
    cut = sorted(neg, reverse=True)[allowed] if neg else float("inf")
    tpr = sum(p > cut for p in pos) / max(1, len(pos))
    attacks = ", ".join(f"{a} {h}/{n}" for a, (h, n) in sorted(hits.items()))
    label = "seed 0 alone" if k == 1 else f"{how} of {k}"
    flagged = sum(s > threshold for s in neg)
    lead = f"| {part} " if part else ""
    print(f"{lead}| {label} | {attacks} | {flagged}/{len(neg)} | {auroc(pos, neg):.3f} | {tpr:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--param", action="append", default=[], help="a detector setting KEY=VALUE (repeatable)")
    ap.add_argument("--summary", action="store_true", help="only print the tables of OUT")
    ap.add_argument("--models", default="", help="score only models whose name contains this (an architecture)")
    args = ap.parse_args()
    if not args.summary:
        torch.set_num_threads(args.threads)
        run(args.folder, args.out, args.seeds, parse_params(args.param))
    by_model = {m: rs for m, rs in rows_by_model(args.out).items() if args.models in m}  # read once
    if not by_model:
        sys.exit(f"no rows in {args.out} for models named like '{args.models}'")
    summary(by_model, args.threshold)
    n_seeds = min(len(rs) for rs in by_model.values())
    ks = sorted({1, min(2, n_seeds), n_seeds})  # one run, the default's two, and every seed kept
    print("\n| no-mask, pooled | Bd. per attack | clean flagged | AUROC | TPR at 1 % FPR |\n|---|---|---|---|---|")
    for k in ks:
        per_attack(by_model, args.threshold, k, "mean")
    print("\n| BAN's part | runs | Bd. per attack | clean flagged | AUROC | TPR at 1 % FPR |")
    print("|---|---|---|---|---|---|")
    for part, statistic in [*PARTS.items(), *((m, m) for m in MIXES)]:
        for k in ks:
            per_attack(by_model, args.threshold, k, "mean", statistic=statistic, part=part)


if __name__ == "__main__":
    main()
