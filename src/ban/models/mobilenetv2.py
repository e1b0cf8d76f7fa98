"""MobileNetV2 (Sandler et al. 2018) with a CIFAR-style stem (stride 1 first conv and stage 2)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ban.models.base import SplitModel, scaled

# (expansion, out_planes, num_blocks, stride)
CFG = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


class InvertedResidual(nn.Module):
    def __init__(self, in_planes: int, out_planes: int, expansion: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        planes = expansion * in_planes
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, groups=planes, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut = nn.Sequential()
        if stride == 1 and in_planes != out_planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, out_planes, 1, bias=False), nn.BatchNorm2d(out_planes))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return out + self.shortcut(x) if self.stride == 1 else out


class MobileNetV2(SplitModel):
    def build(self, num_classes: int, in_channels: int, width: float) -> None:
        c = scaled(32, width)
        self.conv1 = nn.Conv2d(in_channels, c, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        layers = []
        for expansion, out, n, stride in CFG:
            out = scaled(out, width)
            for s in [stride] + [1] * (n - 1):
                layers.append(InvertedResidual(c, out, expansion, s))
                c = out
        self.layers = nn.Sequential(*layers)
        last = scaled(1280, width)
        self.conv2 = nn.Conv2d(c, last, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(last)
        self.linear = nn.Linear(last, num_classes)

    def features(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(self.normalize(x))))
        return F.relu(self.bn2(self.conv2(self.layers(out))))

    def head(self, f: Tensor) -> Tensor:
        return self.linear(F.adaptive_avg_pool2d(f, 1).flatten(1))
