"""Backdoor detectors, all returning a `Verdict`, registered in one dict."""

from __future__ import annotations

from typing import Any

from ban.detectors.ban_detector import BAN
from ban.detectors.base import Detector, Verdict
from ban.detectors.btidbf import BTIDBF, BTIDBFStar
from ban.detectors.featurere import FeatureRE
from ban.detectors.neural_cleanse import NeuralCleanse
from ban.detectors.tabor import Tabor
from ban.detectors.unicorn import Unicorn
from ban.errors import BanError

DETECTORS: dict[str, type[Detector]] = {}
DETECTORS["ban"] = BAN
DETECTORS.update({"nc": NeuralCleanse, "tabor": Tabor, "featurere": FeatureRE, "unicorn": Unicorn})
DETECTORS.update({"btidbf": BTIDBF, "btidbf-star": BTIDBFStar})


def list_detectors() -> list[str]:
    return sorted(DETECTORS)


def create_detector(name: str, **settings: Any) -> Detector:
    key = name.lower().replace("_", "-")
    if key not in DETECTORS:
        raise BanError(f"unknown detector '{name}'; choose one of {', '.join(list_detectors())}")
    try:
        return DETECTORS[key](**settings)
    except TypeError as exc:
        raise BanError(f"bad settings for detector '{key}': {exc}") from exc


__all__ = ["DETECTORS", "Detector", "Verdict", "create_detector", "list_detectors"]
