"""FT: plain fine-tuning of all weights on the defender's clean images (the baseline every repair must beat).

Defaults from BackdoorBench ``config/defense/ft/config.yaml`` (see docs/mitigations.md): 5% of the
training set (2500 CIFAR-10 images), 100 epochs, batch 256, SGD lr 0.01, momentum 0.9, weight
decay 5e-4, cosine annealing, random crop (+ flip where the data allows).
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import nn

from ban.clean_data import CleanData
from ban.mitigations.base import Mitigation
from ban.mitigations.finetune_loop import (
    FineTuneConfig,
    check_budget,
    check_model_fits,
    clean_subset,
    fine_tune,
    scale_epochs,
)
from ban.utils import make_generator, resolve_device


class FineTune(Mitigation):
    """Fine-tune on `clean_samples` clean images for `epochs` × `budget` epochs."""

    name: ClassVar[str] = "ft"

    def __init__(
        self,
        seed: int = 0,
        device: str = "auto",
        quiet: bool = True,
        budget: float = 1.0,
        clean_samples: int = 2500,
        augment: bool = True,
        epochs: int = 100,
        batch_size: int = 256,
        lr: float = 0.01,
        weight_decay: float = 5e-4,
    ) -> None:
        super().__init__(seed, device, quiet)
        self.budget = check_budget(budget)
        self.clean_samples = int(clean_samples)
        self.config = FineTuneConfig(
            epochs=scale_epochs(epochs, budget),
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            augment=augment,
        )
        self.paper_epochs = int(epochs)

    def settings(self) -> dict[str, Any]:
        return {
            "budget": self.budget,
            "paper_epochs": self.paper_epochs,
            "clean_samples": self.clean_samples,
            **self.config.to_dict(),
        }

    def repair(self, model: nn.Module, clean: CleanData) -> tuple[nn.Module, dict[str, Any]]:
        data = clean_subset(clean, self.clean_samples, f"mitigation '{self.name}'", self.seed)
        dev = resolve_device(self.device)
        model.to(dev)
        check_model_fits(model, data, dev)
        history = fine_tune(
            model,
            data,
            self.config,
            generator=make_generator(self.seed),
            device=dev,
            quiet=self.quiet,
            description="FT",
        )
        return model, {"history": history, "clean_used": len(data)}
