"""One clean-data fine-tuning loop for every repair that fine-tunes (FT, Fine-Pruning, NAD, I-BAU, FT-SAM, ...).

What differs between the methods enters through three hooks, never through a copy of the loop:

- ``objective(model, x, y) -> loss``: the per-batch loss on an (augmented) clean batch
  ``x`` (B×C×H×W in [0, 1]) with labels ``y`` (B,); default cross-entropy (with
  ``label_smoothing``). NAD adds attention distillation; I-BAU returns a surrogate whose
  gradient is its implicit hypergradient.
- ``optimizer``: any ``torch.optim.Optimizer``; the loop always calls ``optimizer.step(closure)``,
  so a two-pass optimiser (``ban.sam.SAM``) recomputes the loss itself. Default: SGD from the config.
- ``after_step()``: called after every optimiser step (Fine-Pruning keeps pruned weights at zero).

Helpers shared by the mitigations: ``scale_epochs`` (the ``--budget`` knob) and ``clean_subset``
(the ``CleanData.require`` check plus a class-balanced sample).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ban.clean_data import CleanData
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


def scale_epochs(epochs: int, budget: float | None) -> int:
    """`epochs` scaled by the compute budget (a fraction of the paper's setting; None = 1.0), at least 1."""
    if budget is None:
        return epochs
    return max(1, int(round(epochs * check_budget(budget))))


def check_budget(budget: float | None) -> float:
    """The budget as a positive float (None → 1.0, the paper's setting)."""
    if budget is None:
        return 1.0
    try:
        value = float(budget)
    except (TypeError, ValueError) as exc:
        raise BanError(f"budget must be a positive number (a fraction of the paper's epochs), got {budget!r}") from exc
    if not value > 0 or not math.isfinite(value):
        raise BanError(f"budget must be a positive number (1.0 = the paper's epochs, 0.1 = a tenth), got {budget}")
    return value


def clean_subset(clean: CleanData, n: int, who: str, seed: int) -> ImageData:
    """A class-balanced sample of `n` clean images; BanError naming `who` when fewer are available."""
    clean.require(n, who)
    return clean.sample(n, seed)


def check_model_fits(model: nn.Module, data: ImageData, device: torch.device) -> None:
    """BanError when the model's output does not have one logit per class of `data`."""
    with torch.no_grad():
        was = model.training
        model.eval()
        try:
            out = model(data.x[:1].to(device))
        except RuntimeError as exc:
            raise BanError(
                f"the model cannot take the clean images of shape {data.image_shape}: {str(exc).splitlines()[0]}; "
                "pass the dataset the model was trained on"
            ) from exc
        finally:
            model.train(was)
    if out.ndim != 2 or out.shape[1] != data.num_classes:
        raise BanError(
            f"the model outputs {tuple(out.shape[1:])} logits but the clean data has {data.num_classes} classes; "
            "pass the dataset the model was trained on"
        )


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


def parameters_of(modules: Sequence[nn.Module]) -> list[nn.Parameter]:
    """All parameters of `modules`, each once."""
    seen: dict[int, nn.Parameter] = {}
    for m in modules:
        for p in m.parameters():
            seen.setdefault(id(p), p)
    return list(seen.values())
