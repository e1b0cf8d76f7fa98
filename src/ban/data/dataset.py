"""`ImageData`: images as float32 in [0, 1], NCHW, with int64 labels."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ban.errors import BanError


@dataclass
class ImageData:
    """A labelled image set held in memory.

    x: float32 tensor (N, C, H, W) with values in [0, 1].
    y: int64 tensor (N,) with values in [0, num_classes).
    flip: whether horizontal flips are label-preserving (False for digits and text).
    """

    x: Tensor
    y: Tensor
    num_classes: int
    name: str = "custom"
    flip: bool = True
    class_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.x.ndim != 4:
            raise BanError(f"dataset '{self.name}': images must be N×C×H×W, got shape {tuple(self.x.shape)}")
        if self.y.ndim != 1 or self.y.shape[0] != self.x.shape[0]:
            raise BanError(f"dataset '{self.name}': {self.x.shape[0]} images but labels of shape {tuple(self.y.shape)}")
        if self.x.dtype != torch.float32:
            raise BanError(f"dataset '{self.name}': images must be float32, got {self.x.dtype}")
        if self.y.dtype != torch.int64:
            raise BanError(f"dataset '{self.name}': labels must be int64, got {self.y.dtype}")
        if len(self.y) and (int(self.y.min()) < 0 or int(self.y.max()) >= self.num_classes):
            raise BanError(
                f"dataset '{self.name}': labels must lie in [0, {self.num_classes}), "
                f"found {int(self.y.min())}..{int(self.y.max())}"
            )
        if not torch.isfinite(self.x).all():
            raise BanError(f"dataset '{self.name}': images contain NaN or Inf values")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        c, h, w = self.x.shape[1:]
        return int(c), int(h), int(w)

    def subset(self, index: Tensor | np.ndarray | list[int], name: str | None = None) -> ImageData:
        """The images at `index` (a copy of the metadata, views of the tensors where torch allows)."""
        idx = torch.as_tensor(index, dtype=torch.long)
        return ImageData(
            x=self.x[idx],
            y=self.y[idx],
            num_classes=self.num_classes,
            name=name or self.name,
            flip=self.flip,
            class_names=list(self.class_names),
        )

    def class_counts(self) -> list[int]:
        return torch.bincount(self.y, minlength=self.num_classes).tolist()


def from_uint8(
    images: np.ndarray, labels: np.ndarray, num_classes: int, name: str, flip: bool, layout: str = "NHWC"
) -> ImageData:
    """Build ImageData from uint8 arrays (NHWC, NCHW or NHW)."""
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[:, None, :, :]
    elif layout == "NHWC":
        arr = arr.transpose(0, 3, 1, 2)
    x = torch.from_numpy(np.ascontiguousarray(arr)).float().div_(255.0)
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64).copy())
    return ImageData(x=x, y=y, num_classes=num_classes, name=name, flip=flip)
