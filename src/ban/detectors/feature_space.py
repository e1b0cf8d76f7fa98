"""The template of the feature-space inversion detectors (FeatureRE, Unicorn): their shared settings
and their detect(): clean sample → per-target data → `invert` (the method's own part) → FeatureRE's
mixed-value rule → Verdict.

The long loops of `invert` keep their state between sittings (`loop`): a detection stopped part-way
continues where it stopped, with exactly the verdict of one that never stopped, and its verdict counts
the earlier sittings' seconds and records where it continued (`details["resumed"]`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from ban.blocks.feature_inversion import TargetData, lowest_mixed_value
from ban.blocks.snapshot import Resumable, fingerprint
from ban.clean_data import CleanData
from ban.detectors.base import Detector, DetectorSettings, Verdict


@dataclass(frozen=True)
class FeatureSpaceSettings(DetectorSettings):
    """What FeatureRE and Unicorn share (both official config.py files): 100 clean images, UNets of
    32 filters and 4 blocks at Adam 1e-3, masks at Adam 0.1, std bound 1, ASR bound 0.9, and the
    decision threshold −0.75 on the mixed value. `batched`: all targets in one grouped run."""

    n_samples: int = 100
    lr: float = 1e-3
    mask_lr: float = 0.1
    filters: int = 32
    blocks: int = 4
    std_bound: float = 1.0
    asr_bound: float = 0.9
    threshold: float = -0.75
    batched: bool = True


Inversion = tuple[list[float], list[dict[str, float]], dict[str, Tensor], dict[str, Any]]


class FeatureSpaceDetector(Detector):
    """A feature-space inversion detector: subclasses implement `invert` and declare their settings."""

    config: FeatureSpaceSettings
    #: seconds between two snapshots of a loop (0: after every epoch)
    snapshot_every: float = 60.0

    def __init__(self, seed: int = 0, device: str = "auto", quiet: bool = True, **settings: Any) -> None:
        super().__init__(seed, device, quiet, **settings)
        self.loops: list[Resumable] = []  # this detection's loops, in the order they ran

    def invert(self, model: nn.Module, data: TargetData, num_classes: int) -> Inversion:
        """Invert every target: (mixed value per target, its stats, the figures' images, more details)."""
        raise NotImplementedError

    def loop(self, name: str, model: nn.Module, data: TargetData, targets: list[int], keep: bool = True) -> Resumable:
        """The loop `name` of this detection, its state kept in the snapshot `DETECTOR_NAME` (none when not
        `keep`, or without a folder, or for a capped run) under a fingerprint of the seed, the settings,
        `targets`, the data and the model's weights: a snapshot of anything else is not resumed. detect()
        reports the loops that resumed and clears their snapshots when the detection has finished."""
        path = self.snapshot(name) if keep else None
        key = ""
        if path is not None:
            key = fingerprint(self.seed, self.settings(), name, targets, data.x, data.y, *model.state_dict().values())
        loop = Resumable(name, path, key, self.snapshot_every)
        self.loops.append(loop)
        return loop

    def detect(self, model: nn.Module, clean: CleanData) -> Verdict:
        start = time.perf_counter()
        work, dev = self.prepare(model, clean)
        sample = clean.sample(self.config.n_samples, seed=self.seed)
        data = TargetData.build(work, sample.x.to(dev), sample.y.to(dev), clean.num_classes)
        self.loops = []
        values, stats, triggers, more = self.invert(work, data, clean.num_classes)
        flagged, target, score = lowest_mixed_value(values, self.config.threshold)
        details = {"mixed_value": values, "per_target": stats, **more, "n_images": len(sample)}
        resumed = [loop for loop in self.loops if loop.first]
        if resumed:  # continued from snapshots: the loop it stopped in last, and the earlier sittings' seconds
            before = sum(loop.snapshot.before for loop in resumed)
            start -= before
            details["resumed"] = {"stage": resumed[-1].name, "from_epoch": resumed[-1].first, "seconds_before": before}
        for loop in self.loops:
            loop.clear()
        return self.verdict(flagged, target, score, -self.config.threshold, start, details, {"triggers": triggers})
