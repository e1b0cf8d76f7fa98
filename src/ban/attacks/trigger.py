"""Trigger pieces shared by the attacks: blending x' = (1−M)⊙x + M⊙((1−α)x + α·P), patterns and pictures."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from ban.errors import BanError


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
        else:
            p = p.repeat(-(-c // p.shape[0]), 1, 1)[:c]
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


def noise_pattern(image_shape: tuple[int, int, int], seed: int = 0, std: float = 0.5) -> Tensor:
    """A fixed Gaussian noise image N(0.5, std²) clipped to [0, 1] (BAN/ANP's 'gaussian_noise' trigger style).

    Drawn from its own generator, so the same `seed` and shape always give the same image.
    """
    g = torch.Generator().manual_seed(int(seed))
    return (0.5 + std * torch.randn(image_shape, generator=g)).clamp(0, 1)


def structured_pattern(image_shape: tuple[int, int, int]) -> Tensor:
    """A deterministic structured colour picture (concentric rings crossed by diagonal stripes).

    Stands in for Adap-Blend's hellokitty_32.png, which ban cannot ship. It is defined on
    normalised coordinates, so it rasterises at any size; grey images get the channel mean.
    """
    c, h, w = image_shape
    v = torch.linspace(0, 1, h)[:, None].expand(h, w)
    u = torch.linspace(0, 1, w)[None, :].expand(h, w)
    r = torch.sqrt((u - 0.45) ** 2 + (v - 0.4) ** 2)
    stripes = torch.sin(2 * math.pi * 3 * (u - v))
    rings = [torch.cos(2 * math.pi * 5 * r + k * math.pi / 3) for k in (-1, 0, 1)]
    rgb = torch.stack([0.5 + 0.28 * ring + 0.22 * stripes for ring in rings])
    return resize_pattern(rgb.clamp(0, 1), image_shape)


def load_image_pattern(path: str | Path, image_shape: tuple[int, int, int]) -> Tensor:
    """A picture file read with Pillow as a (C, H, W) pattern in [0, 1], resized to `image_shape`."""
    p = Path(path)
    if not p.is_file():
        raise BanError(f"trigger image {p} not found; pass an existing picture file (PNG, JPEG, ...)")
    c = image_shape[0]
    try:
        with Image.open(p) as im:
            arr = np.asarray(im.convert("RGB" if c == 3 else "L"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise BanError(f"cannot read trigger image {p} ({exc}); pass a PNG or JPEG picture") from exc
    t = torch.from_numpy(arr)
    t = t.permute(2, 0, 1) if t.ndim == 3 else t[None]
    return resize_pattern(t, image_shape)
