"""Re-score BAN's decision rule offline from the result files of `ban bench run` (no model is run).

Every BAN result keeps the confusion matrices of the held-out images under noise (rows: true class),
so a candidate rule can be compared with the shipped one on a whole zoo in seconds. For each rule and
threshold this prints: backdoored models flagged with the right target, clean models flagged, and the
AUROC of the rule's score; `--per-model` adds one line per model (group, true target, each rule's
score and target).

Usage: python benchmarks/ban_rules.py runs/fmnist-cpu [more bench folders] [--per-model]

A rule chosen on one zoo is a hypothesis until it holds on another (other seeds, targets, recipe):
pass both folders and read them separately (each folder is reported on its own, then pooled).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ban.bench.metrics import auroc
from ban.detectors.ban_detector import per_class_scores, pooled_scores

Rule = Callable[[torch.Tensor], torch.Tensor]  # confusion -> score per candidate target


def quantile_rule(q: float) -> Rule:
    """score(t) = q-quantile over classes c != t of the share of c's images predicted t."""
    return lambda conf: per_class_scores(conf, q=q)


def pooled_others(conf: torch.Tensor) -> torch.Tensor:
    """Share of the images of the other classes (not t's own) predicted t."""
    k = conf.shape[0]
    out = torch.zeros(k, dtype=torch.float64)
    for t in range(k):
        rows = torch.cat([conf[:t], conf[t + 1 :]])
        out[t] = rows[:, t].sum().double() / rows.sum().clamp_min(1).double()
    return out


RULES: dict[str, Rule] = {
    "pooled": pooled_scores,
    "pooled-others": pooled_others,
    "median": quantile_rule(0.5),
    "q625": quantile_rule(0.625),
    "q75": quantile_rule(0.75),
}
THRESHOLDS = (0.3, 0.4, 0.5, 0.55, 0.6, 0.7)
STATISTICS = {"no-mask": "confusion_no_mask", "negative-mask": "confusion_negative_mask"}


def best(rule: Rule, confusion: torch.Tensor) -> tuple[float, int]:
    """The rule's (score, target): its best-scoring class."""
    s = rule(confusion)
    t = int(s.argmax())
    return float(s[t]), t


def load(folder: Path) -> list[dict[str, Any]]:
    rows = []
    for path in sorted(folder.glob("results/detect/*/ban-*.json")):
        r = json.loads(path.read_text())
        d = r["verdict"]["details"]
        rows.append(
            {
                "folder": folder.name,
                "model": r["model"]["id"],
                "group": r["model"]["group"],
                "backdoored": bool(r["model"]["backdoored"]),
                "target": r["model"]["target"],
                "loss_rise": d["loss_rise"],
                **{s: torch.tensor(d[key]) for s, key in STATISTICS.items()},
            }
        )
    return rows


def evaluate(rows: list[dict[str, Any]], statistic: str, name: str, rule: Rule) -> list[str]:
    scored = [(r, *best(rule, r[statistic])) for r in rows]
    y = np.array([r["backdoored"] for r, _, _ in scored], dtype=int)
    s = np.array([v for _, v, _ in scored])
    n_bd, n_clean = int(y.sum()), int((1 - y).sum())
    area = auroc(y, s) if 0 < n_bd < len(y) else float("nan")
    cells = []
    for thr in THRESHOLDS:
        right = sum(r["backdoored"] and v > thr and t == r["target"] for r, v, t in scored)
        fp = sum((not r["backdoored"]) and v > thr for r, v, _ in scored)
        cells.append(f"{right}/{n_bd} {fp}/{n_clean}")
    return [statistic, name, f"{area:.3f}", *cells]


def table(rows: list[dict[str, Any]], title: str) -> None:
    n_bd = sum(r["backdoored"] for r in rows)
    print(f"\n## {title}: {n_bd} backdoored, {len(rows) - n_bd} clean")
    head = ["statistic", "rule", "AUROC", *(f"thr {t}: right / clean flagged" for t in THRESHOLDS)]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for statistic in STATISTICS:
        for name, rule in RULES.items():
            print("| " + " | ".join(evaluate(rows, statistic, name, rule)) + " |")
    y = np.array([r["backdoored"] for r in rows], dtype=int)
    if 0 < y.sum() < len(y):
        print(f"| - | loss rise | {auroc(y, np.array([r['loss_rise'] for r in rows])):.3f} |" + " |" * len(THRESHOLDS))


def per_model(rows: list[dict[str, Any]]) -> None:
    names = list(RULES)
    print("\n| model | target | " + " | ".join(names) + " | loss rise |")
    print("|" + "---|" * (len(names) + 3))
    for r in rows:
        cells = ["{:.2f} ({})".format(*best(RULES[name], r["no-mask"])) for name in names]
        print(f"| {r['model']} | {r['target']} | " + " | ".join(cells) + f" | {r['loss_rise']:.2f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("folders", nargs="+", type=Path, help="`ban bench run --out` folders")
    p.add_argument("--per-model", action="store_true", help="one line per model (no-mask statistic)")
    args = p.parse_args()
    everything: list[dict[str, Any]] = []
    for folder in args.folders:
        rows = load(folder)
        if not rows:
            raise SystemExit(f"no BAN results under {folder}/results/detect: run `ban bench run` with the ban detector")
        table(rows, str(folder))
        if args.per_model:
            per_model(rows)
        everything += rows
    if len(args.folders) > 1:
        table(everything, "all folders")


if __name__ == "__main__":
    main()
