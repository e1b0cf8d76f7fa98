"""A method setting that means nothing (NaN, a fraction of an epoch, "no" for a bool, a zero batch) is one
BanError naming it, for detectors and mitigations alike (`ban.setting_values`), never bent into a value."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ban.detectors import create_detector
from ban.errors import BanError
from ban.mitigations import create_mitigation

CASES: list[tuple[Callable[..., Any], str, dict[str, Any], str]] = [
    # each of these was accepted before (2026-12-05) and failed later, or silently ran something else
    (create_mitigation, "ft", {"augment": "no"}, "setting augment must be true or false (True by default), got 'no'"),
    (create_mitigation, "ft", {"epochs": 1.5}, "setting epochs must be a whole number"),
    (create_mitigation, "anp", {"eps": "nan"}, "setting eps must be a finite number"),
    (create_mitigation, "nad", {"beta": float("inf")}, "setting beta must be a finite number (5000.0 by default)"),
    (create_detector, "tabor", {"batch_size": 0}, "setting batch_size must be at least 1 (32 by default), got 0"),
    (create_detector, "btidbf", {"epochs": -1}, "setting epochs must be at least 1 (30 by default), got -1"),
    (create_detector, "nc", {"lr": 0}, "setting lr is a learning rate: > 0 (0.1 by default), got 0.0"),
    (create_detector, "ban", {"steps": 2.5}, "setting steps must be a whole number (30 by default), got 2.5"),
    (create_detector, "ban", {"mask_batches": -1}, "setting mask_batches must be at least 0 (unset by default)"),
]


@pytest.mark.parametrize(("create", "name", "settings", "message"), CASES)
def test_a_meaningless_setting_is_refused(
    create: Callable[..., Any], name: str, settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(BanError) as err:
        create(name, **settings)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_meaningful_edge_values_are_kept() -> None:
    """0 where it means something (BAN's mask_batches: one pass over the images; eps 0: no noise, the mask
    alone), a whole float where a whole number is asked (as YAML and JSON give 3.0), a negative threshold."""
    ban = create_detector("ban", mask_batches=0, eps=0, steps=3.0)
    assert (ban.config.mask_batches, ban.config.eps, ban.config.steps) == (0, 0.0, 3)
    assert isinstance(ban.config.steps, int)
    assert create_detector("featurere", threshold=-0.75).config.threshold == -0.75
    ft = create_mitigation("ft", augment=False, epochs=2.0).config
    assert ft.epochs == 2 and isinstance(ft.epochs, int) and ft.augment is False
