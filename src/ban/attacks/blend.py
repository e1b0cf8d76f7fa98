"""Blend (Chen et al. 2017): the whole image blended with a fixed trigger picture, static poisoning."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from ban.attacks.base import PoisonedData, StaticPoisonAttack
from ban.attacks.trigger import blend_trigger, load_image_pattern, noise_pattern
from ban.data.dataset import ImageData
from ban.errors import BanError


def check_alpha(alpha: float, what: str = "blend alpha") -> float:
    if not 0.0 < float(alpha) <= 1.0:
        raise BanError(f"{what} must lie in (0, 1], got {alpha}")
    return float(alpha)


class Blend(StaticPoisonAttack):
    """x' = (1−α)·x + α·T on `poison_rate` of the non-target images; label → target.

    T is a fixed Gaussian noise image drawn with `trigger_seed` (BAN/ANP's 'gaussian_noise'
    trigger) unless `image` names a picture file, which is read with Pillow and resized to the
    input size (grey or colour as the data). α = 0.2 (ANP, BackdoorBench).
    """

    name: ClassVar[str] = "blend"
    default_poison_rate: ClassVar[float] = 0.05

    def __init__(self, alpha: float = 0.2, image: str | None = None, trigger_seed: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.alpha = check_alpha(alpha)
        self.image = None if image in (None, "", "none") else str(image)
        self.trigger_seed = int(trigger_seed)
        self._missing: str | None = None
        # a checkpoint carries the picture itself: loading its state clears a missing file
        self.register_load_state_dict_post_hook(lambda module, keys: setattr(module, "_missing", None))

    def params(self) -> dict[str, Any]:
        return {**super().params(), "alpha": self.alpha, "image": self.image, "trigger_seed": self.trigger_seed}

    def default_pattern(self, image_shape: tuple[int, int, int]) -> Tensor:
        return noise_pattern(image_shape, self.trigger_seed)

    def build(self, image_shape: tuple[int, int, int], generator: torch.Generator | None) -> None:
        self._missing = None
        if self.image is None:
            pattern = self.default_pattern(image_shape)
        elif Path(self.image).is_file():
            pattern = load_image_pattern(self.image, image_shape)
        else:
            # a placeholder until a checkpoint's state fills it; using it before is an error
            pattern = torch.zeros(image_shape)
            self._missing = f"trigger image {self.image} not found; pass an existing picture file (PNG, JPEG, ...)"
        self.register_buffer("pattern", pattern)

    def trigger_pattern(self) -> Tensor:
        if self._missing:
            raise BanError(self._missing)
        return self.pattern

    def apply_trigger(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return blend_trigger(x, self.trigger_pattern(), torch.ones(1), self.alpha)

    def poison_dataset(self, data: ImageData, generator: torch.Generator) -> PoisonedData:
        self.trigger_pattern()  # fail early on a missing picture
        return super().poison_dataset(data, generator)
