"""A small UNet (FeatureRE, Unicorn, BTI-DBF), optionally as G independent copies in one module.

With `groups=G`, every convolution is a grouped convolution and every BatchNorm is per channel,
so the module is exactly G independent UNets: input (B, G·C_in, H, W) → output (B, G·C_out, H, W),
group g reading channels [g·C_in, (g+1)·C_in). This is how per-class detectors train all K
classes' networks in one pass. Outputs are images in [0, 1]: sigmoid(out), or with
`residual=True` clamp(x + out) with `out` zero-initialised (the exact identity at the start);
`linear=True` returns `out` itself, unbounded (BTI-DBF's UNet, which maps normalised images to
normalised images).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _double_conv(c_in: int, c_out: int, groups: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(groups * c_in, groups * c_out, 3, padding=1, groups=groups, bias=False),
        nn.BatchNorm2d(groups * c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(groups * c_out, groups * c_out, 3, padding=1, groups=groups, bias=False),
        nn.BatchNorm2d(groups * c_out),
        nn.ReLU(inplace=True),
    )


def group_cat(a: Tensor, b: Tensor, groups: int) -> Tensor:
    """Concatenate channels group by group: (B, G·c1, H, W) + (B, G·c2, H, W) → (B, G·(c1+c2), H, W)."""
    n, _, h, w = a.shape
    return torch.cat([a.view(n, groups, -1, h, w), b.view(n, groups, -1, h, w)], dim=2).view(n, -1, h, w)


class UNet(nn.Module):
    """Encoder–decoder with skip connections: `num_blocks` stages of `base_filters`·2^i channels.

    Any H×W works (decoder stages are resized to their skip connection's size).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        base_filters: int = 32,
        num_blocks: int = 4,
        groups: int = 1,
        residual: bool = False,
        linear: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.base_filters, self.num_blocks, self.groups = base_filters, num_blocks, groups
        if residual and in_channels != out_channels:
            raise ValueError("a residual UNet needs as many output channels as input channels")
        if residual and linear:
            raise ValueError("a UNet is either residual or linear, not both")
        self.residual, self.linear = residual, linear
        widths = [base_filters * 2**i for i in range(num_blocks)]
        self.down = nn.ModuleList()
        c = in_channels
        for wd in widths:
            self.down.append(_double_conv(c, wd, groups))
            c = wd
        self.up = nn.ModuleList(
            _double_conv(widths[i + 1] + widths[i], widths[i], groups) for i in range(num_blocks - 1)
        )
        self.out = nn.Conv2d(groups * widths[0], groups * out_channels, 1, groups=groups)
        if residual:  # start as the exact identity
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        inputs = x
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = F.max_pool2d(x, 2) if min(x.shape[-2:]) >= 2 else x
            x = block(x)
            skips.append(x)
        for i in reversed(range(self.num_blocks - 1)):
            skip = skips[i]
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = self.up[i](group_cat(x, skip, self.groups))
        if self.residual:
            return (inputs + self.out(x)).clamp(0, 1)
        if self.linear:
            return self.out(x)
        return torch.sigmoid(self.out(x))

    def replicate(self, groups: int) -> UNet:
        """G copies of this (single) UNet as one grouped module, each starting from these weights."""
        if self.groups != 1:
            raise ValueError("only a single UNet (groups=1) can be replicated")
        shape = (self.in_channels, self.out_channels, self.base_filters, self.num_blocks, groups)
        with torch.device("meta"):  # no initial weights drawn: every tensor is copied from this UNet below
            net = UNet(*shape, self.residual, self.linear)
        net.to_empty(device=next(self.parameters()).device)
        src = dict(self.state_dict())
        dst = net.state_dict()
        for key, value in src.items():
            dst[key] = value.clone() if value.ndim == 0 else value.repeat(groups, *[1] * (value.ndim - 1))
        net.load_state_dict(dst)
        net.train(self.training)
        return net

    def copy(self) -> UNet:
        return copy.deepcopy(self)


def grouped_input(x: Tensor) -> Tensor:
    """Per-group image batches (G, B, C, H, W) → one grouped UNet input (B, G·C, H, W)."""
    g, b, c, h, w = x.shape
    return x.permute(1, 0, 2, 3, 4).reshape(b, g * c, h, w)


def grouped_output(y: Tensor, groups: int) -> Tensor:
    """A grouped UNet output (B, G·C, H, W) → per-group image batches (G, B, C, H, W)."""
    b, gc, h, w = y.shape
    return y.view(b, groups, gc // groups, h, w).permute(1, 0, 2, 3, 4)
