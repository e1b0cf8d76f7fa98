"""The `Verdict` every detector returns, and the `Detector` template every detector (BAN and each baseline) fills.

`Detector` owns what every method shares: the run settings (seed, device, quiet), the typed and
frozen method settings (`DetectorSettings`, one subclass per detector, validated when built), the
compute budget (`scaled` applies it where a count is used; the verdict records the scaled counts
and the budget once), the input checks and the "model fits the data" check (`prepare`), and the
Verdict (`verdict`). The threat model is in the types: `detect` takes a bare `nn.Module` and the
defender's `CleanData`; a `Checkpoint` (which may carry the attack) is refused with a clear error.
What a run produces for figures (BAN's mask and noise, a baseline's inverted triggers) travels with
its Verdict, in `Verdict.artifacts`, never as an attribute of the detector.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from ban.clean_data import CleanData
from ban.deadline import Deadline
from ban.errors import BanError
from ban.model_fit import check_model_fits, clean_accuracy
from ban.registry import preset_values
from ban.setting_values import convert_setting, kind_of
from ban.utils import atomic_write_text, resolve_device, versions


@dataclass
class Verdict:
    """A detector's answer about one model.

    backdoored: flagged or not; target: the class it names (None when it names none);
    score: continuous, higher = more suspicious, comparable across models of one detector (AUROC);
    threshold: the score above which the model is flagged; seconds: wall time of detection;
    settings: every setting used; details: detector-specific evidence (histograms, norms...);
    artifacts: tensors of this run for figures (BAN: the mask, the final noise and the BatchNorm
    buffers it predicted with; a baseline: its inverted triggers, `triggers`, image batches by
    figure name), kept in memory only: never in to_dict() or the JSON.
    """

    detector: str
    backdoored: bool
    target: int | None
    score: float
    threshold: float
    seconds: float
    seed: int
    settings: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=versions)
    artifacts: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(replace(self, artifacts={}))
        del d["artifacts"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Verdict:
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def save(self, path: str | Path) -> None:
        """Write the verdict as JSON, atomically."""
        atomic_write_text(path, self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Verdict:
        return cls.from_dict(json.loads(Path(path).read_text()))


def check_inputs(model: object, clean: object, who: str) -> None:
    """A bare nn.Module and CleanData, or a clear error (detectors never see the attack)."""
    from ban.checkpoint import Checkpoint

    if isinstance(model, Checkpoint):
        raise BanError(
            f"{who} takes a bare model, not a Checkpoint (detectors never see the attack); pass checkpoint.model"
        )
    if not isinstance(model, nn.Module):
        raise BanError(f"{who} needs a torch nn.Module as the model, got {type(model).__name__}")
    if not isinstance(clean, CleanData):
        raise BanError(
            f"{who} needs ban.clean_data.CleanData, got {type(clean).__name__}; wrap images with CleanData.from_images"
        )


KINDS = (bool, int, float)  # the setting types converted on the way in (`ban.setting_values`)


@dataclass(frozen=True)
class DetectorSettings:
    """The settings of a detector that shape its verdict; one frozen subclass per detector.

    budget: multiplies every epoch/step count named in `budgeted` (1.0 = the paper's/code's
    defaults; 0.1 = a tenth, for CPU runs). `clean_samples` is accepted for `n_samples` (the
    verdict records `n_samples`). Values are coerced to the type of their default
    (an int default takes int(value), a float default float(value)), as the CLI's `--param` and
    bench specs pass numbers as they parse them; `validate` raises a BanError for a bad value.
    """

    budgeted: ClassVar[tuple[str, ...]] = ()
    #: other keywords for a setting: `clean_samples` (the mitigations' name) for `n_samples`
    aliases: ClassVar[dict[str, str]] = {"clean_samples": "n_samples"}
    #: whole-number settings that may be 0; every other one is a count (epochs, steps, images, a batch size,
    #: filters, a patience) and must be at least 1
    may_be_zero: ClassVar[tuple[str, ...]] = ()

    budget: float = 1.0
    #: wall-clock seconds a detection may take (None: no limit); a run that reaches it stops its
    #: search and decides from what it has, and the verdict records that it was cut
    time_limit: float | None = None

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value, default = getattr(self, f.name), f.default
            kind = kind_of(str(f.type))
            if value is None or kind not in KINDS:
                continue
            value = convert_setting(f.name, kind, value, default)
            object.__setattr__(self, f.name, value)
            least, shown = (0 if f.name in self.may_be_zero else 1), "unset" if default is None else repr(default)
            if kind is int and value < least:
                raise BanError(f"setting {f.name} must be at least {least} ({shown} by default), got {value}")
            if kind is float and (f.name == "lr" or f.name.endswith("_lr")) and not value > 0:
                raise BanError(f"setting {f.name} is a learning rate: > 0 ({shown} by default), got {value}")
        if not self.budget > 0 or not math.isfinite(self.budget):
            raise BanError(f"budget must be positive (1.0 = the method's defaults), got {self.budget}")
        if self.time_limit is not None:
            object.__setattr__(self, "time_limit", float(self.time_limit))
            if not self.time_limit > 0 or not math.isfinite(self.time_limit):
                raise BanError(f"time_limit is a positive number of seconds per model, got {self.time_limit}")
        self.validate()

    def validate(self) -> None:
        """Raise a BanError naming the first bad setting (none here beyond the budget)."""

    def scaled(self, count: int) -> int:
        """`count` epochs/steps scaled by the budget (at least 1)."""
        return max(1, int(round(count * self.budget)))

    def record(self) -> dict[str, Any]:
        """The method's settings as the verdict records them, the budgeted counts as scaled
        (`Detector.settings` adds the time limit when one is set)."""
        recorded = {**asdict(self), **{k: self.scaled(getattr(self, k)) for k in self.budgeted}}
        del recorded["time_limit"]
        return recorded

    @classmethod
    def build(cls, who: str, values: dict[str, Any]) -> DetectorSettings:
        """The settings from keyword values; an unknown keyword is a BanError listing the known ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        for alias, name in cls.aliases.items():
            if alias in values and name in known:
                if name in values:
                    raise BanError(f"{who} takes {alias} or {name} (the same setting), not both")
                values = {**{k: v for k, v in values.items() if k != alias}, name: values[alias]}
        unknown = sorted(set(values) - known)
        if unknown:
            raise BanError(f"unknown setting '{unknown[0]}' for {who}; choose from {', '.join(sorted(known))}")
        return cls(**values)


class Detector:
    """A backdoor detector: settings in `__init__`, work in `detect(model, clean)`.

    `detect` receives a bare model and the defender's clean data, never the attack. A detector
    declares its settings class (`Settings`); `config` holds the validated settings.
    """

    name: ClassVar[str] = "detector"
    Settings: ClassVar[type[DetectorSettings]] = DetectorSettings
    #: named sets of settings (`create_detector(name, preset="cpu")`, `--param preset=cpu`); explicit
    #: settings override them; "paper" is the papers' and official code's defaults
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"paper": {}}

    def __init__(self, seed: int = 0, device: str = "auto", quiet: bool = True, **settings: Any) -> None:
        self.seed = seed
        self.device = device
        self.quiet = quiet
        self.preset = str(settings.get("preset", "paper"))
        values = preset_values(f"detector '{self.name}'", self.PRESETS, self.preset)
        if "preset" not in {f.name for f in dataclasses.fields(self.Settings)}:
            settings = {k: v for k, v in settings.items() if k != "preset"}
        self.config = self.Settings.build(f"detector '{self.name}'", {**values, **settings})
        self.deadline = Deadline(None)
        self.clean_accuracy: float | None = None  # set by prepare()
        #: a folder where a long search keeps its state between sittings, so that a run stopped part-way
        #: continues (set by the caller, e.g. the benchmark; not a setting: it does not change the verdict).
        #: Used by runs without a time_limit only: an allowance is one sitting's wall clock.
        self.snapshot_dir: Path | None = None

    def snapshot(self, name: str) -> Path | None:
        """Where this run keeps the state of its search `name` (`DETECTOR_NAME.pt`: detectors sharing a folder
        never meet each other's snapshots), or None (no folder, or a capped run)."""
        if self.snapshot_dir is None or self.config.time_limit is not None:
            return None
        return Path(self.snapshot_dir) / f"{self.name}_{name}.pt"

    @property
    def budget(self) -> float:
        return self.config.budget

    def scaled(self, count: int) -> int:
        """`count` epochs/steps scaled by the budget (at least 1)."""
        return self.config.scaled(count)

    def settings(self) -> dict[str, Any]:
        """Every setting that shapes the verdict (recorded in it)."""
        recorded = self.config.record()
        if self.preset != "paper":  # a settings field of its own where the method has one (BAN)
            recorded.setdefault("preset", self.preset)
        if self.config.time_limit is not None:
            recorded["time_limit"] = self.config.time_limit
        return recorded

    def min_clean_images(self, num_classes: int) -> int:
        """The fewest clean images a detection of a `num_classes`-class model accepts (a bench checks its
        spec's count against it before training any model)."""
        return 1

    def prepare(self, model: nn.Module, clean: CleanData, frozen_copy: bool = True) -> tuple[nn.Module, torch.device]:
        """Check the inputs and that the model fits the data; return the model to work on and the device.

        frozen_copy: a frozen eval-mode copy of `model` on the device (the caller's model untouched);
        otherwise `model` itself, moved to the device (a detector that restores what it changes).
        """
        self.deadline = Deadline(self.config.time_limit)  # the allowance runs from here
        check_inputs(model, clean, f"detector '{self.name}'")
        if len(clean) == 0:
            raise BanError(f"detector '{self.name}' needs at least one clean image, got none")
        dev = resolve_device(self.device)
        work = copy.deepcopy(model).to(dev).eval() if frozen_copy else model.to(dev)
        if frozen_copy:
            work.requires_grad_(False)
        check_model_fits(work, clean, dev)
        self.clean_accuracy = clean_accuracy(work, clean, dev)  # recorded in the verdict; a low one is warned of
        return work, dev

    def verdict(
        self,
        backdoored: bool,
        target: int | None,
        score: float,
        threshold: float,
        start: float,
        details: dict[str, Any],
        artifacts: dict[str, Any] | None = None,
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
            details={
                "clean_accuracy": self.clean_accuracy,
                **details,
                **({} if self.config.time_limit is None else {"cut_by_time_limit": self.deadline.cut}),
            },
            artifacts=artifacts or {},
        )

    def detect(self, model: nn.Module, clean: CleanData) -> Verdict:
        raise NotImplementedError
