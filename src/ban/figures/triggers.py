"""Recovered triggers as PNG image grids: a baseline verdict's `artifacts["triggers"]`, one grid per figure."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ban.detectors.base import Verdict
from ban.errors import BanError
from ban.utils import atomic_path


def image_grid(images: Tensor, ncol: int | None = None, pad: int = 2, scale: int = 4) -> Image.Image:
    """One PIL image tiling `images` (N×C×H×W, values in [0, 1], C = 1 or 3), upscaled `scale`×."""
    x = images.detach().float().cpu().clamp(0, 1)
    if x.ndim == 3:
        x = x[:, None]
    n, c, h, w = x.shape
    if c not in (1, 3):
        x = x[:, :1]
        c = 1
    ncol = ncol or min(n, 10)
    nrow = math.ceil(n / ncol)
    grid = torch.ones(c, nrow * (h + pad) + pad, ncol * (w + pad) + pad)
    for i in range(n):
        r, col = divmod(i, ncol)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[:, top : top + h, left : left + w] = x[i]
    arr = (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    img = Image.fromarray(arr[:, :, 0] if c == 1 else arr, mode="L" if c == 1 else "RGB")
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST)


def save_image_grid(images: Tensor, path: str | Path, ncol: int | None = None) -> None:
    """Write `images` (N×C×H×W in [0, 1]) as one PNG grid at `path`, atomically."""
    with atomic_path(path) as tmp:
        image_grid(images, ncol).save(tmp, format="PNG")


def save_trigger_figures(verdict: Verdict, directory: str | Path) -> list[Path]:
    """Write the verdict's recovered triggers as `<detector>_<figure>.png` in `directory`; returns the paths."""
    triggers = verdict.artifacts.get("triggers")
    if not triggers:
        raise BanError(
            f"this '{verdict.detector}' verdict carries no recovered triggers (BAN's, or read back from JSON); rescan"
        )
    out = []
    for key, images in triggers.items():
        path = Path(directory) / f"{verdict.detector}_{key}.png"
        save_image_grid(images, path)
        out.append(path)
    return out
