"""`CleanData`: what a defender holds. It carries images and labels and nothing of any attack.

Detectors and mitigations take `CleanData` and a bare `nn.Module`, never a `Checkpoint`
(which may carry the attack): the threat model is in the types. Whether a model fits the data is
checked in one place, ``ban.model_fit``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ban.data.dataset import ImageData
from ban.data.split import balanced_sample
from ban.errors import BanError


@dataclass(frozen=True)
class CleanData:
    """The defender's clean images (float32 [0,1], N×C×H×W) with their true labels."""

    images: ImageData

    @classmethod
    def from_images(cls, data: ImageData) -> CleanData:
        return cls(ImageData(data.x, data.y, data.num_classes, data.name, data.flip, list(data.class_names)))

    @property
    def x(self) -> torch.Tensor:
        return self.images.x

    @property
    def y(self) -> torch.Tensor:
        return self.images.y

    @property
    def num_classes(self) -> int:
        return self.images.num_classes

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.images.image_shape

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, n: int, seed: int, min_per_class: int = 1) -> ImageData:
        """A class-balanced sample of `n` images (all of them when n >= len)."""
        if n >= len(self.images):
            return self.images
        return balanced_sample(self.images, n, seed, min_per_class)

    def require(self, n: int, who: str) -> None:
        """Raise a clear error when fewer than `n` clean images are available."""
        if len(self.images) < n:
            raise BanError(
                f"{who} needs at least {n} clean images, got {len(self.images)}; pass more (--clean-samples {n})"
            )
