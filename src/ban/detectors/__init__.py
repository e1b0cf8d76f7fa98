"""Backdoor detectors, all returning a `Verdict`, registered in one `Registry`."""

from __future__ import annotations

from typing import Any

from ban.detectors.ban_detector import BAN
from ban.detectors.base import Detector, Verdict
from ban.detectors.btidbf import BTIDBF, BTIDBFStar
from ban.detectors.featurere import FeatureRE
from ban.detectors.neural_cleanse import NeuralCleanse
from ban.detectors.tabor import Tabor
from ban.detectors.unicorn import Unicorn
from ban.registry import Registry

DETECTORS: Registry[type[Detector]] = Registry("detector")
DETECTORS.register("ban", BAN)
DETECTORS.register("nc", NeuralCleanse)
DETECTORS.register("tabor", Tabor)
DETECTORS.register("featurere", FeatureRE)
DETECTORS.register("unicorn", Unicorn)
DETECTORS.register("btidbf", BTIDBF)
DETECTORS.register("btidbf-star", BTIDBFStar)


def list_detectors() -> list[str]:
    return DETECTORS.list()


def create_detector(name: str, **settings: Any) -> Detector:
    """Build the detector `name` spells; an unknown name or a refused setting is a BanError."""
    return DETECTORS.create(name, **settings)


__all__ = ["DETECTORS", "Detector", "Verdict", "create_detector", "list_detectors"]
