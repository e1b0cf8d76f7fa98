"""One clean-data fine-tuning loop for every repair that fine-tunes (FT, Fine-Pruning, NAD, I-BAU, FT-SAM, ...).

What differs between the methods enters through three hooks, never through a copy of the loop:

- ``objective(model, x, y) -> loss``: the per-batch loss on an (augmented) clean batch
  ``x`` (B×C×H×W in [0, 1]) with labels ``y`` (B,); default cross-entropy (with
  ``label_smoothing``). NAD adds attention distillation; I-BAU returns a surrogate whose
  gradient is its implicit hypergradient.
- ``optimizer``: any ``torch.optim.Optimizer``; the loop always calls ``optimizer.step(closure)``,
  so a two-pass optimiser (``ban.mitigations.sam.SAM``) recomputes the loss itself. Default: SGD
  from the config.
- ``after_step()``: called after every optimiser step (Fine-Pruning keeps pruned weights at zero).

``ban.mitigations.base.FineTuneMitigation`` is the template that calls this loop for a method.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ban.data.augment import Augment, identity
from ban.data.dataset import ImageData
from ban.errors import BanError
from ban.progress import Bar
from ban.utils import make_generator, resolve_device

SCHEDULES = ("cosine", "constant", "piecewise")

Objective = Callable[[nn.Module, Tensor, Tensor], Tensor]


@dataclass
class FineTuneConfig:
    """A fine-tuning recipe on the defender's clean images.

    schedule: "cosine" (annealed to 0 over all steps), "constant", or "piecewise" with
    ``lr_steps`` = ((epoch, lr), ...): from that (0-based) epoch on, use that learning rate.
    train_mode: BatchNorm in train mode (batch statistics) during fine-tuning; I-BAU uses False.
    """

    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    schedule: str = "cosine"
    lr_steps: tuple[tuple[int, float], ...] = ()
    label_smoothing: float = 0.0
    augment: bool = True
    crop_pad: int = 4
    train_mode: bool = True

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise BanError(f"unknown schedule '{self.schedule}'; choose one of {', '.join(SCHEDULES)}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise BanError("fine-tuning needs at least 1 epoch, a batch size of at least 1 and a positive lr")
        self.lr_steps = tuple((int(e), float(lr)) for e, lr in self.lr_steps)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lr_at(self, epoch: int) -> float:
        """The learning rate of a piecewise schedule at `epoch` (0-based)."""
        lr = self.lr
        for start, value in self.lr_steps:
            if epoch >= start:
                lr = value
        return lr


def cross_entropy_objective(label_smoothing: float = 0.0) -> Objective:
    """CE(model(x), y), optionally label-smoothed."""

    def objective(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(model(x), y, label_smoothing=label_smoothing)

    return objective


def sgd_for(model: nn.Module, cfg: FineTuneConfig) -> torch.optim.SGD:
    """The default optimiser: SGD with the config's lr, momentum, weight decay and Nesterov flag."""
    return torch.optim.SGD(
        model.parameters(),
        lr=cfg.lr,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
        nesterov=cfg.nesterov and cfg.momentum > 0,
    )


def fine_tune(
    model: nn.Module,
    data: ImageData,
    cfg: FineTuneConfig,
    *,
    objective: Objective | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    after_step: Callable[[], None] | None = None,
    generator: torch.Generator | None = None,
    device: str | torch.device = "auto",
    quiet: bool = True,
    description: str = "fine-tune",
) -> list[dict[str, float]]:
    """Fine-tune `model` in place on `data` for `cfg.epochs`; returns the per-epoch mean loss.

    Each step: draw a shuffled batch, augment it (random crop, flip when the data allows),
    and call ``optimizer.step(closure)`` where the closure zeroes the gradients, evaluates
    ``objective`` and back-propagates. The model is left in eval mode.
    """
    dev = resolve_device(device)
    g = generator if generator is not None else make_generator(0)
    model.to(dev)
    objective = objective or cross_entropy_objective(cfg.label_smoothing)
    opt = optimizer if optimizer is not None else sgd_for(model, cfg)
    augment = Augment(cfg.crop_pad, data.flip) if cfg.augment else identity
    steps = math.ceil(len(data) / cfg.batch_size)
    sched = None
    if cfg.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * steps)
    history: list[dict[str, float]] = []
    bar = Bar(description, cfg.epochs * steps, quiet=quiet)
    try:
        for epoch in range(cfg.epochs):
            if cfg.schedule == "piecewise":
                for group in opt.param_groups:
                    group["lr"] = cfg.lr_at(epoch)
            model.train(cfg.train_mode)
            perm = torch.randperm(len(data), generator=g)
            total, count = 0.0, 0
            for i in range(steps):
                idx = perm[i * cfg.batch_size : (i + 1) * cfg.batch_size]
                x = augment(data.x[idx].to(dev), g)
                y = data.y[idx].to(dev)

                def closure(x: Tensor = x, y: Tensor = y) -> Tensor:
                    opt.zero_grad(set_to_none=True)
                    loss = objective(model, x, y)
                    loss.backward()
                    return loss

                loss = opt.step(closure)
                assert isinstance(loss, Tensor)
                if not torch.isfinite(loss):
                    raise BanError(f"{description} diverged (loss {loss.item()}) in epoch {epoch + 1}; lower the lr")
                if after_step is not None:
                    after_step()
                if sched is not None:
                    sched.step()
                total += loss.item() * len(idx)
                count += len(idx)
                bar.advance(info=f"epoch {epoch + 1}/{cfg.epochs} loss {total / count:.3f}")
            history.append({"epoch": epoch + 1, "loss": total / max(count, 1)})
    finally:
        bar.close()
    model.eval()
    return history


def freeze(model: nn.Module) -> nn.Module:
    """`model` in eval mode with gradients off (a fixed teacher or reference)."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
