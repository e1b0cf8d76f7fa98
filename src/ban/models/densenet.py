"""DenseNet121 (growth 32, blocks 6-12-24-16, compression 0.5) with a CIFAR-style stem.

The head holds the final BatchNorm: relu(bn(f)) → pool → linear, as in the paper's code.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ban.models.base import SplitModel


class Bottleneck(nn.Module):
    def __init__(self, in_planes: int, growth: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, 4 * growth, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth)
        self.conv2 = nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return torch.cat([out, x], 1)


class Transition(nn.Module):
    def __init__(self, in_planes: int, out_planes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(in_planes)
        self.conv = nn.Conv2d(in_planes, out_planes, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(self.conv(F.relu(self.bn(x))), 2)


class DenseNet(SplitModel):
    blocks: ClassVar[tuple[int, ...]] = (6, 12, 24, 16)  # DenseNet121
    growth: ClassVar[int] = 32
    reduction: ClassVar[float] = 0.5

    def build(self, num_classes: int, in_channels: int, width: float) -> None:
        blocks, growth, reduction = self.blocks, self.growth, self.reduction
        g = max(2, int(round(growth * width)))
        planes = 2 * g
        self.conv1 = nn.Conv2d(in_channels, planes, 3, padding=1, bias=False)
        stages: list[nn.Module] = []
        for i, n in enumerate(blocks):
            layers = []
            for _ in range(n):
                layers.append(Bottleneck(planes, g))
                planes += g
            stages.append(nn.Sequential(*layers))
            if i < len(blocks) - 1:
                out = int(math.floor(planes * reduction))
                stages.append(Transition(planes, out))
                planes = out
        self.dense1, self.trans1, self.dense2, self.trans2, self.dense3, self.trans3, self.dense4 = stages
        self.bn = nn.BatchNorm2d(planes)
        self.linear = nn.Linear(planes, num_classes)

    def features(self, x: Tensor) -> Tensor:
        out = self.conv1(self.normalize(x))
        out = self.trans1(self.dense1(out))
        out = self.trans2(self.dense2(out))
        out = self.trans3(self.dense3(out))
        return self.dense4(out)

    def head(self, f: Tensor) -> Tensor:
        out = F.relu(self.bn(f))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


def densenet121(**kwargs: object) -> DenseNet:
    return DenseNet(**kwargs)  # type: ignore[arg-type]
