"""WaNet (Nguyen & Tran, ICLR 2021): an imperceptible fixed warp, trained per batch with a noise mode."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ban.attacks.base import PerBatchAttack
from ban.errors import BanError


class WaNet(PerBatchAttack):
    """Warp images with a fixed smooth random field; label → target.

    Field: U(−1, 1) control points on a k×k grid, scaled to mean |·| = 1, bicubically upsampled
    to H×W; grid = clamp((identity + s·field/size)·grid_rescale, −1, 1), applied with
    `grid_sample` (align_corners=True). Per batch: `poison_rate` (0.1) backdoor samples, then
    `cross_ratio`·that many (0.2 of the batch) "noise mode" samples warped with the field plus
    U(−1, 1)/size jitter that keep their true label, the rest clean. Defaults k=4, s=0.5,
    grid_rescale=1, cross_ratio=2 (the official config). The field is drawn from
    `trigger_seed`, so the same seed gives the same warp.

    Preset `cpu` (a few epochs on 28-px grey images, docs/attacks.md): s=1 (the paper's s=0.5
    moves a 28-px image by a quarter pixel on average), cross_ratio=1 and poison_rate=0.15, so
    a batch is still 30 % warped and 70 % clean as in the paper, half of the warped ones backdoor.
    """

    name: ClassVar[str] = "wanet"
    default_poison_rate: ClassVar[float] = 0.1
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"cpu": {"s": 1.0, "cross_ratio": 1.0, "poison_rate": 0.15}}

    def __init__(
        self,
        k: int = 4,
        s: float = 0.5,
        grid_rescale: float = 1.0,
        cross_ratio: float = 2.0,
        trigger_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if int(k) < 1:
            raise BanError(f"WaNet's control grid size k must be at least 1, got {k}")
        if float(s) <= 0 or float(grid_rescale) <= 0:
            raise BanError(f"WaNet's warp strength s and grid_rescale must be positive, got {s} and {grid_rescale}")
        if float(cross_ratio) < 0:
            raise BanError(f"WaNet's cross ratio must be at least 0, got {cross_ratio}")
        self.k = int(k)
        self.s = float(s)
        self.grid_rescale = float(grid_rescale)
        self.cross_ratio = float(cross_ratio)
        self.trigger_seed = int(trigger_seed)

    def params(self) -> dict[str, Any]:
        return {
            **super().params(),
            "k": self.k,
            "s": self.s,
            "grid_rescale": self.grid_rescale,
            "cross_ratio": self.cross_ratio,
            "trigger_seed": self.trigger_seed,
        }

    def build(self, image_shape: tuple[int, int, int], generator: torch.Generator | None) -> None:
        _, h, w = image_shape
        if self.k > min(h, w):
            raise BanError(f"WaNet's k={self.k} exceeds the image size {h}×{w}; use a smaller k")
        g = torch.Generator().manual_seed(self.trigger_seed)
        ins = torch.rand(1, 2, self.k, self.k, generator=g) * 2 - 1
        ins = ins / ins.abs().mean()
        field = F.interpolate(ins, size=(h, w), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
        self.register_buffer("noise_grid", field.contiguous())
        rows, cols = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
        self.register_buffer("identity_grid", torch.stack((cols, rows), 2)[None], persistent=False)
        # grid_sample's last axis is (x, y): scale the field by width and height respectively
        self.register_buffer("grid_scale", torch.tensor([w, h], dtype=torch.float32), persistent=False)

    def grid(self) -> Tensor:
        """The (1, H, W, 2) sampling grid of the backdoor warp."""
        return ((self.identity_grid + self.s * self.noise_grid / self.grid_scale) * self.grid_rescale).clamp(-1, 1)

    def apply_trigger(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        grid = self.grid().to(x.device, x.dtype).expand(len(x), -1, -1, -1)
        return F.grid_sample(x, grid, align_corners=True).clamp(0, 1)

    def num_extra(self, n: int, n_bd: int) -> int:
        return int(n_bd * self.cross_ratio)

    def extra_images(self, x: Tensor, partner: Tensor, generator: torch.Generator) -> Tensor:
        """Noise mode: the warp plus per-image random jitter of up to one pixel; the label stays."""
        n, _, h, w = x.shape
        jitter = (torch.rand(n, h, w, 2, generator=generator) * 2 - 1).to(x.device, x.dtype)
        grid = (self.grid().to(x.device, x.dtype) + jitter / self.grid_scale.to(x.device, x.dtype)).clamp(-1, 1)
        return F.grid_sample(x, grid, align_corners=True).clamp(0, 1)
