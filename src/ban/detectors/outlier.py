"""Neural Cleanse's outlier rule: the MAD anomaly index of per-class trigger norms."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MAD_CONSISTENCY = 1.4826  # makes the MAD a consistent estimator of a normal distribution's std


@dataclass
class MadResult:
    """anomaly_index: |L_t − median| / MAD per class; flagged: small-norm classes above the threshold,
    sorted by norm; score: anomaly index of the smallest norm (the detection statistic)."""

    anomaly_index: list[float]
    flagged: list[int]
    score: float
    median: float
    mad: float


def mad_anomaly_index(values: Sequence[float]) -> tuple[np.ndarray, float, float]:
    """(|v − median| / (1.4826·median|v − median|), median, MAD); a zero MAD is floored at 1e-12."""
    v = np.asarray(values, dtype=np.float64)
    med = float(np.median(v))
    mad = MAD_CONSISTENCY * float(np.median(np.abs(v - med)))
    mad = max(mad, 1e-12)
    return np.abs(v - med) / mad, med, mad


def small_norm_outliers(norms: Sequence[float], threshold: float = 2.0) -> MadResult:
    """NC's decision: classes whose norm lies below the median with anomaly index > `threshold`.

    The model is backdoored iff `flagged` is non-empty; its target is `flagged[0]` (smallest norm).
    """
    if len(norms) < 2:
        raise ValueError("the MAD rule needs at least two classes")
    v = np.asarray(norms, dtype=np.float64)
    index, med, mad = mad_anomaly_index(v)
    low = (v < med) & (index > threshold)
    flagged = [int(i) for i in np.argsort(v, kind="stable") if low[i]]
    score = float((med - v.min()) / mad)
    return MadResult([float(a) for a in index], flagged, score, med, mad)
