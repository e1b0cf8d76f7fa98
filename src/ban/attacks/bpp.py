"""BppAttack (Wang, Zhai & Ma, CVPR 2022): colour-depth squeezing, trained per batch with negative samples."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from ban.attacks.base import PerBatchAttack
from ban.errors import BanError


def squeeze(x: Tensor, levels: int) -> Tensor:
    """Round every value in [0, 1] to the nearest of `levels` evenly spaced levels."""
    return (torch.round(x * (levels - 1)) / (levels - 1)).clamp(0, 1)


def floyd_steinberg(x: Tensor, levels: int) -> Tensor:
    """Quantise `x` (N, C, H, W) to `levels` levels with Floyd–Steinberg error diffusion.

    Raster order: each pixel's error goes 7/16 right, 3/16 down-left, 5/16 down, 1/16
    down-right. Pixel (i, j) depends only on pixels with a smaller 2i + j, so all pixels on one
    anti-diagonal wave t = 2i + j are processed at once (2H + W steps instead of H·W).
    """
    n, c, h, w = x.shape
    buf = torch.zeros(n, c, h + 1, w + 2, dtype=x.dtype, device=x.device)  # one spare row, a column each side
    buf[:, :, :h, 1 : w + 1] = x
    out = torch.empty_like(x)
    rows_all = torch.arange(h, device=x.device)
    for t in range(2 * (h - 1) + w):
        cols_all = t - 2 * rows_all
        ok = (cols_all >= 0) & (cols_all < w)
        i, j = rows_all[ok], cols_all[ok]
        value = buf[:, :, i, j + 1]
        q = squeeze(value, levels)
        err = value - q
        out[:, :, i, j] = q
        buf[:, :, i, j + 2] += err * (7 / 16)
        buf[:, :, i + 1, j] += err * (3 / 16)
        buf[:, :, i + 1, j + 1] += err * (5 / 16)
        buf[:, :, i + 1, j + 2] += err * (1 / 16)
    return out


class Bpp(PerBatchAttack):
    """Squeeze each channel to `squeeze_num` levels (optionally with Floyd–Steinberg dithering); label → target.

    Per batch: `poison_rate` (0.2) backdoor samples, `neg_rate` (0.2) negative samples that get
    the quantisation residual T(x') − x' of ANOTHER image x' added (clamped) and keep their true
    label, the rest clean. So the model must learn the exact quantisation, not any colour noise.
    Defaults squeeze_num=8, dithering off (the official config; BAN uses 8).

    Difference from the official code: the residual comes from another image of the same batch
    rather than from a pool precomputed over 5 augmented passes of the training set (the same
    distribution without augmentation, and no pool to hold in memory).

    Preset `cpu` (a few epochs on grey images, docs/attacks.md): squeeze_num=3 (one grey channel
    carries the residual instead of three colour ones; at most 1/4 per pixel instead of 1/14; with
    4 levels two of six seeded models stayed under ASR 0.9), poison_rate=0.05 (0.2 cost 2.6 points
    of BA at 4 levels, 0.1 one ResNet18 2.2 points at 3; 0.05 kept all six seeded models within 1.5
    points at ASR >= 0.939) and neg_rate=0.1 (BackdoorBench's default).
    """

    name: ClassVar[str] = "bpp"
    default_poison_rate: ClassVar[float] = 0.2
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"cpu": {"squeeze_num": 3, "poison_rate": 0.05, "neg_rate": 0.1}}

    def __init__(self, squeeze_num: int = 8, dithering: bool = False, neg_rate: float = 0.2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 2 <= int(squeeze_num) <= 256:
            raise BanError(f"squeeze_num (colour levels per channel) must lie in 2..256, got {squeeze_num}")
        if not 0.0 <= float(neg_rate) < 1.0 or float(neg_rate) + self.poison_rate > 1.0:
            raise BanError(f"neg_rate must lie in [0, 1) with poison_rate + neg_rate ≤ 1, got {neg_rate}")
        self.squeeze_num = int(squeeze_num)
        self.dithering = bool(dithering)
        self.neg_rate = float(neg_rate)

    def params(self) -> dict[str, Any]:
        extra = {"squeeze_num": self.squeeze_num, "dithering": self.dithering, "neg_rate": self.neg_rate}
        return {**super().params(), **extra}

    def apply_trigger(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if self.dithering:
            return floyd_steinberg(x, self.squeeze_num)
        return squeeze(x, self.squeeze_num)

    def num_extra(self, n: int, n_bd: int) -> int:
        return int(n * self.neg_rate)

    def extra_images(self, x: Tensor, partner: Tensor, generator: torch.Generator) -> Tensor:
        """Negative samples: x plus another image's quantisation residual."""
        return (x + self.apply_trigger(partner) - partner).clamp(0, 1)
