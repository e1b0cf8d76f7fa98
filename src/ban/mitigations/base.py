"""The `Mitigation` interface and the `MitigationReport` every method returns."""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from torch import nn

from ban.clean_data import CleanData
from ban.data.dataset import ImageData
from ban.evaluate import EvalReport, evaluate
from ban.utils import versions

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


class Mitigation:
    """A backdoor removal method: settings in `__init__`, work in `repair(model, clean)`.

    `repair` gets a copy of the model and the defender's clean data, never the attack, and
    returns the repaired model plus method-specific details. `run` wraps it with evaluation.
    """

    name: ClassVar[str] = "mitigation"

    def __init__(self, seed: int = 0, device: str = "auto", quiet: bool = True) -> None:
        self.seed = seed
        self.device = device
        self.quiet = quiet

    def settings(self) -> dict[str, Any]:
        return {}

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
