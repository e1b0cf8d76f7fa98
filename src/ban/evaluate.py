"""`evaluate()`: benign accuracy (BA) and attack success rate (ASR) of a model."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ban.data.dataset import ImageData
from ban.errors import BanError
from ban.model_fit import check_model_fits
from ban.utils import batches, eval_mode, make_generator, resolve_device

if TYPE_CHECKING:
    from ban.attacks.base import Attack
    from ban.checkpoint import Checkpoint


@dataclass
class EvalReport:
    """BA on the clean test set; ASR on triggered test images that count (see `Attack.asr_mask`).

    For source-specific attacks `nvt_accuracy` is the accuracy of non-victim images carrying
    the trigger (they should keep their labels).
    """

    ba: float
    asr: float | None = None
    n_clean: int = 0
    n_asr: int = 0
    nvt_accuracy: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, batch_size: int = 512, device: str | torch.device = "auto") -> Tensor:
    """Predicted labels (N,) of `model` in eval mode, computed batch by batch on `device`."""
    dev = resolve_device(device)
    out = []
    with eval_mode(model):
        for sl in batches(len(x), batch_size):
            out.append(model(x[sl].to(dev)).argmax(1).cpu())
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


def accuracy(model: nn.Module, data: ImageData, batch_size: int = 512, device: str | torch.device = "auto") -> float:
    """Fraction of `data` that `model` classifies correctly."""
    if len(data) == 0:
        return float("nan")
    return float((predict(model, data.x, batch_size, device) == data.y).float().mean())


@torch.no_grad()
def triggered(attack: Attack, x: Tensor, batch_size: int, device: torch.device, seed: int) -> Tensor:
    """Apply the attack's test-time trigger to `x` batch by batch (on `device`, results on CPU)."""
    g = make_generator(seed)
    out = []
    with eval_mode(attack):
        for sl in batches(len(x), batch_size):
            out.append(attack.apply_trigger(x[sl].to(device), g).clamp(0, 1).cpu())
    return torch.cat(out) if out else x[:0]


def attack_success_rate(
    model: nn.Module,
    data: ImageData,
    attack: Attack,
    batch_size: int = 512,
    device: str | torch.device = "auto",
    seed: int = 0,
) -> tuple[float, int]:
    """(ASR, number of images counted): triggered images of counted classes classified as the attacker wants."""
    dev = resolve_device(device)
    keep = attack.asr_mask(data.y)
    x, y = data.x[keep], data.y[keep]
    if len(x) == 0:
        return float("nan"), 0
    attack.to(dev)
    pred = predict(model, triggered(attack, x, batch_size, dev, seed), batch_size, dev)
    return float((pred == attack.target_labels(y)).float().mean()), int(len(x))


def evaluate(
    model: nn.Module | Checkpoint,
    data: ImageData,
    attack: Attack | None = None,
    batch_size: int = 512,
    device: str | torch.device = "auto",
    seed: int = 0,
) -> EvalReport:
    """BA of `model` on clean `data` and, when `attack` is given, its ASR.

    `model` may be a Checkpoint: its model, and its attack when `attack` is not given."""
    from ban.checkpoint import Checkpoint

    if isinstance(model, Checkpoint):
        model, attack = model.model, attack if attack is not None else model.attack
    if not isinstance(model, nn.Module):
        raise BanError(f"evaluate takes a torch nn.Module or a ban Checkpoint, got {type(model).__name__}")
    if not isinstance(data, ImageData):
        raise BanError(f"evaluate takes the test images as ban ImageData, got {type(data).__name__}")
    if attack is not None and attack.image_shape is None:
        raise BanError(
            f"the {attack.name} attack has no trigger yet: evaluate the attack a model was trained with "
            "(checkpoint.attack), or build one with attack.setup(image_shape, num_classes)"
        )
    dev = resolve_device(device)
    model.to(dev)
    check_model_fits(model, data, dev, "test data")
    report = EvalReport(ba=accuracy(model, data, batch_size, dev), n_clean=len(data))
    if attack is not None:
        report.asr, report.n_asr = attack_success_rate(model, data, attack, batch_size, dev, seed)
        if attack.mode == "source-specific":
            others = ~attack.asr_mask(data.y)
            if others.any():
                xt = triggered(attack, data.x[others], batch_size, dev, seed)
                report.nvt_accuracy = float((predict(model, xt, batch_size, dev) == data.y[others]).float().mean())
    return report
