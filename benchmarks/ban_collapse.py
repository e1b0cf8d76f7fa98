"""How fast BAN's (1 - m) predictions collapse into one class as the feature mask learns, on a bench folder.

For every model of `ban bench run`'s folder this learns BAN's feature mask (the paper's objective,
lambda 0.75, Adam lr 0.01, batches of 128 drawn with replacement) on cached eval-mode features of 500
defender images, without any neuron noise, and every 10 steps predicts 2000 held-out defender images
from (1 - m) * features. It appends one JSON line per model to OUT: for each mask initialisation, rows
[step, pooled argmax, pooled share, per-class-q25 argmax, per-class-q25 score, mask mean], and the
model's ground truth (read from the checkpoint by this evaluator, never given to the mask).

    python benchmarks/ban_collapse.py runs/fmnist-r18 --out runs/fmnist-r18/collapse.jsonl
    python benchmarks/ban_collapse.py runs/fmnist-r18 --out runs/fmnist-r18/collapse.jsonl --summary

Resumable: models already in OUT are skipped. docs/ban-defaults.md quotes the summary.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ban.bench.store import load_bench_spec
from ban.blocks.mask import FeatureMask, compute_features, mask_objective
from ban.checkpoint import load_model
from ban.clean_data import CleanData
from ban.data.registry import load_dataset
from ban.data.split import defender_split
from ban.detectors.ban_detector import per_class_scores, pooled_scores
from ban.models import get_split


def defender_data(folder: Path) -> CleanData:
    spec = load_bench_spec(folder)
    d = spec.data
    train = load_dataset(d.dataset, "train", d.data_dir)
    return CleanData.from_images(defender_split(train, d.defender_fraction, d.split_seed)[1])


def scan(folder: Path, out: Path, key: str, measure: Callable[[torch.nn.Module], Any]) -> None:
    """For every model of the bench folder not yet in `out`, append one JSON line: the model's ground
    truth (read here, by the evaluator) and `measure(model)` under `key`."""
    done = {json.loads(line)["model"] for line in out.read_text().splitlines()} if out.exists() else set()
    for path in sorted((folder / "models").glob("*.safetensors")):
        if path.stem in done:
            continue
        ckpt = load_model(path)
        attack = ckpt.meta.get("attack") or {}
        t = time.perf_counter()
        row = {
            "model": path.stem,
            "attack": attack.get("name"),
            "target": (attack.get("params") or {}).get("target"),
            "asr": ckpt.meta.get("asr"),
            key: measure(ckpt.model.eval()),
        }
        row["seconds"] = time.perf_counter() - t
        with out.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(f"{path.stem}: {row['seconds']:.0f} s", flush=True)


def auroc(pos: list[float], neg: list[float]) -> float:
    """Share of (backdoored, clean) pairs ranked right by a score, ties counting half (NaN without pairs)."""
    if not pos or not neg:
        return float("nan")
    return float(sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg) / (len(pos) * len(neg)))


def curve(model: torch.nn.Module, clean: CleanData, steps: int, init_seed: int) -> list[list[Any]]:
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(clean), generator=g)
    xo, yo = clean.x[perm[:500]], clean.y[perm[:500]]
    xe, ye = clean.x[perm[500:2500]], clean.y[perm[500:2500]]
    dev = torch.device("cpu")
    fo, fe = compute_features(model, xo, 256, dev), compute_features(model, xe, 256, dev)
    split, k = get_split(model), clean.num_classes
    gg = torch.Generator().manual_seed(init_seed)
    mask = FeatureMask(tuple(fo.shape[1:]), "clamp", gg)
    opt = torch.optim.Adam([mask.weight], lr=0.01)
    rows: list[list[Any]] = []
    for step in range(steps + 1):
        if step % 10 == 0:
            with torch.no_grad():
                m = mask.mask()
                pred = split.head((1 - m) * fe).argmax(1)
                conf = torch.bincount(ye * k + pred, minlength=k * k).view(k, k)
                ps, qs = pooled_scores(conf), per_class_scores(conf, q=0.25)
                point = [int(ps.argmax()), float(ps.max()), int(qs.argmax()), float(qs.max()), float(m.mean())]
                rows.append([step, *point])
        if step == steps:
            break
        idx = torch.randint(0, len(fo), (128,), generator=gg)
        loss, _ = mask_objective(split.head, fo[idx], yo[idx], mask.mask(), 0.75)
        (grad,) = torch.autograd.grad(loss, [mask.weight])
        mask.weight.grad = grad
        opt.step()
        mask.project_()
    return rows


def summary(out: Path) -> None:
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    steps = sorted({c[0] for c in rows[0]["curves"][0]})
    print("| mask steps | " + " | ".join(str(s) for s in steps if s % 100 == 0) + " |")
    for init in range(len(rows[0]["curves"])):
        right, flagged = [], []
        for s in (s for s in steps if s % 100 == 0):
            r = f = 0
            for row in rows:
                point = next(c for c in row["curves"][init] if c[0] == s)
                hit = point[4] > 0.5
                if row["target"] is None:
                    f += hit
                elif (row.get("asr") or 0) >= 0.8:
                    r += hit and point[3] == row["target"]
            right.append(r)
            flagged.append(f)
        nb = sum(1 for row in rows if row["target"] is not None and (row.get("asr") or 0) >= 0.8)
        nc = sum(1 for row in rows if row["target"] is None)
        print(f"| init {init}: right target of {nb} | " + " | ".join(map(str, right)) + " |")
        print(f"| init {init}: clean flagged of {nc} | " + " | ".join(map(str, flagged)) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--inits", type=int, default=2, help="mask initialisations (seeds 0, 1, ...)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--summary", action="store_true", help="only print the table of OUT")
    args = ap.parse_args()
    if args.summary:
        summary(args.out)
        return
    torch.set_num_threads(args.threads)
    clean = defender_data(args.folder)
    scan(args.folder, args.out, "curves", lambda model: [curve(model, clean, args.steps, i) for i in range(args.inits)])
    summary(args.out)


if __name__ == "__main__":
    main()
