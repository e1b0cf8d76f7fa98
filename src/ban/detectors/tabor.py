"""Tabor (Guo et al., 2019): Neural Cleanse's search with four extra regularisers on the trigger."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from ban.blocks.trigger_search import ExtraLoss
from ban.detectors.base import DetectorSettings
from ban.detectors.neural_cleanse import NeuralCleanse, NeuralCleanseSettings
from ban.errors import BanError

#: [mask R1, pattern R1, mask R2, pattern R2, R3, R4] (UsmannK/TABOR and TrojanZoo agree)
DEFAULT_WEIGHTS = (1e-6, 1e-5, 1e-7, 1e-8, 0.0, 1e-2)


def _l1_l2(v: Tensor) -> Tensor:
    """‖v‖₁ + ‖v‖₂² per target (first dim)."""
    return v.abs().sum(dim=(1, 2, 3)) + v.pow(2).sum(dim=(1, 2, 3))


def _smoothness(v: Tensor) -> Tensor:
    """Squared total variation per target: Σ(v[i+1,j]−v[i,j])² + Σ(v[i,j+1]−v[i,j])²."""
    dh = (v[..., 1:, :] - v[..., :-1, :]).pow(2).sum(dim=(1, 2, 3))
    dw = (v[..., :, 1:] - v[..., :, :-1]).pow(2).sum(dim=(1, 2, 3))
    return dh + dw


def tabor_regularisers(weights: Sequence[float]) -> ExtraLoss:
    """Tabor's R1 (overly large), R2 (scattered), R3 (blocking) and R4 (overlaying) terms, weighted."""
    w1m, w1p, w2m, w2p, w3, w4 = (float(v) for v in weights)

    def extra(model: nn.Module, x: Tensor, y: Tensor, masks: Tensor, patterns: Tensor, targets: Tensor) -> Tensor:
        k = len(targets)
        visible = (1 - masks) * patterns  # the pattern outside the mask (Tabor penalises it)
        loss = w1m * _l1_l2(masks) + w1p * _l1_l2(visible) + w2m * _smoothness(masks) + w2p * _smoothness(visible)
        if w3:
            blocked = ((1 - masks[:, None]) * x[None]).flatten(0, 1)
            ce = F.cross_entropy(model(blocked), y.repeat(k), reduction="none").view(k, -1).mean(1)
            loss = loss + w3 * ce
        if w4:
            loss = loss + w4 * F.cross_entropy(model(masks * patterns), targets, reduction="none")
        return loss

    return extra


@dataclass(frozen=True)
class TaborSettings(NeuralCleanseSettings):
    """Neural Cleanse's settings plus the six regulariser weights [λ1..λ6]."""

    weights: Sequence[float] = DEFAULT_WEIGHTS

    def validate(self) -> None:
        super().validate()
        if len(self.weights) != 6:
            raise BanError(f"Tabor needs six regulariser weights, got {len(self.weights)}")
        object.__setattr__(self, "weights", tuple(float(v) for v in self.weights))

    def record(self) -> dict[str, Any]:
        return {**super().record(), "weights": list(self.weights)}


class Tabor(NeuralCleanse):
    """Neural Cleanse's search plus Tabor's regularisers, decided by NC's MAD rule.

    loss_t = CE(f(x'), t) + cost·‖m‖₁ + λ1·(‖m‖₁+‖m‖₂²) + λ2·(‖(1−m)⊙p‖₁+‖(1−m)⊙p‖₂²)
             + λ3·TV²(m) + λ4·TV²((1−m)⊙p) + λ5·CE(f((1−m)⊙x), y) + λ6·CE(f(m⊙p), t),
    weights [λ1..λ6] = [1e-6, 1e-5, 1e-7, 1e-8, 0, 1e-2] (UsmannK/TABOR, TrojanZoo).
    Decision: the paper's trigger-quality metric could not be read, so — as TrojanZoo and the
    FeatureRE/Unicorn/BTI-DBF/BAN comparisons do — the model is flagged by NC's MAD rule on the
    mask L1 norms (anomaly index > `threshold`, default 2). Optimiser, data and cost schedule are NC's.
    Pixels are in [0, 1] here (the Keras port used [0, 255], so its pattern terms were larger).
    """

    name: ClassVar[str] = "tabor"
    Settings: ClassVar[type[DetectorSettings]] = TaborSettings
    config: TaborSettings

    def extra_loss(self) -> ExtraLoss | None:
        return tabor_regularisers(self.config.weights)
