"""The two bases of every mitigation and the `MitigationReport` each returns.

- `Mitigation` owns what every method has: its settings (`params`, an instance of the method's
  `Settings` dataclass, `ban.mitigations.settings`; `PRESETS`), the settings a report records, and
  the preamble of a repair (`prepare`: the clean subset, the model on the device, a check that the
  model fits the data).
- `FineTuneMitigation` is the template of the methods that fine-tune on the clean images (FT,
  FT-SAM, Fine-Pruning, NAD, BAN): it owns the recipe (`config`) and the call of the one loop
  (`ban.mitigations.finetune_loop.fine_tune`); a method supplies only what differs, through
  `hooks(run)`: the objective, the optimiser and an after-step call.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from ban.clean_data import CleanData
from ban.data.dataset import ImageData
from ban.errors import BanError
from ban.evaluate import EvalReport, evaluate
from ban.mitigations.finetune_loop import FineTuneConfig, Objective, fine_tune
from ban.mitigations.settings import MitigationSettings
from ban.model_fit import check_model_fits
from ban.registry import preset_values
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


def clean_subset(clean: CleanData, n: int, who: str, seed: int) -> ImageData:
    """A class-balanced sample of `n` clean images; BanError naming `who` when fewer are available."""
    clean.require(n, who)
    return clean.sample(n, seed)


class Mitigation:
    """A backdoor removal method: settings in `__init__`, work in `repair(model, clean)`.

    `repair` gets a copy of the model and the defender's clean data, never the attack, and
    returns the repaired model plus method-specific details. `run` wraps it with evaluation.
    A method's keyword settings are the fields of its `Settings` dataclass (validated there);
    `preset` names one of its `PRESETS` (a set of settings; explicit ones override it).
    """

    name: ClassVar[str] = "mitigation"
    Settings: ClassVar[type[MitigationSettings]] = MitigationSettings
    #: named sets of settings (`create_mitigation(name, preset="cpu")`); "paper" is the papers' defaults
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"paper": {}}
    params: MitigationSettings

    def __init__(self, *, preset: str = "paper", **settings: Any) -> None:
        values = preset_values(f"mitigation '{self.name}'", self.PRESETS, preset)
        unknown = sorted(set(settings) - set(self.Settings.names()))
        if unknown:
            known = ", ".join(self.Settings.names())
            raise BanError(f"mitigation '{self.name}' has no setting {', '.join(unknown)}; its settings: {known}")
        self.params = self.Settings(**{**values, **settings})

    @property
    def seed(self) -> int:
        return self.params.seed

    @property
    def quiet(self) -> bool:
        return self.params.quiet

    @property
    def clean_samples(self) -> int:
        return self.params.clean_samples

    def settings(self) -> dict[str, Any]:
        """What the report records (the settings dataclass's `recorded`; seed, device and quiet apart)."""
        return self.params.recorded()

    def prepare(self, model: nn.Module, clean: CleanData) -> tuple[ImageData, torch.device]:
        """The preamble of every repair: `clean_samples` clean images, `model` moved to the device, and a
        BanError unless the model takes those images and has one logit per class."""
        data = clean_subset(clean, self.clean_samples, f"mitigation '{self.name}'", self.seed)
        dev = resolve_device(self.params.device)
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
        before = evaluate(model, test, attack, device=self.params.device, seed=self.seed) if test is not None else None
        start = time.perf_counter()
        repaired, details = self.repair(copy.deepcopy(model), clean)
        seconds = time.perf_counter() - start
        after = (
            evaluate(repaired, test, attack, device=self.params.device, seed=self.seed) if test is not None else None
        )
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


@dataclass(frozen=True, kw_only=True)
class FineTuneSettings(MitigationSettings):
    """BackdoorBench's FT recipe (``config/defense/ft/config.yaml``): 100 epochs, batch 256, SGD lr
    0.01, weight decay 5e-4, crop (+ flip) augmentation. A method's field that names a
    `FineTuneConfig` field (``schedule``, ``crop_pad``, ``label_smoothing``, ...) goes into its recipe."""

    augment: bool = True
    epochs: int = 100
    batch_size: int = 256
    lr: float = 0.01
    weight_decay: float = 5e-4

    scaled_fields: ClassVar[tuple[str, ...]] = ("epochs",)
    positive: ClassVar[tuple[str, ...]] = ("clean_samples", "epochs", "batch_size", "lr")


class FineTuneMitigation(Mitigation):
    """Template: fine-tune all weights on the clean images with one recipe.

    The defaults are BackdoorBench's FT recipe (`FineTuneSettings`): 2500 clean images (5% of
    CIFAR-10), 100 epochs, batch 256, SGD lr 0.01, momentum 0.9, weight decay 5e-4, cosine
    annealing, random crop (+ flip where the data allows). `repair` runs the preamble, then
    `hooks(run)` once, then the loop; it reports {**run.details, history, clean_used}.
    """

    label: ClassVar[str] = "fine-tune"  # the progress bar's title (and the divergence error's)
    Settings: ClassVar[type[MitigationSettings]] = FineTuneSettings
    params: FineTuneSettings

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.config = self.recipe()

    def recipe(self) -> FineTuneConfig:
        """The loop's recipe: every setting that names a `FineTuneConfig` field, epochs scaled by the budget."""
        p = self.params
        loop = {f.name for f in fields(FineTuneConfig)}
        given = {name: getattr(p, name) for name in p.names() if name in loop}
        return FineTuneConfig(**{**given, "epochs": p.scaled(p.epochs)})

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), **self.config.to_dict()}

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
