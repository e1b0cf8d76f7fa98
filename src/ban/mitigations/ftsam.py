"""FT-SAM (Zhu, Wu, Wei et al., ICCV 2023): fine-tuning with (adaptive) sharpness-aware minimisation.

Fine-tune all weights on the clean images with ``ban.mitigations.sam.SAM`` (ASAM, ρ = 2) around SGD
and a label-smoothed cross-entropy: the fine-tuning template with its optimiser. Defaults from
BackdoorBench ``defense/ft-sam.py`` and ``config/defense/ft-sam/config.yaml``: 5% clean data, 100
epochs, batch 256, SGD lr 0.01, momentum 0.9, weight decay 5e-4, cosine annealing, ρ_max = ρ_min =
2.0 (constant ρ), adaptive (ASAM) on, label smoothing 0.1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ban.mitigations.base import FineTuneHooks, FineTuneMitigation, FineTuneRun, FineTuneSettings
from ban.mitigations.sam import SAM
from ban.mitigations.settings import MitigationSettings


@dataclass(frozen=True, kw_only=True)
class FTSAMSettings(FineTuneSettings):
    """FT's recipe with crop padding 4, label smoothing 0.1 and ASAM of radius ρ = 2."""

    crop_pad: int = 4
    label_smoothing: float = 0.1
    rho: float = 2.0
    adaptive: bool = True


class FTSAM(FineTuneMitigation):
    """Fine-tune with SAM/ASAM (radius `rho`) on `clean_samples` clean images."""

    name: ClassVar[str] = "ftsam"
    label: ClassVar[str] = "FT-SAM"
    Settings: ClassVar[type[MitigationSettings]] = FTSAMSettings
    params: FTSAMSettings

    def hooks(self, run: FineTuneRun) -> FineTuneHooks:
        cfg = self.config
        sam = SAM(
            run.model.parameters(),
            torch.optim.SGD,
            rho=self.params.rho,
            adaptive=self.params.adaptive,
            lr=cfg.lr,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
        )
        return FineTuneHooks(optimizer=sam)
