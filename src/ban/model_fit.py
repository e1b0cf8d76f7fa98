"""Does the model fit the data? One check for every detector, mitigation and command.

`check_fits` compares what a model declares (classes, input shape; a checkpoint's metadata) with
the clean data; `check_model_fits` asks the model itself, with one forward pass in eval mode
(no gradient, the model's train/eval mode restored), and then makes the same comparison.
"""

from __future__ import annotations

import torch
from torch import nn

from ban.clean_data import CleanData
from ban.data.dataset import ImageData
from ban.errors import BanError
from ban.utils import eval_mode

ADVICE = "pass the dataset the model was trained on"


def check_fits(data: CleanData | ImageData, num_classes: int, image_shape: tuple[int, ...]) -> None:
    """Raise when the data's image shape or class count does not match the model's."""
    if data.image_shape != tuple(image_shape):
        raise BanError(
            f"clean data has images of shape {data.image_shape} but the model takes {tuple(image_shape)}; {ADVICE}"
        )
    if data.num_classes != num_classes:
        raise BanError(f"clean data has {data.num_classes} classes but the model outputs {num_classes}; {ADVICE}")


def check_model_fits(model: nn.Module, data: CleanData | ImageData, device: torch.device) -> None:
    """Raise unless `model` (on `device`) reads the data's images and outputs one logit per class."""
    try:
        with torch.no_grad(), eval_mode(model):
            out = model(data.x[:2].to(device))
    except RuntimeError as exc:
        raise BanError(
            f"the model cannot read images of shape {data.image_shape} ({str(exc).splitlines()[0]}); {ADVICE}"
        ) from exc
    if out.ndim != 2:
        raise BanError(
            f"the model outputs {tuple(out.shape[1:])} per image, not one logit for each of the clean data's "
            f"{data.num_classes} classes; {ADVICE}"
        )
    check_fits(data, int(out.shape[1]), data.image_shape)
