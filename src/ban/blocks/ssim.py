"""Structural similarity (Wang et al. 2004) for image batches in [0, 1]: 11×11 Gaussian window, σ 1.5."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _window(size: int, sigma: float, channels: int, device: torch.device) -> Tensor:
    coords = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim(a: Tensor, b: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Mean SSIM per image of a, b (N×C×H×W in [0, 1]) → (N,); the window shrinks for tiny images."""
    c = a.shape[1]
    size = min(window, a.shape[-1], a.shape[-2])
    size -= 1 - size % 2  # odd
    w = _window(size, sigma, c, a.device)
    pad = size // 2
    mu_a = F.conv2d(a, w, padding=pad, groups=c)
    mu_b = F.conv2d(b, w, padding=pad, groups=c)
    var_a = F.conv2d(a * a, w, padding=pad, groups=c) - mu_a**2
    var_b = F.conv2d(b * b, w, padding=pad, groups=c) - mu_b**2
    cov = F.conv2d(a * b, w, padding=pad, groups=c) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.flatten(1).mean(1)
