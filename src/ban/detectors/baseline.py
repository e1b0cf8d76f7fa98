"""What every baseline detector shares: input checks, the compute `budget`, timing, verdicts, figures.

The threat model is in the types: `detect` takes a bare `nn.Module` and the defender's
`CleanData`; a `Checkpoint` (which may carry the attack) is refused with a clear error.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ban.clean_data import CleanData
from ban.detectors.ban_detector import check_inputs
from ban.detectors.base import Detector, Verdict
from ban.detectors.figures import save_image_grid
from ban.errors import BanError
from ban.utils import resolve_device


class BaselineDetector(Detector):
    """Base of the baseline detectors.

    budget: multiplies every epoch/step count of the method (1.0 = the paper's/code's defaults;
    0.1 = a tenth, for CPU runs); recorded in the verdict's settings.
    After `detect`, `figures` holds the recovered triggers as image batches (N×C×H×W in [0, 1])
    and `save_figures(directory)` writes them as PNG grids.
    """

    def __init__(self, seed: int = 0, device: str = "auto", quiet: bool = True, budget: float = 1.0) -> None:
        super().__init__(seed=seed, device=device, quiet=quiet)
        if not budget > 0:
            raise BanError(f"budget must be positive (1.0 = the method's defaults), got {budget}")
        self.budget = float(budget)
        self.figures: dict[str, Tensor] = {}

    def scaled(self, count: int) -> int:
        """`count` epochs/steps scaled by the budget (at least 1)."""
        return max(1, int(round(count * self.budget)))

    def settings(self) -> dict[str, Any]:
        return {"budget": self.budget}

    def prepare(self, model: nn.Module, clean: CleanData) -> tuple[nn.Module, torch.device]:
        """Check inputs; return a frozen eval-mode copy of `model` on the device (the caller's model is untouched)."""
        check_inputs(model, clean, f"detector '{self.name}'")
        if len(clean) == 0:
            raise BanError(f"detector '{self.name}' needs at least one clean image, got none")
        dev = resolve_device(self.device)
        work = copy.deepcopy(model).to(dev).eval()
        work.requires_grad_(False)
        with torch.no_grad():
            out = work(clean.x[:1].to(dev))
        if out.ndim != 2 or out.shape[1] != clean.num_classes:
            raise BanError(
                f"the model outputs {tuple(out.shape[1:])} logits but the clean data has {clean.num_classes} classes; "
                "pass the dataset the model was trained on"
            )
        self.figures = {}
        return work, dev

    def verdict(
        self,
        backdoored: bool,
        target: int | None,
        score: float,
        threshold: float,
        start: float,
        details: dict[str, Any],
    ) -> Verdict:
        """A Verdict stamped with this detector's name, seed, settings and the time since `start`."""
        return Verdict(
            detector=self.name,
            backdoored=bool(backdoored),
            target=None if target is None else int(target),
            score=float(score),
            threshold=float(threshold),
            seconds=time.perf_counter() - start,
            seed=self.seed,
            settings=self.settings(),
            details=details,
        )

    def save_figures(self, directory: str | Path) -> list[Path]:
        """Write the last run's recovered triggers as `<detector>_<name>.png`; returns the paths."""
        if not self.figures:
            raise BanError(f"detector '{self.name}' has no figures yet; call detect() first")
        out = []
        for key, images in self.figures.items():
            path = Path(directory) / f"{self.name}_{key}.png"
            save_image_grid(images, path)
            out.append(path)
        return out
