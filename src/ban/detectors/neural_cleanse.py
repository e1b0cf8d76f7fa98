"""Neural Cleanse (Wang et al., S&P 2019): per-class trigger reverse-engineering + MAD outlier rule."""

from __future__ import annotations

import time
from typing import Any, ClassVar

from torch import nn

from ban.clean_data import CleanData
from ban.detectors.base import Verdict
from ban.detectors.baseline import BaselineDetector
from ban.detectors.outlier import small_norm_outliers
from ban.detectors.trigger_search import ExtraLoss, SearchConfig, SearchResult, search_each
from ban.utils import make_generator


class NeuralCleanse(BaselineDetector):
    """For every class t, the smallest mask (L1 norm) that sends clean images to t; a backdoor target
    needs an abnormally small one.

    Decision (official `mad_outlier_detection.py`): anomaly index = (median − min L1) / (1.4826·MAD);
    backdoored iff it exceeds `threshold` (2); target = the smallest-norm class among the flagged
    (small-side) outliers. Score = that anomaly index. Defaults follow the official code
    (1000 clean images, batch 32, up to 1000 epochs with early stopping; see `SearchConfig`).
    `batched=False` runs the K searches one after another instead of in one batched tensor.
    Figures: `masks` (K×1×H×W), `patterns` (K×C×H×W), `triggers` (m⊙p).
    """

    name: ClassVar[str] = "nc"

    def __init__(
        self,
        seed: int = 0,
        device: str = "auto",
        quiet: bool = True,
        budget: float = 1.0,
        n_samples: int = 1000,
        epochs: int = 1000,
        batch_size: int = 32,
        lr: float = 0.1,
        init_cost: float = 1e-3,
        cost_from_zero: bool = True,
        success_threshold: float = 0.99,
        patience: int = 5,
        early_stop_patience: int = 25,
        threshold: float = 2.0,
        batched: bool = True,
    ) -> None:
        super().__init__(seed=seed, device=device, quiet=quiet, budget=budget)
        self.n_samples = int(n_samples)
        self.search = SearchConfig(
            epochs=int(epochs),
            batch_size=int(batch_size),
            lr=float(lr),
            init_cost=float(init_cost),
            cost_starts_at_zero=bool(cost_from_zero),
            success_threshold=float(success_threshold),
            patience=int(patience),
            early_stop_patience=int(early_stop_patience),
        )
        self.threshold = float(threshold)
        self.batched = bool(batched)

    def settings(self) -> dict[str, Any]:
        search = self.search.to_dict()
        search["epochs"] = self.scaled(self.search.epochs)
        return {
            **super().settings(),
            **search,
            "n_samples": self.n_samples,
            "threshold": self.threshold,
            "batched": self.batched,
        }

    def extra_loss(self) -> ExtraLoss | None:
        """Terms added to CE + cost·‖m‖₁ (none for NC; Tabor's regularisers)."""
        return None

    def detect(self, model: nn.Module, clean: CleanData) -> Verdict:
        start = time.perf_counter()
        work, dev = self.prepare(model, clean)
        data = clean.sample(self.n_samples, seed=self.seed)
        cfg = SearchConfig(**{**self.search.to_dict(), "epochs": self.scaled(self.search.epochs)})
        result = search_each(
            work,
            data.x.to(dev),
            data.y.to(dev),
            clean.num_classes,
            cfg,
            make_generator(self.seed),
            self.extra_loss(),
            batched=self.batched,
            quiet=self.quiet,
            description=self.name,
        )
        self._keep_figures(result)
        mad = small_norm_outliers(result.norms, self.threshold)
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
        return self.verdict(bool(mad.flagged), target, mad.score, self.threshold, start, details)

    def _keep_figures(self, result: SearchResult) -> None:
        self.figures = {
            "masks": result.masks,
            "patterns": result.patterns,
            "triggers": result.masks * result.patterns,
        }
        self.last_search = result
