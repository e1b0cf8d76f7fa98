"""FT-SAM (Zhu, Wu, Wei et al., ICCV 2023): fine-tuning with (adaptive) sharpness-aware minimisation.

Fine-tune all weights on the clean images with ``ban.sam.SAM`` (ASAM, ρ = 2) around SGD and a
label-smoothed cross-entropy. Defaults from BackdoorBench ``defense/ft-sam.py`` and
``config/defense/ft-sam/config.yaml``: 5% clean data, 100 epochs, batch 256, SGD lr 0.01,
momentum 0.9, weight decay 5e-4, cosine annealing, ρ_max = ρ_min = 2.0 (constant ρ), adaptive
(ASAM) on, label smoothing 0.1.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
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
from ban.sam import SAM
from ban.utils import make_generator, resolve_device


class FTSAM(Mitigation):
    """Fine-tune with SAM/ASAM (radius `rho`) on `clean_samples` clean images."""

    name: ClassVar[str] = "ftsam"

    def __init__(
        self,
        seed: int = 0,
        device: str = "auto",
        quiet: bool = True,
        budget: float = 1.0,
        clean_samples: int = 2500,
        augment: bool = True,
        crop_pad: int = 4,
        epochs: int = 100,
        batch_size: int = 256,
        lr: float = 0.01,
        weight_decay: float = 5e-4,
        rho: float = 2.0,
        adaptive: bool = True,
        label_smoothing: float = 0.1,
    ) -> None:
        super().__init__(seed, device, quiet)
        self.budget = check_budget(budget)
        self.clean_samples = int(clean_samples)
        self.rho = float(rho)
        self.adaptive = bool(adaptive)
        self.paper_epochs = int(epochs)
        self.config = FineTuneConfig(
            epochs=scale_epochs(epochs, budget),
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            label_smoothing=label_smoothing,
            augment=augment,
            crop_pad=crop_pad,
        )

    def settings(self) -> dict[str, Any]:
        return {
            "budget": self.budget,
            "paper_epochs": self.paper_epochs,
            "clean_samples": self.clean_samples,
            "rho": self.rho,
            "adaptive": self.adaptive,
            **self.config.to_dict(),
        }

    def repair(self, model: nn.Module, clean: CleanData) -> tuple[nn.Module, dict[str, Any]]:
        data = clean_subset(clean, self.clean_samples, f"mitigation '{self.name}'", self.seed)
        dev = resolve_device(self.device)
        model.to(dev)
        check_model_fits(model, data, dev)
        cfg = self.config
        opt = SAM(
            model.parameters(),
            torch.optim.SGD,
            rho=self.rho,
            adaptive=self.adaptive,
            lr=cfg.lr,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
        )
        history = fine_tune(
            model,
            data,
            cfg,
            optimizer=opt,
            generator=make_generator(self.seed),
            device=dev,
            quiet=self.quiet,
            description="FT-SAM",
        )
        return model, {"history": history, "clean_used": len(data)}
