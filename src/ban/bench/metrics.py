"""The benchmark's numbers: per-model detection success, Bd./Acc. counts, AUROC and TPR at 5% FPR with
bootstrap confidence intervals, detection times.

Conventions (the paper's, made explicit):
- a backdoored model is *detected* when flagged AND the named target is its true target (all2all
  attacks have no single target: flagged suffices);
- a clean model is *correct* when not flagged;
- Bd. (attack row) = detected backdoored models out of N; Bd. (clean row) = flagged clean models
  out of N (false alarms);
- Acc. (attack row) = (detected backdoored + correct clean) / (backdoored + clean) over that
  attack's models and the clean models of the same architecture; Acc. (clean row) = correct
  clean / clean;
- a poisoned model counts as backdoored only when its ASR (source-specific attacks: on the
  victim class) reaches the spec's `min_asr` (0.8); a weaker one is "not implanted" and is
  counted neither as backdoored nor as clean: the report lists it apart (`not_implanted`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ban.attacks.implant import implanted

FPR_BUDGET = 0.05


def not_implanted(models: Iterable[dict[str, Any]], min_asr: float) -> set[str]:
    """Ids of the poisoned models whose ASR stays below `min_asr` (or was never measured)."""
    return {m["id"] for m in models if m["backdoored"] and not implanted(m.get("asr"), min_asr)}


def is_correct(result: dict[str, Any]) -> bool:
    """Whether a detection result is right about its model (see the module docstring)."""
    model, verdict = result["model"], result["verdict"]
    if not model["backdoored"]:
        return not verdict["backdoored"]
    if not verdict["backdoored"]:
        return False
    if model.get("mode") == "all2all" or model.get("target") is None:
        return True
    return verdict["target"] == model["target"]


@dataclass
class Count:
    """k of n (a table cell like 3/5)."""

    k: int
    n: int

    def __str__(self) -> str:
        return f"{self.k}/{self.n}" if self.n else "-"

    @property
    def rate(self) -> float:
        return self.k / self.n if self.n else float("nan")


def bd_and_acc(results: list[dict[str, Any]], group: str, clean_group: str) -> tuple[Count, Count]:
    """(Bd., Acc.) for one row `group` of one detector x architecture (see the module docstring)."""
    rows = [r for r in results if r["model"]["group"] == group]
    if group == clean_group:
        flagged = sum(r["verdict"]["backdoored"] for r in rows)
        return Count(int(flagged), len(rows)), Count(sum(is_correct(r) for r in rows), len(rows))
    clean = [r for r in results if r["model"]["group"] == clean_group]
    bd = sum(is_correct(r) for r in rows)
    ok_clean = sum(is_correct(r) for r in clean)
    return Count(bd, len(rows)), Count(bd + ok_clean, len(rows) + len(clean))


def labels_and_scores(results: Iterable[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """(y, s): 1 for backdoored models, the detector's continuous score (higher = more suspicious)."""
    rows = list(results)
    y = np.array([int(r["model"]["backdoored"]) for r in rows], dtype=int)
    s = np.array([float(r["verdict"]["score"]) for r in rows], dtype=float)
    s = np.nan_to_num(s, nan=-np.inf)
    s = np.clip(s, -1e300, 1e300)
    return y, s


def tpr_at_fpr(y: np.ndarray, s: np.ndarray, fpr_budget: float = FPR_BUDGET) -> float:
    """The highest true-positive rate whose false-positive rate stays within `fpr_budget`, over the thresholds
    "score ≥ t" for every score t: every corner of the ROC curve (sklearn's `roc_curve` by default drops the
    corners that lie on a line between two others, and could miss the best one within the budget)."""
    pos, neg = np.sort(s[y == 1]), np.sort(s[y == 0])
    t = np.unique(s)
    tp = len(pos) - np.searchsorted(pos, t, "left")
    fp = len(neg) - np.searchsorted(neg, t, "left")
    ok = fp / len(neg) <= fpr_budget + 1e-12
    return float(tp[ok].max() / len(pos)) if ok.any() else 0.0


@dataclass
class Interval:
    """A point estimate with a bootstrap percentile confidence interval."""

    value: float
    low: float
    high: float

    def __str__(self) -> str:
        if np.isnan(self.value):
            return "-"
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


def bootstrap(
    y: np.ndarray, s: np.ndarray, stat: Any, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> Interval:
    """`stat(y, s)` with a percentile CI over `n_boot` resamples of the models (stratified by label)."""
    if len(set(y.tolist())) < 2:
        return Interval(float("nan"), float("nan"), float("nan"))
    value = float(stat(y, s))
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    stats = []
    for _ in range(n_boot):
        idx = np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
        stats.append(stat(y[idx], s[idx]))
    lo, hi = np.quantile(stats, [(1 - level) / 2, 1 - (1 - level) / 2]) if stats else (value, value)
    return Interval(value, float(lo), float(hi))


def auroc(y: np.ndarray, s: np.ndarray) -> float:
    """The area under the ROC curve: the chance that a positive scores above a negative, ties counting half
    (the Mann-Whitney statistic, which sklearn's roc_auc_score computes as the curve's area)."""
    pos, neg = s[y == 1], np.sort(s[y == 0])
    below = np.searchsorted(neg, pos, "left")
    ties = np.searchsorted(neg, pos, "right") - below
    return float((below.sum() + 0.5 * ties.sum()) / (len(pos) * len(neg)))


def detection_times(results: list[dict[str, Any]]) -> tuple[float, float]:
    """(mean, median) seconds of detection."""
    t = np.array([float(r["verdict"]["seconds"]) for r in results])
    return (float(t.mean()), float(np.median(t))) if len(t) else (float("nan"), float("nan"))


def mean_std(values: Iterable[float | None]) -> str:
    """`mean±std` of the values that exist, '-' when none."""
    v = np.array([float(x) for x in values if x is not None and not np.isnan(float(x))])
    if not len(v):
        return "-"
    return f"{v.mean():.3f}±{v.std():.3f}" if len(v) > 1 else f"{v.mean():.3f}"
