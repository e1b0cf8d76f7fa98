"""The > 50% histogram rule (BAN issue #1), shared by BTI-DBF and BTI-DBF*.

Backdoored iff more than `threshold` of the predictions fall in one class; target = that class.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class HistogramDecision:
    """counts: predictions per class; fraction: share of the argmax class (the score)."""

    backdoored: bool
    target: int
    fraction: float
    counts: list[int]


def majority_rule(predictions: Tensor, num_classes: int, threshold: float = 0.5) -> HistogramDecision:
    """Apply the rule to predicted labels (N,): flagged when the argmax class holds > `threshold` of them."""
    counts = torch.bincount(predictions.flatten().long().cpu(), minlength=num_classes)
    total = max(1, int(counts.sum()))
    target = int(counts.argmax())
    fraction = float(counts[target]) / total
    return HistogramDecision(fraction > threshold, target, fraction, [int(c) for c in counts])
