"""FT-SAM (Zhu, Wu, Wei et al., ICCV 2023): fine-tuning with (adaptive) sharpness-aware minimisation.

Fine-tune all weights on the clean images with ``ban.mitigations.sam.SAM`` (ASAM, ρ = 2) around SGD
and a label-smoothed cross-entropy: the fine-tuning template with its optimiser. Defaults from
BackdoorBench ``defense/ft-sam.py`` and ``config/defense/ft-sam/config.yaml``: 5% clean data, 100
epochs, batch 256, SGD lr 0.01, momentum 0.9, weight decay 5e-4, cosine annealing, ρ_max = ρ_min =
2.0 (constant ρ), adaptive (ASAM) on, label smoothing 0.1.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

import torch

from ban.mitigations.base import FineTuneHooks, FineTuneMitigation, FineTuneRun
from ban.mitigations.sam import SAM


class FTSAM(FineTuneMitigation):
    """Fine-tune with SAM/ASAM (radius `rho`) on `clean_samples` clean images."""

    name: ClassVar[str] = "ftsam"
    label: ClassVar[str] = "FT-SAM"

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
        super().__init__(seed, device, quiet, budget, clean_samples, augment, epochs, batch_size, lr, weight_decay)
        self.rho = float(rho)
        self.adaptive = bool(adaptive)
        self.config = replace(self.config, label_smoothing=label_smoothing, crop_pad=crop_pad)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "rho": self.rho, "adaptive": self.adaptive}

    def hooks(self, run: FineTuneRun) -> FineTuneHooks:
        cfg = self.config
        sam = SAM(
            run.model.parameters(),
            torch.optim.SGD,
            rho=self.rho,
            adaptive=self.adaptive,
            lr=cfg.lr,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
        )
        return FineTuneHooks(optimizer=sam)
