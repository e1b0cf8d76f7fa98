"""Does the model fit the data? One check for every detector, mitigation and command.

`check_fits` compares what a model declares (classes, input shape; a checkpoint's metadata) with
the clean data; `check_model_fits` asks the model itself, with one forward pass in eval mode
(no gradient, the model's train/eval mode restored), and then makes the same comparison.
`clean_accuracy` and `accuracy_warning` say when a model that fits the data does not classify it
(then no verdict means much).
"""

from __future__ import annotations

import torch
from torch import nn

from ban.clean_data import CleanData
from ban.data.dataset import ImageData
from ban.errors import BanError
from ban.utils import eval_mode

ADVICE = "pass the dataset the model was trained on"
TRAINING_ADVICE = "build the model for the data: create_model(arch, num_classes, in_channels)"


def _advice(what: str) -> str:
    return TRAINING_ADVICE if what == "training data" else ADVICE


def check_fits(
    data: CleanData | ImageData, num_classes: int, image_shape: tuple[int, ...], what: str = "clean data"
) -> None:
    """Raise when the data's image shape or class count does not match the model's."""
    if data.image_shape != tuple(image_shape):
        shapes = f"images of shape {data.image_shape} but the model takes {tuple(image_shape)}"
        raise BanError(f"{what} has {shapes}; {_advice(what)}")
    if data.num_classes != num_classes:
        raise BanError(f"{what} has {data.num_classes} classes but the model outputs {num_classes}; {_advice(what)}")


def check_model_fits(
    model: nn.Module, data: CleanData | ImageData, device: torch.device, what: str = "clean data"
) -> None:
    """Raise unless `model` (on `device`) reads the data's images and outputs one logit per class."""
    norm = getattr(model, "normalize", None)
    mean = getattr(norm, "mean", None)
    if isinstance(mean, torch.Tensor) and mean.ndim == 4 and data.x.ndim == 4 and mean.shape[1] != data.x.shape[1]:
        # ban's models normalise first, and (x - mean) would broadcast grey images to three channels unnoticed
        raise BanError(
            f"{what} has {data.x.shape[1]}-channel images but the model takes {mean.shape[1]}-channel ones; "
            f"{_advice(what)}"
        )
    try:
        with torch.no_grad(), eval_mode(model):
            out = model(data.x[:2].to(device))
    except RuntimeError as exc:
        raise BanError(
            f"the model cannot read the {what}'s images of shape {data.image_shape} ({str(exc).splitlines()[0]}); "
            f"{_advice(what)}"
        ) from exc
    if out.ndim != 2:
        raise BanError(
            f"the model outputs {tuple(out.shape[1:])} per image, not one logit for each of the {what}'s "
            f"{data.num_classes} classes; {_advice(what)}"
        )
    check_fits(data, int(out.shape[1]), data.image_shape, what)


def clean_accuracy(model: nn.Module, data: CleanData | ImageData, device: torch.device, limit: int = 256) -> float:
    """The share of up to `limit` images, evenly spread over the data, that `model` (eval mode, no gradient)
    labels right."""
    if len(data) == 0:
        return float("nan")
    index = torch.arange(len(data))[:: max(1, len(data) // limit)][:limit]
    right = 0
    with torch.no_grad(), eval_mode(model):
        for part in index.split(256):
            right += int((model(data.x[part].to(device)).argmax(1).cpu() == data.y[part]).sum())
    return right / len(index)


def accuracy_warning(accuracy: float | None, num_classes: int) -> str | None:
    """A warning when a model labels at most twice chance of the clean images right: then no detector's
    verdict means much (an untrained model, the wrong dataset, or inputs normalised other than in training)."""
    if accuracy is None or not accuracy <= 2 / num_classes:
        return None
    return (
        f"the model labels only {accuracy:.0%} of the clean images right (chance {1 / num_classes:.0%}), so its "
        "verdict means little: is this the dataset it was trained on, with the same normalisation? (a plain state "
        "dict carries none: its inputs are read in [0, 1])"
    )
