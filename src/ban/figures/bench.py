"""The report's figures: ROC curves per detector, and a detector x attack heatmap of detection success."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ban.bench.metrics import auroc, is_correct, labels_and_scores
from ban.figures.plotting import pyplot, save_figure


def roc_figure(by_detector: dict[str, list[dict[str, Any]]], path: Path) -> Path | None:
    """One ROC curve per detector (backdoored = positive, the verdict's score); None without both classes."""
    from sklearn.metrics import roc_curve

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 4.5))
    drawn = 0
    for name, results in by_detector.items():
        y, s = labels_and_scores(results)
        if len(set(y.tolist())) < 2:
            continue
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, marker=".", label=f"{name} (AUROC {auroc(y, s):.2f}, n={len(y)})")
        drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.axvline(0.05, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel("false positive rate (clean models flagged)")
    ax.set_ylabel("true positive rate (backdoored models flagged)")
    ax.set_title("ROC over the zoo")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


def heatmap_figure(
    by_detector: dict[str, list[dict[str, Any]]], groups: list[str], clean_group: str, path: Path
) -> Path | None:
    """Detectors x attacks: fraction of backdoored models detected with the right target; the clean
    column holds the fraction of clean models correctly not flagged."""
    if not by_detector or not groups:
        return None
    plt = pyplot()
    grid = np.full((len(by_detector), len(groups)), np.nan)
    counts = [["" for _ in groups] for _ in by_detector]
    for i, (_, results) in enumerate(by_detector.items()):
        for j, g in enumerate(groups):
            rows = [r for r in results if r["model"]["group"] == g]
            if rows:
                k = sum(is_correct(r) for r in rows)
                grid[i, j] = k / len(rows)
                counts[i][j] = f"{k}/{len(rows)}"
    fig, ax = plt.subplots(figsize=(1.2 * len(groups) + 2.5, 0.6 * len(by_detector) + 1.8))
    im = ax.imshow(np.ma.masked_invalid(grid), vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(groups)), [f"{g}\n(not flagged)" if g == clean_group else g for g in groups])
    ax.set_yticks(range(len(by_detector)), list(by_detector))
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            if counts[i][j]:
                ax.text(j, i, counts[i][j], ha="center", va="center", color="white" if grid[i, j] < 0.6 else "black")
    ax.set_title("models detected with the right target")
    fig.colorbar(im, ax=ax, fraction=0.05)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)
