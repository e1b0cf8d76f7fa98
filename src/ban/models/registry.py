"""`create_model(name, ...)` and `list_models()`: the model zoo as a registry of constructors."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from ban.errors import BanError
from ban.models.base import SplitModel
from ban.models.densenet import densenet121
from ban.models.mobilenetv2 import MobileNetV2
from ban.models.preact_resnet import preact_resnet18
from ban.models.resnet import resnet18
from ban.models.small_cnn import SmallCNN
from ban.models.vgg import vgg16_bn
from ban.registry import Registry

MODELS: Registry[Callable[..., SplitModel]] = Registry("architecture")
MODELS.register("resnet18", resnet18)
MODELS.register("preact_resnet18", preact_resnet18, aliases=["preactresnet18"])
MODELS.register("vgg16", vgg16_bn, aliases=["vgg16_bn", "vgg16bn"])
MODELS.register("densenet121", densenet121)
MODELS.register("mobilenetv2", MobileNetV2, aliases=["mobilenet_v2"])
MODELS.register("small_cnn", SmallCNN, aliases=["smallcnn", "cnn"])


def list_models() -> list[str]:
    return MODELS.list()


def canonical_arch(name: str) -> str:
    """The registered name of architecture `name` (any case, `_` or `-`, or an alias)."""
    return MODELS.canonical(name)


def create_model(
    name: str,
    num_classes: int = 10,
    in_channels: int = 3,
    width: float = 1.0,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    seed: int | None = None,
) -> SplitModel:
    """Build a registered architecture. `mean`/`std` become its first (normalisation) layer.

    With `seed`, the initial weights are drawn from a generator seeded with it (same seed, same
    weights) without touching the global RNG state.
    """
    if num_classes < 2:
        raise BanError(f"num_classes must be at least 2, got {num_classes}")
    if in_channels < 1:
        raise BanError(f"in_channels must be at least 1 (1 grey, 3 colour), got {in_channels}")
    if not width > 0 or not math.isfinite(width):  # NaN fails `width <= 0` too
        raise BanError(f"width multiplier must be a positive number, got {width}")
    build = MODELS.entry(name)
    if seed is None:
        return build(num_classes=num_classes, in_channels=in_channels, width=width, mean=mean, std=std)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build(num_classes=num_classes, in_channels=in_channels, width=width, mean=mean, std=std)
