"""Re-score BAN's decision rule offline from the result files of `ban bench run` (no model is run).

Every BAN result keeps the confusion matrices of the held-out images under noise (rows: true class),
so a candidate rule can be compared with the shipped one on a whole zoo in seconds. For each rule and
threshold this prints: backdoored models flagged with the right target, clean models flagged, and the
AUROC of the rule's score; `--per-model` adds one line per model (group, true target, each rule's
score and target).

Usage: python benchmarks/ban_rules.py runs/fmnist-cpu [more bench folders] [--per-model]
       python benchmarks/ban_rules.py runs/fmnist-r18/signals.jsonl   # lines of benchmarks/ban_signals.py,
                                                                       # one table per BAN configuration
Only backdoored models whose backdoor works (ASR >= --min-asr, default 0.8) count; weaker ones are left
out and counted in the table's title.

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


def flip_share(conf: torch.Tensor) -> torch.Tensor:
    """Share of the misclassified images (off the diagonal) predicted t: where the flips go, whatever
    their number. A weak noise that flips few images scores as high as a strong one if they all go to t."""
    off = conf.double().clone()
    off.fill_diagonal_(0)
    return off.sum(0) / off.sum().clamp_min(1)


RULES: dict[str, Rule] = {
    "pooled": pooled_scores,
    "pooled-others": pooled_others,
    "flips": flip_share,
    "min": quantile_rule(0.0),
    "q125": quantile_rule(0.125),
    "q25": quantile_rule(0.25),
    "median": quantile_rule(0.5),
    "q75": quantile_rule(0.75),
}
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
STATISTICS = {
    "no-mask": "confusion_no_mask",
    "negative-mask": "confusion_negative_mask",
    "negative-mask-no-noise": "confusion_negative_mask_no_noise",
}


def best(rule: Rule, confusion: torch.Tensor) -> tuple[float, int]:
    """The rule's (score, target): its best-scoring class."""
    s = rule(confusion)
    t = int(s.argmax())
    return float(s[t]), t


def _row(source: str, model: str, group: str, backdoored: bool, target: Any, asr: Any, d: dict[str, Any]) -> dict:
    return {
        "folder": source,
        "model": model,
        "group": group,
        "backdoored": backdoored,
        "target": target,
        "asr": asr,
        "loss_rise": d["loss_rise"],
        **{s: torch.tensor(d[key]) for s, key in STATISTICS.items() if key in d},
    }


def load(folder: Path, method: str = "ban") -> list[dict[str, Any]]:
    """BAN results of one method column (`label` in the spec) of a bench folder."""
    rows = []
    for path in sorted(folder.glob("results/detect/*/*.json")):
        r = json.loads(path.read_text())
        if r.get("method") != method:
            continue
        m, d = r["model"], r["verdict"]["details"]
        rows.append(_row(folder.name, m["id"], m["group"], bool(m["backdoored"]), m["target"], m["asr"], d))
    return rows


def load_signals(path: Path) -> dict[str, list[dict[str, Any]]]:
    """benchmarks/ban_signals.py lines, grouped by BAN configuration."""
    out: dict[str, list[dict[str, Any]]] = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        row = _row(path.parent.name, r["model"], r["group"], r["group"] != "clean", r["target"], r["asr"], r)
        out.setdefault(r["config"], []).append(row)
    return out


def working(rows: list[dict[str, Any]], min_asr: float) -> tuple[list[dict[str, Any]], int]:
    """Clean models and the backdoored ones whose backdoor works; and how many were left out."""
    keep = [r for r in rows if not r["backdoored"] or (r["asr"] or 0.0) >= min_asr]
    return keep, len(rows) - len(keep)


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
    for statistic in (st for st in STATISTICS if all(st in r for r in rows)):
        for name, rule in RULES.items():
            print("| " + " | ".join(evaluate(rows, statistic, name, rule)) + " |")
    y = np.array([r["backdoored"] for r in rows], dtype=int)
    if 0 < y.sum() < len(y):
        print(f"| - | loss rise | {auroc(y, np.array([r['loss_rise'] for r in rows])):.3f} |" + " |" * len(THRESHOLDS))


def per_model(rows: list[dict[str, Any]], statistic: str) -> None:
    names = list(RULES)
    print("\n| model | target | " + " | ".join(names) + " | loss rise |")
    print("|" + "---|" * (len(names) + 3))
    for r in rows:
        cells = ["{:.2f} ({})".format(*best(RULES[name], r[statistic])) for name in names]
        print(f"| {r['model']} | {r['target']} | " + " | ".join(cells) + f" | {r['loss_rise']:.2f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("sources", nargs="+", type=Path, help="`ban bench run --out` folders or ban_signals.py .jsonl files")
    p.add_argument("--method", default="ban", help="the spec's method column to read from bench folders")
    p.add_argument("--min-asr", type=float, default=0.8, help="a backdoored model counts only at this ASR or above")
    p.add_argument("--per-model", default=None, metavar="STATISTIC", help="one line per model for this statistic")
    args = p.parse_args()
    tables: dict[str, list[dict[str, Any]]] = {}
    for src in args.sources:
        if src.suffix == ".jsonl":
            for config, rows in load_signals(src).items():
                tables[f"{src} [{config}]"] = rows
        else:
            rows = load(src, args.method)
            if not rows:
                raise SystemExit(f"no '{args.method}' results under {src}/results/detect: run `ban bench run`")
            tables[str(src)] = rows
    for title, rows in tables.items():
        kept, dropped = working(rows, args.min_asr)
        table(kept, f"{title} ({dropped} backdoored models below ASR {args.min_asr} left out)")
        if args.per_model:
            per_model(kept, args.per_model)


if __name__ == "__main__":
    main()
