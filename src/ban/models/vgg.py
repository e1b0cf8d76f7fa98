"""VGG16 with BatchNorm, CIFAR-style (one linear classifier on the 512-d pooled features).

Max-pools use ceil_mode so five halvings work at 28 px (28→14→7→4→2→1) as at 32 px.
"""

from __future__ import annotations

from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from ban.models.base import SplitModel, scaled

VGG16_CFG: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


class VGG(SplitModel):
    cfg: ClassVar[tuple[int | str, ...]] = tuple(VGG16_CFG)

    def build(self, num_classes: int, in_channels: int, width: float) -> None:
        cfg = self.cfg
        layers: list[nn.Module] = []
        c = in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            else:
                out = scaled(int(v), width)
                layers += [nn.Conv2d(c, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
                c = out
        self.layers = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.layers(self.normalize(x))

    def head(self, f: Tensor) -> Tensor:
        return self.classifier(F.adaptive_avg_pool2d(f, 1).flatten(1))


def vgg16_bn(**kwargs: object) -> VGG:
    return VGG(**kwargs)  # type: ignore[arg-type]
