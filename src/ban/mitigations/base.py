"""The two bases of every mitigation and the `MitigationReport` each returns.

- `Mitigation` owns what every method has: the settings seed, device, quiet, budget and
  clean_samples, the budget's validation (`scaled` applies it) and the preamble of a repair
  (`prepare`: the clean subset, the model on the device, a check that the model fits the data).
- `FineTuneMitigation` is the template of the methods that fine-tune on the clean images (FT,
  FT-SAM, Fine-Pruning, NAD, BAN): it owns the recipe (`config`) and the call of the one loop
  (`ban.mitigations.finetune_loop.fine_tune`); a method supplies only what differs, through
  `hooks(run)`: the objective, the optimiser and an after-step call.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from ban.clean_data import CleanData
from ban.data.dataset import ImageData
from ban.errors import BanError
from ban.evaluate import EvalReport, evaluate
from ban.mitigations.finetune_loop import FineTuneConfig, Objective, fine_tune
from ban.model_fit import check_model_fits
from ban.utils import make_generator, resolve_device, versions

if TYPE_CHECKING:
    from ban.attacks.base import Attack


@dataclass
class MitigationReport:
    """BA (and ASR when the evaluator knows the attack) before and after; time; settings; seed."""

    method: str
    seconds: float
    seed: int
    settings: dict[str, Any] = field(default_factory=dict)
    before: EvalReport | None = None
    after: EvalReport | None = None
    asr_known: bool = False
    details: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=versions)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["before"] = self.before.to_dict() if self.before else None
        d["after"] = self.after.to_dict() if self.after else None
        return d


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


def scale_epochs(epochs: int, budget: float | None) -> int:
    """`epochs` scaled by the compute budget (a fraction of the paper's setting; None = 1.0), at least 1."""
    if budget is None:
        return epochs
    return max(1, int(round(epochs * check_budget(budget))))


def clean_subset(clean: CleanData, n: int, who: str, seed: int) -> ImageData:
    """A class-balanced sample of `n` clean images; BanError naming `who` when fewer are available."""
    clean.require(n, who)
    return clean.sample(n, seed)


class Mitigation:
    """A backdoor removal method: settings in `__init__`, work in `repair(model, clean)`.

    `repair` gets a copy of the model and the defender's clean data, never the attack, and
    returns the repaired model plus method-specific details. `run` wraps it with evaluation.
    `budget` scales the method's epochs, rounds or iterations (1.0 = the paper's, 0.1 = a tenth);
    `clean_samples` is how many clean images it draws (class-balanced, with `seed`).
    """

    name: ClassVar[str] = "mitigation"

    def __init__(
        self, seed: int = 0, device: str = "auto", quiet: bool = True, budget: float = 1.0, clean_samples: int = 2500
    ) -> None:
        self.seed = seed
        self.device = device
        self.quiet = quiet
        self.budget = check_budget(budget)
        self.clean_samples = int(clean_samples)

    def scaled(self, count: int) -> int:
        """`count` (the paper's epochs, rounds or iterations) scaled by the budget, at least 1."""
        return scale_epochs(count, self.budget)

    def settings(self) -> dict[str, Any]:
        return {"budget": self.budget, "clean_samples": self.clean_samples}

    def prepare(self, model: nn.Module, clean: CleanData) -> tuple[ImageData, torch.device]:
        """The preamble of every repair: `clean_samples` clean images, `model` moved to the device, and a
        BanError unless the model takes those images and has one logit per class."""
        data = clean_subset(clean, self.clean_samples, f"mitigation '{self.name}'", self.seed)
        dev = resolve_device(self.device)
        model.to(dev)
        check_model_fits(model, data, dev)
        return data, dev

    def repair(self, model: nn.Module, clean: CleanData) -> tuple[nn.Module, dict[str, Any]]:
        raise NotImplementedError

    def run(
        self,
        model: nn.Module,
        clean: CleanData,
        test: ImageData | None = None,
        attack: Attack | None = None,
    ) -> tuple[nn.Module, MitigationReport]:
        """Repair a copy of `model`; the evaluator (not the method) measures BA/ASR on `test` before and after."""
        before = evaluate(model, test, attack, device=self.device, seed=self.seed) if test is not None else None
        start = time.perf_counter()
        repaired, details = self.repair(copy.deepcopy(model), clean)
        seconds = time.perf_counter() - start
        after = evaluate(repaired, test, attack, device=self.device, seed=self.seed) if test is not None else None
        report = MitigationReport(
            method=self.name,
            seconds=seconds,
            seed=self.seed,
            settings=self.settings(),
            before=before,
            after=after,
            asr_known=attack is not None,
            details=details,
        )
        return repaired, report


@dataclass
class FineTuneRun:
    """One fine-tuning repair in progress, as `FineTuneMitigation.hooks` sees it: the model (already on
    `device`), the clean subset, the generator every random draw comes from, and `details`, where the
    method puts what its report should carry besides the loss history."""

    model: nn.Module
    data: ImageData
    device: torch.device
    generator: torch.Generator
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class FineTuneHooks:
    """What a method changes in the loop; None keeps the loop's default.

    objective(model, x, y) -> loss on an augmented clean batch (default: cross-entropy with the
    config's label smoothing); optimizer: any optimiser, stepped with a closure (default: SGD from
    the config); after_step(): called after every optimiser step.
    """

    objective: Objective | None = None
    optimizer: torch.optim.Optimizer | None = None
    after_step: Callable[[], None] | None = None


class FineTuneMitigation(Mitigation):
    """Template: fine-tune all weights on the clean images with one recipe.

    The defaults are BackdoorBench's FT recipe (``config/defense/ft/config.yaml``): 2500 clean images
    (5% of CIFAR-10), 100 epochs, batch 256, SGD lr 0.01, momentum 0.9, weight decay 5e-4, cosine
    annealing, random crop (+ flip where the data allows). `repair` runs the preamble, then
    `hooks(run)` once, then the loop; it reports {**run.details, history, clean_used}.
    """

    label: ClassVar[str] = "fine-tune"  # the progress bar's title (and the divergence error's)

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
        super().__init__(seed, device, quiet, budget, clean_samples)
        self.paper_epochs = int(epochs)
        self.config = self.recipe(epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, augment=augment)

    def recipe(self, epochs: int, **fields: Any) -> FineTuneConfig:
        """A `FineTuneConfig` for the paper's `epochs`, scaled by the budget; other fields as given."""
        return FineTuneConfig(epochs=self.scaled(epochs), **fields)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "paper_epochs": self.paper_epochs, **self.config.to_dict()}

    def hooks(self, run: FineTuneRun) -> FineTuneHooks:
        """The method's part, made once per repair just before the loop; work that must come first
        (a teacher to fine-tune, channels to prune) happens here. Default: plain fine-tuning."""
        return FineTuneHooks()

    def repair(self, model: nn.Module, clean: CleanData) -> tuple[nn.Module, dict[str, Any]]:
        data, dev = self.prepare(model, clean)
        run = FineTuneRun(model, data, dev, make_generator(self.seed))
        hooks = self.hooks(run)
        history = fine_tune(
            model,
            data,
            self.config,
            objective=hooks.objective,
            optimizer=hooks.optimizer,
            after_step=hooks.after_step,
            generator=run.generator,
            device=dev,
            quiet=self.quiet,
            description=self.label,
        )
        return model, {**run.details, "history": history, "clean_used": len(data)}
