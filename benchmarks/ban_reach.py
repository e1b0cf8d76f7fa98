"""Per-class reachability through BAN's feature mask: can (1 - m) be made to predict class t, for every t?

For every model of `ban bench run`'s folder this learns ten feature masks at once on cached eval-mode
features of 500 defender images, without neuron noise: mask m_t keeps the benign task on m_t * f
(cross-entropy to the true label) and sends (1 - m_t) * f to class t (cross-entropy to t, images of
other classes). At the listed steps it records, for each t, the share of 2000 held-out images of other
classes that (1 - m_t) * features predict as t. A backdoor's target would be the one class reached
early if the mask could find backdoor features in clean images; docs/ban-defaults.md has the result.

    python benchmarks/ban_reach.py runs/fmnist-r18 --out runs/fmnist-r18/reach.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ban_collapse import defender_data, scan  # noqa: E402

from ban.blocks.mask import compute_features  # noqa: E402
from ban.clean_data import CleanData  # noqa: E402
from ban.models import get_split  # noqa: E402


def reach(model: torch.nn.Module, clean: CleanData, steps: list[int]) -> dict[int, list[float]]:
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(clean), generator=g)
    xo, yo = clean.x[perm[:500]], clean.y[perm[:500]]
    xe, ye = clean.x[perm[500:2500]], clean.y[perm[500:2500]]
    dev = torch.device("cpu")
    fo, fe = compute_features(model, xo, 256, dev), compute_features(model, xe, 256, dev)
    split, k = get_split(model), clean.num_classes
    gg = torch.Generator().manual_seed(1)
    w = torch.rand((k, *fo.shape[1:]), generator=gg).requires_grad_(True)
    opt = torch.optim.Adam([w], lr=0.01)
    out: dict[int, list[float]] = {}
    for step in range(max(steps) + 1):
        if step in steps:
            with torch.no_grad():
                out[step] = [
                    float((split.head((1 - w[t]) * fe[ye != t]).argmax(1) == t).float().mean()) for t in range(k)
                ]
        if step == max(steps):
            break
        idx = torch.randint(0, len(fo), (128,), generator=gg)
        f, y = fo[idx], yo[idx]
        loss = torch.zeros(())
        for t in range(k):
            other = y != t
            goal = torch.full((int(other.sum()),), t)
            loss = (
                loss
                + F.cross_entropy(split.head((1 - w[t]) * f[other]), goal)
                + F.cross_entropy(split.head(w[t] * f), y)
            )
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            w.clamp_(0, 1)
    return out


def summary(out: Path) -> None:
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    for step in rows[0]["reach"]:
        pos, neg, right, nb = [], [], 0, 0
        for r in rows:
            v = np.array(r["reach"][step])
            med = np.median(v)
            z = (v.max() - med) / (1.4826 * np.median(np.abs(v - med)) + 1e-9)
            if r["target"] is None:
                neg.append(z)
            elif (r.get("asr") or 0) >= 0.8:
                pos.append(z)
                nb += 1
                right += int(v.argmax()) == r["target"]
        auroc = np.mean([1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg])
        print(f"step {step}: most reachable class = target for {right}/{nb}; AUROC of its MAD z-score {auroc:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", default="10,20,40,80,160")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    steps = [int(s) for s in args.steps.split(",")]
    clean = defender_data(args.folder)
    scan(args.folder, args.out, "reach", lambda model: reach(model, clean, steps))
    summary(args.out)


if __name__ == "__main__":
    main()
