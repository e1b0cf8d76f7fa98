"""Tensor augmentation: random crop with padding and horizontal flip, batched and seeded."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


class Augment:
    """Random crop (zero padding `pad`) and, when `flip`, horizontal flip with probability 0.5."""

    def __init__(self, pad: int = 4, flip: bool = True) -> None:
        self.pad = pad
        self.flip = flip

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        n, _, h, w = x.shape
        dev = x.device
        if self.pad > 0:
            padded = F.pad(x, (self.pad,) * 4)
            dy = torch.randint(0, 2 * self.pad + 1, (n,), generator=generator).to(dev)
            dx = torch.randint(0, 2 * self.pad + 1, (n,), generator=generator).to(dev)
            rows = dy[:, None] + torch.arange(h, device=dev)[None, :]  # n×h
            cols = dx[:, None] + torch.arange(w, device=dev)[None, :]  # n×w
            idx_n = torch.arange(n, device=dev)[:, None, None]
            x = padded.permute(0, 2, 3, 1)[idx_n, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
        if self.flip:
            mask = (torch.rand(n, generator=generator) < 0.5).to(dev)
            x = torch.where(mask[:, None, None, None], x.flip(3), x)
        return x.contiguous()

    def __repr__(self) -> str:
        return f"Augment(pad={self.pad}, flip={self.flip})"


def identity(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    return x
