"""Targeted neuron noise per class: which classes can a small noise on the first layers send every image to?

BAN's noise is untargeted: it maximises the clean loss and reads where the predictions go. This probe
asks each class in turn. For every class t it searches one noise δ_t, ξ_t (ε-ball, eval-mode BatchNorm,
`--steps` projected sign steps of 2ε/steps from zero) that minimises CE(model_noisy(x), t) on `--n-opt`
optimisation images of the other classes; the ten searches run as ten noise groups in one batch
(`NeuronNoise(groups=K, depth=D)`). It records reach(t): the share of `--n-eval` held-out images of the
other classes that the noise sends to t. A backdoor target should be reachable where other classes are not.

`--depth D` puts the noise on the first D normalisation layers only (ResNet18: 5 = bn1 and layer1,
9 = up to layer2); 0 = every layer; -D the last D (ResNet18: -5 = layer4, -10 = layer3 and layer4).
The ground truth (attack, target, ASR) is read from each
checkpoint's metadata by this evaluator, never passed to the search.

Usage: python benchmarks/ban_targeted.py runs/fmnist-r18 --out runs/fmnist-r18/targeted.jsonl --depth 5 --eps 0.1,0.2
Resumable: (model, depth, eps) lines already in OUT are skipped.
`--summary` reads OUT and prints, per (depth, eps), the working backdoors (ASR >= 0.8) flagged with the
right target, the clean models flagged (score > `--threshold`) and the AUROC, for two scores: the best
class's reach, and its gap to the second best.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ban.bench.metrics import auroc
from ban.blocks.noise import NeuronNoise
from ban.checkpoint import load_model
from ban.utils import eval_mode

try:
    from ban_signals import defender_data
except ImportError:  # imported as benchmarks.ban_targeted
    from benchmarks.ban_signals import defender_data


def other_class_images(y: Tensor, k: int, n: int, g: torch.Generator) -> Tensor:
    """K×n indices: for each class t, n random images whose label is not t."""
    rows = []
    for t in range(k):
        idx = (y != t).nonzero().flatten()
        rows.append(idx[torch.randperm(len(idx), generator=g)[:n]])
    return torch.stack(rows)


def targeted_reach(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    k: int,
    eps: float,
    steps: int,
    depth: int | None,
    n_opt: int,
    n_eval: int,
    g: torch.Generator,
) -> tuple[list[float], list[float]]:
    """(reach per class, mean CE to the class) after one targeted noise search per class."""
    perm = torch.randperm(len(x), generator=g)
    half = len(x) // 2
    xo, yo, xe, ye = x[perm[:half]], y[perm[:half]], x[perm[half:]], y[perm[half:]]
    opt = xo[other_class_images(yo, k, n_opt, g).flatten()]
    held = xe[other_class_images(ye, k, n_eval, g).flatten()]
    noise = NeuronNoise(model, eps, groups=k, depth=depth)
    with eval_mode(model), noise.applied():
        for _ in range(steps):
            loss = F.cross_entropy(model(opt), torch.arange(k).repeat_interleave(n_opt))
            noise.ascend(-loss, 2 * eps / steps, project=True)  # descend the targeted loss
        with torch.no_grad():
            logits = model(held)
    targets = torch.arange(k).repeat_interleave(n_eval)
    reach = (logits.argmax(1) == targets).double().view(k, n_eval).mean(1)
    ce = F.cross_entropy(logits, targets, reduction="none").view(k, n_eval).mean(1)
    return reach.tolist(), ce.tolist()


def best_class(reach: list[float]) -> int:
    """The most reachable class."""
    return max(range(len(reach)), key=reach.__getitem__)


def summary(rows: list[dict[str, Any]], threshold: float, min_asr: float = 0.8) -> None:
    """Per (depth, eps): right-target detections, clean flagged and AUROC of each score."""
    scores: dict[str, Callable[[list[float]], float]] = {
        "best reach": lambda r: sorted(r)[-1],
        "gap to 2nd": lambda r: sorted(r)[-1] - sorted(r)[-2],
    }
    for key in sorted({(r["depth"], r["eps"]) for r in rows}):
        sel = [r for r in rows if (r["depth"], r["eps"]) == key]
        bd = [r for r in sel if r["attack"] and (r["asr"] or 0) >= min_asr]
        clean = [r for r in sel if not r["attack"]]
        for name, fn in scores.items():
            right = sum(fn(r["reach"]) > threshold and best_class(r["reach"]) == r["target"] for r in bd)
            fp = sum(fn(r["reach"]) > threshold for r in clean)
            labels = [1] * len(bd) + [0] * len(clean)
            values = [fn(r["reach"]) for r in bd + clean]
            auc = auroc(np.array(labels), np.array(values)) if bd and clean else float("nan")
            top = max((fn(r["reach"]) for r in clean), default=float("nan"))
            print(
                f"depth {key[0]} eps {key[1]} {name:>10}: right {right}/{len(bd)}, clean flagged {fp}/{len(clean)}, "
                f"AUROC {auc:.3f}, highest clean {top:.2f}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path, help="a `ban bench run` folder (its models/*.safetensors)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--eps", default="0.1,0.2")
    ap.add_argument("--depth", type=int, default=5, help="first D normalisation layers (0: all; -D: the last D)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--n-opt", type=int, default=20)
    ap.add_argument("--n-eval", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--summary", action="store_true", help="summarise OUT instead of running")
    ap.add_argument("--threshold", type=float, default=0.5)
    args = ap.parse_args()
    if args.summary:
        summary([json.loads(line) for line in args.out.read_text().splitlines()], args.threshold)
        return
    torch.set_num_threads(args.threads)
    depth = args.depth or None
    eps_list = [float(e) for e in args.eps.split(",") if e]
    done = set()
    if args.out.exists():
        done = {(r["model"], r["depth"], r["eps"]) for r in map(json.loads, args.out.read_text().splitlines())}
    clean = defender_data(args.folder)
    for path in sorted((args.folder / "models").glob("*.safetensors")):
        todo = [e for e in eps_list if (path.stem, args.depth, e) not in done]
        if not todo:
            continue
        ckpt = load_model(path)
        for p in ckpt.model.parameters():
            p.requires_grad_(False)
        attack = ckpt.meta.get("attack") or {}
        for eps in todo:
            t0 = time.perf_counter()
            g = torch.Generator().manual_seed(args.seed)
            reach, ce = targeted_reach(
                ckpt.model, clean.x, clean.y, clean.num_classes, eps, args.steps, depth, args.n_opt, args.n_eval, g
            )
            row = {
                "model": path.stem,
                "attack": attack.get("name"),
                "target": (attack.get("params") or {}).get("target"),
                "asr": ckpt.meta.get("asr"),
                "depth": args.depth,
                "eps": eps,
                "steps": args.steps,
                "n_opt": args.n_opt,
                "reach": reach,
                "ce": ce,
                "seconds": time.perf_counter() - t0,
            }
            with args.out.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            best = best_class(reach)
            print(
                f"{path.stem} t={row['target']} depth={args.depth} eps={eps}: best {best} {reach[best]:.2f} | "
                + " ".join(f"{v:.2f}" for v in reach)
                + f" ({row['seconds']:.1f} s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
