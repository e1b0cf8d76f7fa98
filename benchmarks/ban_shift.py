"""Per-class reachability by *adding* features: the smallest universal shift of the pooled features to class t.

The feature mask can only remove features, and 2026-12-03 found that removing them does not reach a
backdoor's target on ResNet18 ("the backdoor's features are not in clean images for a mask to select").
A trigger *adds* features. This probe asks, for every class t, how small a universal shift d_t of the
pooled penultimate features (the input of the last linear layer) sends the other classes' images to t:
it minimises CE(head(p + d_t), t) + lam * |d_t| / |p| on cached features of 500 defender images (300 Adam
steps, the ten classes at once; `l1pos`: d_t >= 0 and an L1 size, activating features only; `l2`: any
sign, an L2 size), and records each class's size and its reach on 2000 held-out images. Also recorded:
the class the head gives the mean feature scaled towards zero (the model's "no features" class), to
test whether the (1 - m) collapse of clean models goes there. docs/ban-defaults.md has the result.

    python benchmarks/ban_shift.py runs/fmnist-r18 --out runs/fmnist-r18/shift.jsonl
    python benchmarks/ban_shift.py runs/fmnist-r18 --out runs/fmnist-r18/shift.jsonl --summary
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ban_collapse import auroc, defender_data, scan  # noqa: E402

from ban.blocks.mask import compute_features  # noqa: E402
from ban.clean_data import CleanData  # noqa: E402
from ban.models import get_split  # noqa: E402

VARIANTS = ("l1pos", "l2")
LAMBDAS = (0.5, 2.0)


def pooled(f: torch.Tensor) -> torch.Tensor:
    return f.mean(dim=tuple(range(2, f.dim()))) if f.dim() > 2 else f


def shift_size(d: torch.Tensor, variant: str, scale: torch.Tensor) -> torch.Tensor:
    size = d.abs().sum(1) if variant == "l1pos" else d.norm(dim=1) * d.shape[1] ** 0.5
    return size / scale


def shifts(model: torch.nn.Module, clean: CleanData, steps: int = 300) -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(clean), generator=g)
    xo, yo = clean.x[perm[:500]], clean.y[perm[:500]]
    xe, ye = clean.x[perm[500:2500]], clean.y[perm[500:2500]]
    dev, k = torch.device("cpu"), clean.num_classes
    split = get_split(model)
    with torch.no_grad():
        fo, fe = compute_features(model, xo, 256, dev), compute_features(model, xe, 256, dev)
        po, pe = pooled(fo), pooled(fe)
    linear = split.linear or [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    w, b = linear.weight.detach(), linear.bias.detach()
    if not torch.allclose(pe[:8] @ w.T + b, split.head(fe[:8]), atol=1e-3):
        raise SystemExit("the head is not pooling plus one linear layer; this probe needs that")
    scale = po.abs().sum(1).mean()
    goal = torch.arange(k)[:, None].expand(k, len(po)).reshape(-1)
    other = (yo[None, :] != torch.arange(k)[:, None]).float()
    row: dict[str, Any] = {}
    with torch.no_grad():
        mean = po.mean(0)
        row["null_class"] = [int((a * mean @ w.T + b).argmax()) for a in (0.0, 0.1, 0.5)]
    for variant in VARIANTS:
        for lam in LAMBDAS:
            u = torch.zeros(k, po.shape[1], requires_grad=True)
            opt = torch.optim.Adam([u], lr=0.05)
            for _ in range(steps):
                d = u.clamp(min=0) if variant == "l1pos" else u
                logits = (po[None] + d[:, None, :]) @ w.T + b
                ce = F.cross_entropy(logits.reshape(-1, k), goal, reduction="none").view(k, -1)
                ce = (ce * other).sum(1) / other.sum(1)
                loss = (ce + lam * shift_size(d, variant, scale)).sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
            with torch.no_grad():
                d = u.clamp(min=0) if variant == "l1pos" else u
                reach = [float(((pe + d[t]) @ w.T + b).argmax(1)[ye != t].eq(t).float().mean()) for t in range(k)]
                row[f"{variant}-{lam:g}"] = {"size": shift_size(d, variant, scale).tolist(), "reach": reach}
    return row


def summary(out: Path, min_asr: float = 0.8) -> None:
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    print("| shift, lambda | smallest class = target | AUROC of its MAD z-score | highest clean z | backdoored z |")
    print("|---|---|---|---|---|")
    for key in (f"{v}-{lam:g}" for v in VARIANTS for lam in LAMBDAS):
        pos, neg, right, nb = [], [], 0, 0
        for r in rows:
            size = np.log(np.array(r["shift"][key]["size"]) + 1e-9)
            med = np.median(size)
            z = (med - size) / (1.4826 * np.median(np.abs(size - med)) + 1e-9)
            if r["target"] is None:
                neg.append(float(z.max()))
            elif (r.get("asr") or 0) >= min_asr:
                pos.append(float(z.max()))
                nb += 1
                right += int(z.argmax()) == r["target"]
        zs = ", ".join(f"{v:.1f}" for v in sorted(pos))
        print(f"| {key} | {right}/{nb} | {auroc(pos, neg):.3f} | {max(neg):.1f} | {zs} |")
    print("\n| model | target | null class (scale 0, 0.1, 0.5) |")
    print("|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['target']} | {r['shift']['null_class']} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--summary", action="store_true", help="only print the tables of OUT")
    args = ap.parse_args()
    if not args.summary:
        torch.set_num_threads(args.threads)
        clean = defender_data(args.folder)
        scan(args.folder, args.out, "shift", lambda model: shifts(model, clean))
    summary(args.out)


if __name__ == "__main__":
    main()
