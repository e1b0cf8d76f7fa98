"""Neural Cleanse (Wang et al., S&P 2019): per-class trigger reverse-engineering + MAD outlier rule."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from ban.blocks.trigger_search import ExtraLoss, SearchConfig, search_each
from ban.clean_data import CleanData
from ban.detectors.base import Detector, DetectorSettings, Verdict
from ban.detectors.outlier import small_norm_outliers
from ban.utils import make_generator


@dataclass(frozen=True)
class NeuralCleanseSettings(DetectorSettings):
    """Neural Cleanse's settings (official code, see `SearchConfig`); the budget scales the search's epochs.

    The verdict records the whole search configuration (`search_config`) rather than the keywords.
    """

    n_samples: int = 1000
    epochs: int = 1000
    batch_size: int = 32
    lr: float = 0.1
    init_cost: float = 1e-3
    cost_from_zero: bool = True
    success_threshold: float = 0.99
    patience: int = 5
    early_stop_patience: int = 25
    threshold: float = 2.0
    batched: bool = True

    def search_config(self) -> SearchConfig:
        """The trigger search these settings run, its epochs scaled by the budget."""
        return SearchConfig(
            epochs=self.scaled(self.epochs),
            batch_size=self.batch_size,
            lr=self.lr,
            init_cost=self.init_cost,
            cost_starts_at_zero=self.cost_from_zero,
            success_threshold=self.success_threshold,
            patience=self.patience,
            early_stop_patience=self.early_stop_patience,
        )

    def record(self) -> dict[str, Any]:
        return {
            "budget": self.budget,
            **self.search_config().to_dict(),
            "n_samples": self.n_samples,
            "threshold": self.threshold,
            "batched": self.batched,
        }


class NeuralCleanse(Detector):
    """For every class t, the smallest mask (L1 norm) that sends clean images to t; a backdoor target
    needs an abnormally small one.

    Decision (official `mad_outlier_detection.py`): anomaly index = (median − min L1) / (1.4826·MAD);
    backdoored iff it exceeds `threshold` (2); target = the smallest-norm class among the flagged
    (small-side) outliers. Score = that anomaly index. Defaults follow the official code
    (1000 clean images, batch 32, up to 1000 epochs with early stopping; see `SearchConfig`).
    `batched=False` runs the K searches one after another instead of in one batched tensor.
    The verdict's artifacts carry the figures' images, `triggers`: `masks` (K×1×H×W),
    `patterns` (K×C×H×W) and `triggers` (m⊙p).
    """

    name: ClassVar[str] = "nc"
    Settings: ClassVar[type[DetectorSettings]] = NeuralCleanseSettings
    #: cpu: smaller samples and networks for CPU runs (benchmarks/detectors.py; the budget scales epochs on top)
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"paper": {}, "cpu": {"n_samples": 100, "batch_size": 32}}
    config: NeuralCleanseSettings

    def extra_loss(self) -> ExtraLoss | None:
        """Terms added to CE + cost·‖m‖₁ (none for NC; Tabor's regularisers)."""
        return None

    def detect(self, model: nn.Module, clean: CleanData) -> Verdict:
        start = time.perf_counter()
        work, dev = self.prepare(model, clean)
        s = self.config
        data = clean.sample(s.n_samples, seed=self.seed)
        result = search_each(
            work,
            data.x.to(dev),
            data.y.to(dev),
            clean.num_classes,
            s.search_config(),
            make_generator(self.seed),
            self.extra_loss(),
            batched=s.batched,
            quiet=self.quiet,
            out_of_time=self.deadline.expired,
            description=self.name,
            snapshot=self.snapshot("trigger_search"),
        )
        start -= result.seconds_before  # a search continued from a snapshot counts its earlier sittings
        triggers = {"masks": result.masks, "patterns": result.patterns, "triggers": result.masks * result.patterns}
        mad = small_norm_outliers(result.norms, s.threshold)
        target = mad.flagged[0] if mad.flagged else None
        details = {
            "norms": result.norms,
            "anomaly_index": mad.anomaly_index,
            "flagged": mad.flagged,
            "median": mad.median,
            "mad": mad.mad,
            "smallest_norm_class": int(min(range(len(result.norms)), key=result.norms.__getitem__)),
            "reached_success": result.found,
            "epochs": result.epochs,
            "attack_success": result.success,
            "n_images": len(data),
        }
        if result.resumed_from_epoch:
            details["resumed"] = {"from_epoch": result.resumed_from_epoch, "seconds_before": result.seconds_before}
        return self.verdict(bool(mad.flagged), target, mad.score, s.threshold, start, details, {"triggers": triggers})
