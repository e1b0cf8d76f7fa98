"""Backdoor detectors, all returning a `Verdict`, registered in one `Registry`."""

from __future__ import annotations

from ban.detectors.ban_detector import BAN
from ban.detectors.base import Detector, Verdict
from ban.detectors.btidbf import BTIDBF, BTIDBFStar
from ban.detectors.featurere import FeatureRE
from ban.detectors.neural_cleanse import NeuralCleanse
from ban.detectors.tabor import Tabor
from ban.detectors.unicorn import Unicorn
from ban.registry import Registry

DETECTORS: Registry[type[Detector]] = Registry("detector")
DETECTORS.register_named(BAN, NeuralCleanse, Tabor, FeatureRE, Unicorn, BTIDBF, BTIDBFStar)
list_detectors = DETECTORS.list
create_detector = DETECTORS.create  # an unknown name or a refused setting is a BanError


__all__ = ["DETECTORS", "Detector", "Verdict", "create_detector", "list_detectors"]
