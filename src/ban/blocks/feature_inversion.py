"""Pieces FeatureRE and Unicorn share: per-target data, feature statistics, the mixed-value rule.

Both invert, for every candidate target t, a trigger whose features (i) reach t through a feature
mask m (F' = m⊙F + (1−m)⊙F_benign), (ii) lie on a hyperplane (near-constant on the masked
neurons) and (iii) differ from class t's benign features. A good inversion reaches ASR ≈ 1 with
a low cosine to t's mean feature, so its mixed value is ≈ −1; FeatureRE flags a model when the
minimum over targets is below −0.75.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ban.blocks.trigger_search import EPS
from ban.models import get_split
from ban.utils import batches


def _input_statistic(model: nn.Module, name: str, channels: int, device: torch.device, default: float) -> Tensor:
    """The model's declared per-channel input `name` ("mean" or "std") as 1×C×1×1, else `default` everywhere."""
    value = getattr(getattr(model, "normalize", None), name, None)
    if isinstance(value, Tensor) and value.numel() == channels:
        return value.detach().view(1, channels, 1, 1).to(device)
    return torch.full((1, channels, 1, 1), default, device=device)


def input_std(model: nn.Module, channels: int, device: torch.device) -> Tensor:
    """The model's per-channel input std (1×C×1×1) when it declares its normalisation, else ones.

    Input distances (FeatureRE's MSE bound 0.15, BTI-DBF's 0.3) were set in normalised space, so
    ban measures them there: mse((a − b) / std).
    """
    return _input_statistic(model, "std", channels, device, 1.0)


def input_mean(model: nn.Module, channels: int, device: torch.device) -> Tensor:
    """The model's per-channel input mean (1×C×1×1) when it declares its normalisation, else zeros."""
    return _input_statistic(model, "mean", channels, device, 0.0)


@dataclass
class TargetData:
    """Clean images with, per target, the pool of images of other classes.

    features: g(x) of every image (N×Cf×Hf×Wf, benign references); class_means: (K, Cf·Hf·Wf).
    """

    x: Tensor
    y: Tensor
    features: Tensor
    class_means: Tensor
    num_classes: int

    @classmethod
    @torch.no_grad()
    def build(cls, model: nn.Module, x: Tensor, y: Tensor, num_classes: int, batch_size: int = 256) -> TargetData:
        split = get_split(model)
        feats = torch.cat([split.features(x[sl]) for sl in batches(len(x), batch_size)])
        flat = feats.flatten(1)
        means = torch.zeros(num_classes, flat.shape[1], device=x.device)
        for c in range(num_classes):
            if (y == c).any():
                means[c] = flat[y == c].mean(0)
        return cls(x, y, feats, means, num_classes)

    def epoch_batches(self, targets: list[int], batch_size: int, generator: torch.Generator) -> list[Tensor]:
        """One epoch of index batches (k×b): row i holds images not of class targets[i], shuffled."""
        pools = [torch.nonzero(self.y.cpu() != t).flatten() for t in targets]
        length = min(len(p) for p in pools)
        rows = torch.stack([p[torch.randperm(len(p), generator=generator)[:length]] for p in pools])
        return [rows[:, sl].to(self.x.device) for sl in batches(length, batch_size)]

    def benign_features(self, shape: tuple[int, int], generator: torch.Generator) -> Tensor:
        """Random rows of the benign features, shaped (k, b, Cf, Hf, Wf)."""
        idx = torch.randint(0, len(self.features), shape, generator=generator).to(self.features.device)
        return self.features[idx]


def mix_features(masks: Tensor, feats: Tensor, benign: Tensor) -> Tensor:
    """F' = m⊙F + (1−m)⊙F_benign: masks (k×Cf×Hf×Wf), feats and benign (k×b×Cf×Hf×Wf)."""
    return masks[:, None] * feats + (1 - masks[:, None]) * benign


def cosine_to_target(feats: Tensor, class_means: Tensor, targets: Tensor) -> Tensor:
    """cos(μ_t, mean over the batch of F) per target: feats (k×b×...), → (k,)."""
    return F.cosine_similarity(feats.flatten(2).mean(1), class_means[targets], dim=1)


def hyperplane_std(feats: Tensor, masks: Tensor) -> Tensor:
    """Σ std over the batch of (F⊙m) / ‖m‖₁ per target: feats (k×b×...), masks (k×...) → (k,)."""
    masked = feats * masks[:, None]
    std = masked.std(dim=1, unbiased=masked.shape[1] > 1)
    return std.flatten(1).sum(1) / masks.flatten(1).sum(1).clamp_min(EPS)


def per_target_ce(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """(CE, attack success) per target for logits (k×b×K)."""
    k, b, _ = logits.shape
    tb = targets[:, None].expand(k, b)
    ce = F.cross_entropy(logits.flatten(0, 1), tb.flatten(), reduction="none").view(k, b).mean(1)
    return ce, (logits.argmax(-1) == tb).float().mean(1)


def over(value: Tensor, bound: float) -> Tensor:
    """Relative violation max(v − bound, 0) / bound."""
    return (value - bound).clamp_min(0) / bound


def mixed_value(
    dist: Tensor,
    asr: Tensor,
    p: Tensor,
    p_bound: float,
    mask_l1: Tensor,
    mask_bound: Tensor | float,
    std: Tensor,
    std_bound: float,
) -> Tensor:
    """FeatureRE's score per target: dist − ASR + over(p) + over(‖m‖₁) + over(std) (lower = more trojan-like)."""
    return dist - asr + over(p, p_bound) + over(mask_l1, mask_bound) + over(std, std_bound)  # type: ignore[arg-type]


def tanh_parameter(shape: tuple[int, ...], value: float, device: torch.device) -> nn.Parameter:
    """A tanh-space parameter filled with `value` (the official codes' ones/zeros init)."""
    return nn.Parameter(torch.full(shape, float(value), device=device))


#: the inversion of a group of targets: targets -> (min mixed value per target, its stats, figure images (k×…))
GroupInversion = Callable[[list[int]], tuple[list[float], list[dict[str, float]], dict[str, Tensor]]]


def invert_every_target(
    num_classes: int, batched: bool, invert: GroupInversion
) -> tuple[list[float], list[dict[str, float]], dict[str, Tensor]]:
    """Run `invert` on all K targets at once (`batched`) or one target at a time; returns the min mixed
    value and stats of every target and each figure's images of all targets (K×…, on the CPU)."""
    groups = [list(range(num_classes))] if batched else [[t] for t in range(num_classes)]
    values: list[float] = [0.0] * num_classes
    stats: list[dict[str, float]] = [{} for _ in range(num_classes)]
    shown: dict[str, list[Tensor]] = {}
    for targets in groups:
        best, best_stats, images = invert(targets)
        for i, t in enumerate(targets):
            values[t], stats[t] = best[i], best_stats[i]
        for key, value in images.items():
            shown.setdefault(key, []).append(value)
    return values, stats, {key: torch.cat(v).cpu() for key, v in shown.items()}


def lowest_mixed_value(values: list[float], threshold: float) -> tuple[bool, int | None, float]:
    """FeatureRE's decision: (flagged: the minimum mixed value < `threshold`, target: its class when
    flagged, score: −minimum, so that higher is more suspicious)."""
    low = min(range(len(values)), key=values.__getitem__)
    flagged = values[low] < threshold
    return flagged, low if flagged else None, -values[low]


def keep_best(best: Tensor, best_stats: list[dict[str, float]], value: Tensor, stats: dict[str, Tensor]) -> Tensor:
    """Per target where this epoch's mixed `value` beats `best`: keep the epoch's `stats` (one float per
    target each) in `best_stats`; returns the new best values."""
    better = value < best
    for i in torch.nonzero(better).flatten().tolist():
        best_stats[i] = {key: float(v[i]) for key, v in stats.items()}
    return torch.where(better, value, best)


def violation_weights(
    p: Tensor, p_bound: float, asr: Tensor, asr_bound: float, std: Tensor, std_bound: float
) -> tuple[Tensor, Tensor, Tensor]:
    """The next epoch's loss weights (w_p, w_acc, w_std): relative violations of the input-distance bound,
    the attack-success bound (from below) and the hyperplane-std bound."""
    return F.relu(p - p_bound) / p_bound, F.relu(asr_bound - asr) / asr_bound, F.relu(std - std_bound) / std_bound


class Lowest:
    """Per target (k of them): the lowest mixed value of the epochs so far (`value`) with its stats (`stats`),
    and the next epoch's loss weights (`w_p`, `w_acc`, `w_std`: the last epoch's bound violations, 1 at first).
    A `Stateful` part of a loop's snapshot."""

    NAMES = ("value", "w_p", "w_acc", "w_std")  # its tensors

    def __init__(self, k: int, device: torch.device) -> None:
        self.value = torch.full((k,), float("inf"), device=device)
        self.stats: list[dict[str, float]] = [{} for _ in range(k)]
        self.w_p, self.w_acc, self.w_std = (torch.ones(k, device=device) for _ in range(3))

    def update(self, value: Tensor, stats: dict[str, Tensor], weights: tuple[Tensor, Tensor, Tensor]) -> None:
        """After an epoch: keep its mixed `value` and `stats` where they beat the lowest, and its `weights`
        (from `violation_weights`) for the next epoch."""
        self.value = keep_best(self.value, self.stats, value, stats)
        self.w_p, self.w_acc, self.w_std = weights

    def state_dict(self) -> dict[str, Any]:
        return {"stats": [dict(s) for s in self.stats], **{n: getattr(self, n) for n in self.NAMES}}

    def load_state_dict(self, state: dict[str, Any], /) -> None:
        device = self.value.device
        self.stats = [dict(s) for s in state["stats"]]
        for name in self.NAMES:
            setattr(self, name, state[name].to(device))
