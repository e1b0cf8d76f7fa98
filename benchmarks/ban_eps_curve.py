"""BAN's score as a curve over ε: do backdoors reach their target at smaller noise than clean models reach a sink?

The paper's intuition is that a backdoored network flips to its target under *small* neuron noise while a
clean one needs more. One ε reads the curve at one point. This script reads rows that
`benchmarks/ban_restarts.py` wrote for the same zoo at several ε (one file per ε, the same detector seeds)
and scores candidate statistics over the curve, per class, by the paper's pooled share:

- every ε alone (the mean of the first K seeds, as the default combines its two runs);
- the mean over all ε (the first K seeds at each ε);
- pairs of ε at the default's cost: one run at each ε (seed 0 at the first, seed 1 at the second), averaged;
- early saturation: the share at the smallest ε, times min(1, that share over the share at the largest ε)
  (a backdoor saturates early, a sink grows with ε).

    python benchmarks/ban_restarts.py runs/fmnist-r18 --out runs/fmnist-r18/restarts-eps0.2.jsonl \\
        --seeds 2 --threads 2 --param eps=0.2
    python benchmarks/ban_eps_curve.py 0.2=runs/fmnist-r18/restarts-eps0.2.jsonl \\
        0.3=benchmarks/results/fmnist-r18-restarts-step2.5.jsonl ...

Measured on four zoos (2026-12-05): docs/ban-defaults.md, "The score as a curve over ε".
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ban_collapse import auroc  # noqa: E402
from ban_restarts import class_scores, population, rows_by_model  # noqa: E402

from ban.figures.plotting import pyplot, save_figure  # noqa: E402

MIN_ASR = 0.8  # a backdoor counts only if it works
#: one model's ban_restarts.py rows at each ε, each ε's in seed order
ByEps = dict[float, list[dict[str, Any]]]
#: a model's rows by ε -> its per-class score
Statistic = Callable[[ByEps], np.ndarray]


def share(rs: list[dict[str, Any]], k: int, statistic: str = "no-mask") -> np.ndarray:
    """Per-class pooled share, the mean of the first k seeds' runs."""
    return np.mean([class_scores(r, statistic, "pooled") for r in rs[:k]], axis=0)


def candidates(eps: list[float], k: int, statistic: str) -> dict[str, Statistic]:
    found: dict[str, Statistic] = {}
    for e in eps:
        found[f"ε {e}, mean of {k}"] = lambda by_eps, e=e: share(by_eps[e], k, statistic)
    found[f"mean over ε {eps}, {k} seeds each"] = lambda by_eps: np.mean(
        [share(by_eps[e], k, statistic) for e in eps], axis=0
    )
    for a, b in combinations(eps, 2):  # the default's cost: two runs
        found[f"ε {a} seed 0 + ε {b} seed 1"] = lambda by_eps, a=a, b=b: (
            (share(by_eps[a][:1], 1, statistic) + share(by_eps[b][1:2], 1, statistic)) / 2
        )
    lo, hi = eps[0], eps[-1]

    def early_saturation(by_eps: ByEps) -> np.ndarray:
        low = share(by_eps[lo], k, statistic)
        return low * np.clip(low / np.maximum(share(by_eps[hi], k, statistic), 1e-9), 0, 1)

    found[f"early saturation, ε {lo} against {hi}"] = early_saturation
    return found


def first_row(by_eps: ByEps) -> dict[str, Any]:
    """The model's identity (target, ASR, attack): the same in every row."""
    return next(iter(by_eps.values()))[0]


def score(by_eps_model: dict[str, ByEps], stat: Statistic, threshold: float) -> str:
    pos, neg, right = [], [], 0
    for by_eps in by_eps_model.values():
        first = first_row(by_eps)
        s = stat(by_eps)
        value, cls = float(s.max()), int(s.argmax())
        kind = population(first, MIN_ASR)
        if kind == "clean":
            neg.append(value)
        elif kind == "backdoor":
            pos.append(value)
            right += value > threshold and cls == first["target"]
    flagged = sum(v > threshold for v in neg)
    if not pos:  # a zoo of clean models only: how many the statistic flags
        return f"- | {flagged}/{len(neg)} | - | - | - | {span(neg)}"
    cut = max(neg) if neg else float("inf")
    tpr = sum(p > cut for p in pos) / len(pos)
    return f"{right}/{len(pos)} | {flagged}/{len(neg)} | {auroc(pos, neg):.3f} | {tpr:.2f} | {span(pos)} | {span(neg)}"


def span(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}" if values else "-"


def plot(by_eps_model: dict[str, ByEps], k: int, statistic: str, threshold: float, out: Path) -> None:
    """Each model's score against ε, as the default decides it (the mean of k runs' pooled shares, its top
    class): working backdoors in red (a filled dot where the top class is the target), clean models in
    blue, weaker backdoors (neither positive nor negative) in grey; the threshold dashed."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colors = {"clean": "tab:blue", "backdoor": "tab:red", "weak": "0.6"}
    for by_eps in by_eps_model.values():
        first = first_row(by_eps)
        eps = sorted(by_eps)
        shares = [share(by_eps[e], k, statistic) for e in eps]
        ys = [float(s.max()) for s in shares]
        kind = population(first, MIN_ASR)
        ax.plot(eps, ys, color=colors[kind], alpha=0.6 if kind == "clean" else 0.8, lw=1.2)
        if kind != "clean":  # a dot where the top class is the backdoor's target
            hits = [(e, y) for e, y, s in zip(eps, ys, shares, strict=True) if int(s.argmax()) == first["target"]]
            if hits:
                ax.scatter(*zip(*hits, strict=True), color=colors[kind], s=18, zorder=3)
    ax.axhline(threshold, color="k", ls="--", lw=1)
    handles = [
        plt.Line2D([], [], color="tab:red", marker="o", label=f"backdoor, ASR ≥ {MIN_ASR} (dot: top class = target)"),
        plt.Line2D([], [], color="tab:blue", label="clean"),
        plt.Line2D([], [], color="0.6", label=f"backdoor, ASR < {MIN_ASR} (not counted)"),
        plt.Line2D([], [], color="k", ls="--", label=f"threshold {threshold}"),
    ]
    ax.legend(handles=handles, fontsize=7.5, loc="upper center", ncol=2)
    ax.set_xlabel("ε (neuron-noise bound)")
    ax.set_ylabel(f"score: top class's pooled share, mean of {k} runs")
    ax.set_title(f"BAN's score over ε ({statistic}), {len(by_eps_model)} models")
    ax.set_ylim(0, 1.2)  # room for the legend above the scores
    fig.tight_layout()
    save_figure(fig, out)
    print(f"figure: {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rows", nargs="+", help="EPS=FILE: ban_restarts.py rows of one zoo at that ε")
    ap.add_argument("--seeds", type=int, default=2, help="runs averaged per ε (the first K seeds)")
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--statistic", default="no-mask", help="no-mask, (1 - m) or (1 - m), no noise")
    ap.add_argument("--plot", type=Path, help="also draw every model's score against ε to this PNG")
    args = ap.parse_args()
    files: dict[float, dict[str, list[dict[str, Any]]]] = {}
    for item in args.rows:
        e, _, path = item.partition("=")
        try:
            files[float(e)] = rows_by_model(Path(path))
        except (ValueError, OSError) as err:
            ap.error(f"{item!r}: expected EPS=FILE with a number and a ban_restarts.py rows file ({err})")
    eps = sorted(files)
    models = set.intersection(*(set(rows) for rows in files.values()))
    by_eps_model = {m: {e: files[e][m] for e in eps} for m in sorted(models)}
    print(f"{len(models)} models at every ε {eps}\n")
    print("| model | target | " + " | ".join(f"ε {e}" for e in eps) + " |")
    print("|---|---|" + "---|" * len(eps))
    for m, by_eps in by_eps_model.items():
        cells = []
        for e in eps:
            s = share(by_eps[e], args.seeds, args.statistic)
            cells.append(f"{s.max():.2f} ({s.argmax()})")
        print(f"| {m} | {by_eps[eps[0]][0]['target']} | " + " | ".join(cells) + " |")
    print(f"\nthreshold {args.threshold}; working backdoors: ASR ≥ {MIN_ASR}; TPR above every clean model\n")
    print("| statistic | right target | clean flagged | AUROC | TPR | backdoors | clean |")
    print("|---|---|---|---|---|---|---|")
    for name, stat in candidates(eps, args.seeds, args.statistic).items():
        print(f"| {name} | {score(by_eps_model, stat, args.threshold)} |")
    if args.plot:
        plot(by_eps_model, args.seeds, args.statistic, args.threshold, args.plot)


if __name__ == "__main__":
    main()
