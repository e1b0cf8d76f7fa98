"""BadNets (Gu et al. 2017): a small patch in the corner, static poisoning."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from ban.attacks.base import StaticPoisonAttack
from ban.attacks.trigger import blend_trigger, checkerboard_patch
from ban.errors import BanError

PATCHES = ("checkerboard", "white")


class BadNets(StaticPoisonAttack):
    """Stamp a `patch_size`×`patch_size` patch in the bottom-right corner; label → target.

    patch: "checkerboard" (the BAN/ANP trigger) or "white" (BackdoorBench's white square).
    Poisoned images are drawn from non-target images (BAN/ANP), `poison_rate` of them.
    """

    name: ClassVar[str] = "badnets"
    default_poison_rate: ClassVar[float] = 0.05

    def __init__(self, patch: str = "checkerboard", patch_size: int = 3, alpha: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if patch not in PATCHES:
            raise BanError(f"unknown BadNets patch '{patch}'; choose one of {', '.join(PATCHES)}")
        if patch_size < 1:
            raise BanError(f"patch size must be at least 1 pixel, got {patch_size}")
        if not 0.0 < alpha <= 1.0:
            raise BanError(f"trigger alpha must lie in (0, 1], got {alpha}")
        self.patch = patch
        self.patch_size = int(patch_size)
        self.alpha = float(alpha)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "patch": self.patch, "patch_size": self.patch_size, "alpha": self.alpha}

    def build(self, image_shape: tuple[int, int, int], generator: torch.Generator | None) -> None:
        pattern, mask = checkerboard_patch(image_shape, self.patch_size)
        if self.patch == "white":
            pattern = mask.clone()
        self.register_buffer("pattern", pattern)
        self.register_buffer("mask", mask)

    def apply_trigger(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return blend_trigger(x, self.pattern, self.mask, self.alpha)
