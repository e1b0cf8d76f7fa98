"""A small CNN with BatchNorm: four 3×3 convolutions in two stages, for fast CPU experiments."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ban.models.base import SplitModel, scaled


def _conv_bn(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class SmallCNN(SplitModel):
    def build(self, num_classes: int, in_channels: int, width: float) -> None:
        c1, c2 = scaled(32, width), scaled(64, width)
        self.stage1 = nn.Sequential(*_conv_bn(in_channels, c1), *_conv_bn(c1, c1), nn.MaxPool2d(2))
        self.stage2 = nn.Sequential(*_conv_bn(c1, c2), *_conv_bn(c2, c2), nn.MaxPool2d(2))
        self.linear = nn.Linear(c2, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.stage2(self.stage1(self.normalize(x)))

    def head(self, f: Tensor) -> Tensor:
        return self.linear(F.adaptive_avg_pool2d(f, 1).flatten(1))
