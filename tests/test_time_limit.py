"""The baselines' wall-clock allowance (`time_limit`, the equal-time comparison): bad values are one
line, a run that reaches it stops its search early, decides from what it has and says it was cut."""

from __future__ import annotations

import math

import pytest

from ban.bench.spec import parse_spec
from ban.clean_data import CleanData
from ban.deadline import Deadline
from ban.detectors import create_detector
from ban.errors import BanError


@pytest.fixture(scope="module")
def clean(zoo) -> CleanData:
    return CleanData.from_images(zoo.defender)


@pytest.mark.parametrize("value", [0, -1.0, math.nan, math.inf])
def test_a_bad_time_limit_is_one_line(value: float) -> None:
    with pytest.raises(BanError) as err:
        create_detector("nc", time_limit=value)
    assert "time_limit" in str(err.value) and "\n" not in str(err.value)


def test_ban_refuses_a_time_limit() -> None:
    with pytest.raises(BanError, match="baseline"):
        create_detector("ban", time_limit=10)


def test_a_spec_with_a_bad_time_limit_is_refused() -> None:
    raw = {
        "name": "t",
        "data": {"dataset": "fashion-mnist"},
        "architectures": [{"arch": "small_cnn"}],
        "attacks": [{"name": "badnets", "targets": [1]}],
        "detectors": [{"name": "nc", "settings": {"time_limit": 0}}],
    }
    with pytest.raises(BanError, match="time_limit"):
        parse_spec(raw)


def test_deadline() -> None:
    never = Deadline(None)
    assert not never.expired() and not never.cut
    spent = Deadline(1e-9)
    assert spent.expired() and spent.cut and spent.expired()


def test_nc_stops_at_its_allowance_and_says_so(zoo, clean) -> None:
    model = zoo.get("badnets").model
    settings = {"n_samples": 64, "batch_size": 32, "epochs": 12}
    full = create_detector("nc", seed=0, device="cpu", **settings).detect(model, clean)
    assert "cut_by_time_limit" not in full.details and "time_limit" not in full.settings
    limit = full.seconds / 4
    cut = create_detector("nc", seed=0, device="cpu", time_limit=limit, **settings).detect(model, clean)
    assert cut.details["cut_by_time_limit"] is True
    assert cut.settings["time_limit"] == pytest.approx(limit)
    # the search ran fewer epochs than the uncapped one, and the verdict is complete
    assert max(cut.details["epochs"]) < max(full.details["epochs"])
    assert len(cut.details["norms"]) == 10 and cut.score == cut.score


def test_an_allowance_never_reached_changes_nothing(zoo, clean) -> None:
    model = zoo.get("badnets").model
    settings = {"n_samples": 64, "batch_size": 32, "epochs": 2}
    plain = create_detector("nc", seed=0, device="cpu", **settings).detect(model, clean)
    roomy = create_detector("nc", seed=0, device="cpu", time_limit=3600, **settings).detect(model, clean)
    assert roomy.details.pop("cut_by_time_limit") is False
    assert (roomy.score, roomy.target, roomy.details) == (plain.score, plain.target, plain.details)


def test_the_trigger_search_checks_its_allowance_before_every_batch() -> None:
    """An allowance that runs out inside an epoch ends that epoch after the batches it ran (it counts as one
    epoch): NC's epoch at the papers' settings on ResNet18 lasted ~45 s, so a per-epoch check overshot by that."""
    import torch
    from torch import nn

    from ban.blocks.trigger_search import SearchConfig, search_triggers
    from ban.utils import make_generator

    model = nn.Sequential(nn.Flatten(), nn.Linear(1 * 8 * 8, 3)).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x, y = torch.rand(64, 1, 8, 8, generator=make_generator(0)), torch.arange(64) % 3
    calls: list[int] = []

    def out_of_time() -> bool:  # checked before epoch 1, then before its batches 2, 3, 4, ...
        calls.append(1)
        return len(calls) >= 3

    cfg = SearchConfig(epochs=5, batch_size=16)  # 4 batches an epoch
    result = search_triggers(model, x, y, [0, 1, 2], cfg, make_generator(0), out_of_time=out_of_time)
    assert result.epochs == [1, 1, 1] and len(calls) == 3  # stopped inside epoch 1, after 2 of its 4 batches
    full = search_triggers(model, x, y, [0, 1, 2], cfg, make_generator(0))
    assert max(full.epochs) > 1
