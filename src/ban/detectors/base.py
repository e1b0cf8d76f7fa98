"""The `Verdict` every detector returns, and the `Detector` interface."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from torch import nn

from ban.clean_data import CleanData
from ban.utils import atomic_write_text, versions


@dataclass
class Verdict:
    """A detector's answer about one model.

    backdoored: flagged or not; target: the class it names (None when it names none);
    score: continuous, higher = more suspicious, comparable across models of one detector (AUROC);
    threshold: the score above which the model is flagged; seconds: wall time of detection;
    settings: every setting used; details: detector-specific evidence (histograms, norms...);
    artifacts: tensors of this run for figures (BAN: the mask, the final noise and the BatchNorm
    buffers it predicted with), kept in memory only: never in to_dict() or the JSON.
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


class Detector:
    """A backdoor detector: settings in `__init__`, work in `detect(model, clean)`.

    `detect` receives a bare model and the defender's clean data, never the attack.
    """

    name: ClassVar[str] = "detector"

    def __init__(self, seed: int = 0, device: str = "auto", quiet: bool = True) -> None:
        self.seed = seed
        self.device = device
        self.quiet = quiet

    def settings(self) -> dict[str, Any]:
        """Every setting that shapes the verdict (recorded in it)."""
        return {}

    def detect(self, model: nn.Module, clean: CleanData) -> Verdict:
        raise NotImplementedError
