"""What every ban model has: a normalisation first layer and a `features | head` split."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def scaled(channels: int, width: float) -> int:
    """Channel count `channels` scaled by the width multiplier (at least 4)."""
    return max(4, int(round(channels * width)))


class Normalize(nn.Module):
    """(x - mean) / std per channel. Saved with the model, so inputs stay in pixel space [0, 1]."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class SplitModel(nn.Module):
    """A classifier declared as `head(features(x))`.

    `features` ends at the output of the last convolutional stage (before pooling);
    `head` is pooling plus the final linear layer (method.md, "Split").
    Every architecture takes the same settings (classes, input channels, width multiplier, the
    normalisation's mean and std); this constructor makes the normalisation layer first and then
    calls the architecture's `build`, which makes its layers. An architecture's fixed structure
    (block counts, VGG's configuration) is a class attribute.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        width: float = 1.0,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        mean = list(mean) if mean is not None else [0.0] * in_channels
        std = list(std) if std is not None else [1.0] * in_channels
        if len(mean) != in_channels or len(std) != in_channels:
            raise ValueError(f"normalisation has {len(mean)} channels, model expects {in_channels}")
        self.normalize = Normalize(mean, std)
        self.build(num_classes, in_channels, width)

    def build(self, num_classes: int, in_channels: int, width: float) -> None:
        """Make the architecture's layers (after the normalisation layer)."""
        raise NotImplementedError

    def features(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def head(self, f: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
