"""NAD: Neural Attention Distillation (Li, Lyu, Koren, Lyu, Li, Ma, ICLR 2021).

1. Teacher: a copy of the backdoored model fine-tuned on the clean images (plain CE).
2. Student (the backdoored model) is fine-tuned with
   ``loss = CE(student(x), y) + β · MSE(A(f_s), A(f_t))``, where f are the ``features`` maps
   (N×C×H×W, the last convolutional stage) and the attention map is
   ``A(f) = a / ‖a‖₂`` with ``a = Σ_c |f_c|^p`` (N×1×H×W, the L2 norm over H×W).

Defaults from the official code (github bboylyg/NAD, ``config.py``/``main.py``/``utils/util.py``):
20 epochs, batch 64, SGD lr 0.1 with Nesterov momentum 0.9, weight decay 1e-4, lr 0.1 for
epochs 0–1, 0.01 from epoch 2, 1e-4 from epoch 20; β = 5000 on the last stage only
(β1 = β2 = 0), p = 2; 5% clean data; the teacher is fine-tuned for 10 epochs (README: "5~10",
BackdoorBench ``te_epochs: 10``) with the same recipe and β = 0. ``budget`` scales both epoch
counts and the schedule's milestones together. ``crop_pad`` (default 4, the official crop) is the
augmentation's padding, as in FT-SAM.

The loss is the official ``at.py`` term exactly: the MSE averages over batch and H×W positions, β
multiplies it once (checked against Zagoruyko's ``normalize(f.pow(p).mean(1).view(N, -1))`` form in
tests/test_mitigations.py). On ban's small CNN that term at β = 5000 starts at 6–8 against a CE of
~1 and its gradient is ~20× CE's, so the official β collapses BA there (measured 2026-12-03,
docs/mitigations.md, NAD).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ban.errors import BanError
from ban.mitigations.base import FineTuneHooks, FineTuneMitigation, FineTuneRun, FineTuneSettings
from ban.mitigations.finetune_loop import FineTuneConfig, fine_tune, freeze
from ban.mitigations.settings import MitigationSettings
from ban.models import get_split


def attention_map(f: Tensor, p: float = 2.0, eps: float = 1e-6) -> Tensor:
    """Spatial attention of feature maps `f` (N×C×H×W): Σ_c |f_c|^p, L2-normalised over H×W → N×1×H×W."""
    a = f.abs().pow(p).sum(dim=1, keepdim=True)
    return a / (a.norm(dim=(2, 3), keepdim=True) + eps)


def attention_loss(f_student: Tensor, f_teacher: Tensor, p: float = 2.0) -> Tensor:
    """MSE between the student's and the teacher's attention maps (mean over N×H×W, as ``F.mse_loss`` in at.py)."""
    return F.mse_loss(attention_map(f_student, p), attention_map(f_teacher, p))


@dataclass(frozen=True, kw_only=True)
class NADSettings(FineTuneSettings):
    """The official NAD recipe: a 20-epoch student and a 10-epoch teacher, batch 64, SGD lr 0.1 with
    Nesterov momentum, weight decay 1e-4; β = 5000 on the last stage, attention power p = 2."""

    epochs: int = 20
    teacher_epochs: int = 10
    batch_size: int = 64
    lr: float = 0.1
    weight_decay: float = 1e-4
    crop_pad: int = 4
    beta: float = 5000.0
    p: float = 2.0

    scaled_fields: ClassVar[tuple[str, ...]] = ("epochs", "teacher_epochs")
    positive: ClassVar[tuple[str, ...]] = ("clean_samples", "epochs", "teacher_epochs", "batch_size", "lr")


class NAD(FineTuneMitigation):
    """Distil the fine-tuned teacher's attention into the backdoored student."""

    name: ClassVar[str] = "nad"
    label: ClassVar[str] = "NAD student"
    Settings: ClassVar[type[MitigationSettings]] = NADSettings
    params: NADSettings

    def recipe(self) -> FineTuneConfig:
        """The student's: the template's with Nesterov momentum and the piecewise lr (milestones × budget)."""
        b = self.params.budget
        steps = ((int(round(2 * b)), 0.01), (int(round(20 * b)), 1e-4))
        return replace(super().recipe(), nesterov=True, schedule="piecewise", lr_steps=steps)

    @property
    def teacher_config(self) -> FineTuneConfig:
        """The student's recipe for the teacher's epochs."""
        return replace(self.config, epochs=self.params.scaled(self.params.teacher_epochs))

    def settings(self) -> dict[str, Any]:
        p = self.params
        return {
            "budget": p.budget,
            "paper_epochs": [p.epochs, p.teacher_epochs],
            "clean_samples": p.clean_samples,
            "beta": p.beta,
            "p": p.p,
            "student": self.config.to_dict(),
            "teacher": self.teacher_config.to_dict(),
        }

    def hooks(self, run: FineTuneRun) -> FineTuneHooks:
        """Fine-tune the teacher (a copy of the model, plain CE), then distil its attention into the model."""
        student = get_split(run.model)
        with torch.no_grad():
            probe = student.features(run.data.x[:1].to(run.device))
        if probe.ndim != 4:
            raise BanError(
                f"NAD needs convolutional feature maps (N×C×H×W) but this model's features have shape "
                f"{tuple(probe.shape)}; use ft, fp or ftsam instead"
            )
        teacher_model = copy.deepcopy(run.model)
        run.details["teacher_history"] = fine_tune(
            teacher_model,
            run.data,
            self.teacher_config,
            generator=run.generator,
            device=run.device,
            quiet=self.quiet,
            description="NAD teacher",
        )
        teacher = get_split(freeze(teacher_model))

        def objective(net: nn.Module, x: Tensor, y: Tensor) -> Tensor:
            f = student.features(x)
            with torch.no_grad():
                f_t = teacher.features(x)
            return F.cross_entropy(student.head(f), y) + self.params.beta * attention_loss(f, f_t, self.params.p)

        return FineTuneHooks(objective=objective)
