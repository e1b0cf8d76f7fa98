"""Trigger application shared by the patch and blend attacks: x' = (1−M)⊙x + M⊙((1−α)x + α·P)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def blend_trigger(x: Tensor, pattern: Tensor, mask: Tensor, alpha: float = 1.0) -> Tensor:
    """Stamp `pattern` onto `x` where `mask` is 1, blended with strength `alpha`.

    x: (N, C, H, W) in [0, 1]; pattern and mask broadcast to x (e.g. (1|C, H, W)).
    """
    pattern = pattern.to(x.device, x.dtype)
    mask = mask.to(x.device, x.dtype)
    blended = (1 - alpha) * x + alpha * pattern
    return ((1 - mask) * x + mask * blended).clamp(0, 1)


def resize_pattern(pattern: Tensor, image_shape: tuple[int, int, int]) -> Tensor:
    """Fit a (C', H', W') pattern in [0, 1] to (C, H, W): bilinear resize, grey↔colour conversion."""
    c, h, w = image_shape
    p = pattern.float()
    if p.ndim == 2:
        p = p[None]
    if p.shape[1:] != (h, w):
        p = F.interpolate(p[None], size=(h, w), mode="bilinear", align_corners=False)[0]
    if p.shape[0] != c:
        if c == 1:
            p = p.mean(0, keepdim=True)
        elif p.shape[0] == 1:
            p = p.expand(c, h, w)
        else:
            p = p[:c]
    return p.clamp(0, 1).contiguous()


def checkerboard_patch(image_shape: tuple[int, int, int], size: int = 3) -> tuple[Tensor, Tensor]:
    """The BAN/ANP 'checkerboard_1corner' trigger: a size×size checkerboard in the bottom-right corner.

    Returns (pattern, mask), each (C, H, W). For size 3 the rows are [0,0,1], [0,1,0], [1,0,1].
    """
    c, h, w = image_shape
    size = min(size, h, w)
    pattern = torch.zeros(c, h, w)
    mask = torch.zeros(c, h, w)
    base = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 1.0]])
    if size != 3:
        ii, jj = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        base = ((ii + jj + 1) % 2).float()
    pattern[:, h - size :, w - size :] = base
    mask[:, h - size :, w - size :] = 1.0
    return pattern, mask
