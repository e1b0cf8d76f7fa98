"""One training loop for clean and poisoned models.

The attack (if any) enters through its hooks: `poison_dataset` once, `prepare_training` before
the first epoch, `training_loss` per batch, `step` after the classifier's step, `end_epoch`.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ban.data.augment import Augment, identity
from ban.data.dataset import ImageData
from ban.errors import BanError
from ban.evaluate import EvalReport, evaluate
from ban.model_fit import check_model_fits
from ban.progress import Bar
from ban.utils import make_generator, resolve_device, seed_everything

if TYPE_CHECKING:
    from ban.attacks.base import Attack


SCHEDULES = ("multistep", "cosine", "none")


@dataclass
class TrainConfig:
    """The training recipe. Paper protocol: 200 epochs, lr 0.01, milestones (100, 150)."""

    epochs: int = 5
    batch_size: int = 128
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    augment: bool = True
    crop_pad: int = 4
    seed: int = 0
    device: str = "auto"
    quiet: bool = False

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise BanError(f"unknown schedule '{self.schedule}'; choose one of {', '.join(SCHEDULES)}")
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0 or not math.isfinite(self.lr):
            raise BanError(f"epochs and batch size must be at least 1 and lr a positive number, got lr {self.lr}")
        self.milestones = tuple(int(m) for m in self.milestones)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainReport:
    """What a training run did: recipe, time, final BA/ASR, poisoned indices count, per-epoch log."""

    config: dict[str, Any]
    seconds: float
    images_per_second: float
    test: EvalReport | None = None
    num_train: int = 0
    num_poisoned: int = 0
    history: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["test"] = self.test.to_dict() if self.test is not None else None
        return d


def _scheduler(
    opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * steps_per_epoch)
    if cfg.schedule == "multistep" and cfg.milestones:
        ms = [m * steps_per_epoch for m in cfg.milestones]
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=ms, gamma=cfg.gamma)
    return None


def train_model(
    model: nn.Module,
    data: ImageData,
    config: TrainConfig | None = None,
    attack: Attack | None = None,
    test_data: ImageData | None = None,
) -> TrainReport:
    """Train `model` on `data` (poisoned by `attack` when given); evaluate on `test_data` at the end."""
    cfg = config or TrainConfig()
    if len(data) == 0:
        raise BanError("no training images: the dataset (or its --subset) is empty")
    seed_everything(cfg.seed)
    dev = resolve_device(cfg.device)
    if dev.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    g = make_generator(cfg.seed)
    model.to(dev)
    check_model_fits(model, data, dev, "training data")
    num_poisoned = 0
    if attack is not None:
        attack.setup(data.image_shape, data.num_classes, g)
        poisoned = attack.poison_dataset(data, g)
        data = poisoned.data
        num_poisoned = int(len(poisoned.poison_index))
        attack.to(dev)
        attack.prepare_training(model, data, cfg.epochs, g)
    augment = Augment(cfg.crop_pad, data.flip) if cfg.augment else identity
    steps = math.ceil(len(data) / cfg.batch_size)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = _scheduler(opt, cfg, steps)
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    bar = Bar("train", cfg.epochs * steps, quiet=cfg.quiet)
    try:
        for epoch in range(cfg.epochs):
            model.train()
            perm = torch.randperm(len(data), generator=g)
            total, count = 0.0, 0
            for i in range(steps):
                idx = perm[i * cfg.batch_size : (i + 1) * cfg.batch_size]
                x, y = data.x[idx].to(dev), data.y[idx].to(dev)
                opt.zero_grad(set_to_none=True)
                if attack is not None:
                    attack.zero_grad(set_to_none=True)
                    loss = attack.training_loss(model, x, y, augment, g)
                else:
                    loss = nn.functional.cross_entropy(model(augment(x, g)), y)
                if not torch.isfinite(loss):
                    raise BanError(f"training diverged (loss {loss.item()}) in epoch {epoch + 1}; lower --lr")
                loss.backward()
                opt.step()
                if attack is not None:
                    attack.step()
                if sched is not None:
                    sched.step()
                total += loss.item() * len(idx)
                count += len(idx)
                bar.advance(info=f"epoch {epoch + 1}/{cfg.epochs} loss {total / count:.3f}")
            if attack is not None:
                attack.end_epoch(epoch)
            history.append({"epoch": epoch + 1, "loss": total / max(count, 1)})
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    report = TrainReport(
        config=cfg.to_dict(),
        seconds=seconds,
        images_per_second=cfg.epochs * len(data) / max(seconds, 1e-9),
        num_train=len(data),
        num_poisoned=num_poisoned,
        history=history,
    )
    if test_data is not None:
        report.test = evaluate(model, test_data, attack, device=dev, seed=cfg.seed)
    model.eval()
    return report
