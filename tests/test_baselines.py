"""Baseline detectors (NC, Tabor, FeatureRE, Unicorn, BTI-DBF, BTI-DBF*) on the shared tiny models.

Each detector runs end to end at a small CPU budget on the BadNets model (target 3). Budgets are set
per test so the file stays within a few minutes on 2 cores.
"""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from torch import nn

from ban.blocks.unet import UNet, grouped_input, grouped_output
from ban.clean_data import CleanData
from ban.detectors import DETECTORS, Verdict, create_detector
from ban.detectors.histogram import majority_rule
from ban.detectors.outlier import mad_anomaly_index, small_norm_outliers
from ban.errors import BanError
from ban.figures.triggers import save_trigger_figures

BASELINES = ("nc", "tabor", "featurere", "unicorn", "btidbf", "btidbf-star")

# tiny settings: few images, few epochs, small UNets (the defaults are the papers')
TINY = {
    "nc": {"n_samples": 100, "batch_size": 32, "epochs": 10},
    # Tabor at NC's settings: with 20 images and 4 epochs (its former setting) the masks do not separate
    "tabor": {"n_samples": 100, "batch_size": 32, "epochs": 10},
    "featurere": {"n_samples": 20, "warmup_epochs": 2, "epochs": 3, "filters": 4, "blocks": 2},
    "unicorn": {"n_samples": 20, "pretrain_epochs": 2, "epochs": 2, "inner_steps": 2, "filters": 4, "blocks": 2},
    # measured (docs/detectors.md, 2026-12-04): at these settings seeds 0-4 all flag BadNets as class 3 (0.54-0.61)
    "btidbf": {
        "n_samples": 300,
        "batch_size": 16,
        "mask_epochs": 5,
        "mask_lr": 0.1,
        "pretrain_epochs": 8,
        "epochs": 30,
        "filters": 8,
        "blocks": 2,
    },
    "btidbf-star": {"n_samples": 100, "mask_epochs": 2, "pretrain_epochs": 1, "epochs": 1, "filters": 4, "blocks": 2},
}


@pytest.fixture(scope="module")
def clean(zoo) -> CleanData:
    return CleanData.from_images(zoo.defender)


def tiny(name: str, seed: int = 0) -> object:
    return create_detector(name, seed=seed, device="cpu", quiet=True, budget=1.0, **TINY[name])


def assert_valid(v: Verdict, name: str) -> None:
    assert v.detector == name
    assert isinstance(v.backdoored, bool)
    assert v.target is None or 0 <= v.target < 10
    assert v.backdoored == (v.target is not None)
    assert math.isfinite(v.score) and math.isfinite(v.threshold)
    assert v.seconds > 0 and v.seed in (0, 1)
    assert v.settings["budget"] == 1.0
    assert Verdict.from_dict(v.to_dict()) == v


# ---------------------------------------------------------------- decision rules on hand-made inputs
def test_mad_rule_flags_the_small_norm_outlier() -> None:
    result = small_norm_outliers([10, 11, 9, 10, 12, 10, 9, 11, 10, 1])
    assert result.flagged == [9]
    # median 10, |deviation| median 1 -> MAD 1.4826; index of 1 = 9 / 1.4826
    assert result.score == pytest.approx(9 / 1.4826)


def test_mad_rule_by_hand() -> None:
    index, med, mad = mad_anomaly_index([1, 2, 3, 4, 100])
    assert med == 3 and mad == pytest.approx(1.4826)
    assert index[0] == pytest.approx(2 / 1.4826)
    assert not small_norm_outliers([1, 2, 3, 4, 100]).flagged  # index 1.35 < 2


def test_mad_rule_ignores_large_norms_and_orders_flags() -> None:
    assert not small_norm_outliers([10, 11, 9, 10, 12, 10, 9, 11, 10, 100]).flagged
    two = small_norm_outliers([10, 11, 9, 10, 12, 10, 9, 11, 2, 1])
    assert two.flagged == [9, 8]  # smallest norm first
    assert small_norm_outliers([10, 11, 9, 10, 12, 10, 9, 11, 10, 1], threshold=7).flagged == []  # index 6.07
    assert small_norm_outliers([5, 5, 5, 5, 1]).flagged == [4]  # zero MAD: any lower norm is an outlier
    assert not small_norm_outliers([4.0, 4.0, 4.0]).flagged  # zero MAD, no outlier


def test_majority_rule() -> None:
    d = majority_rule(torch.tensor([3, 3, 3, 1, 2]), 5)
    assert (d.backdoored, d.target, d.counts) == (True, 3, [0, 1, 1, 3, 0])
    assert d.fraction == pytest.approx(0.6)
    assert not majority_rule(torch.tensor([3, 3, 1, 2]), 5).backdoored  # exactly 50% is not more than half
    assert not majority_rule(torch.tensor([3, 3, 3, 1, 2]), 5, threshold=0.7).backdoored


# ---------------------------------------------------------------- interface and threat model
def test_registry_and_constructor_keywords() -> None:
    for name in BASELINES:
        det = create_detector(name, seed=1, device="cpu", quiet=True, budget=0.1)
        assert det.name == name and DETECTORS[name] is type(det)
        assert det.settings()["budget"] == 0.1
        sig = inspect.signature(type(det).detect)
        assert list(sig.parameters) == ["self", "model", "clean"]
    with pytest.raises(BanError):
        create_detector("nc", budget=0)
    with pytest.raises(BanError):
        create_detector("btidbf", mask_objective="nope")


def test_detectors_refuse_a_checkpoint(zoo, clean) -> None:
    ckpt = zoo.get("badnets")
    for name in BASELINES:
        with pytest.raises(BanError, match="not a Checkpoint"):
            create_detector(name, device="cpu").detect(ckpt, clean)
    with pytest.raises(BanError, match="CleanData"):
        create_detector("nc", device="cpu").detect(ckpt.model, zoo.defender)


def test_grouped_unet_is_independent_unets() -> None:
    torch.manual_seed(0)
    single = UNet(1, 1, base_filters=4, num_blocks=3).eval()
    grouped = single.replicate(3).eval()
    x = torch.rand(3, 2, 1, 28, 28)
    out = grouped_output(grouped(grouped_input(x)), 3)
    for g in range(3):
        torch.testing.assert_close(out[g], single(x[g]), atol=1e-5, rtol=1e-5)
    assert torch.equal(UNet(1, 1, 4, 2, residual=True)(x[0]), x[0])  # a residual UNet starts as the identity


# ---------------------------------------------------------------- end to end on the tiny models
@pytest.mark.parametrize(("name", "seed"), [("nc", 0), ("nc", 1), ("tabor", 0), ("tabor", 1)])
def test_nc_and_tabor_flag_badnets_with_its_target(zoo, clean, tmp_path, name: str, seed: int) -> None:
    """NC and Tabor (official MAD rule, threshold 2) flag the BadNets model and name class 3, at two seeds.

    Measured 2026-12-03 on this workplace's zoo model (one thread): anomaly index of class 3 NC 2.7 (seed 0) and
    3.13 (seed 1), Tabor 2.81 and 2.54; class 6 (Shirt) is flagged too at both seeds, with a larger mask. At this
    budget (100 images, 10 epochs) the masks have not converged: longer runs on fewer images bring NC's index down
    to 1.2–1.7, and a clean model gives ≈ 2.3 here (docs/detectors.md): NC's margin is thin. Tabor at its
    former setting (20 images, 4 epochs) flagged nothing (class 3's index 0.74 and 1.14).
    """
    model = zoo.get("badnets").model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    v = tiny(name, seed).detect(model, clean)
    assert_valid(v, name)
    norms = v.details["norms"]
    assert v.seed == seed
    assert v.backdoored and v.target == 3, (v.score, norms)
    assert v.details["smallest_norm_class"] == 3 and v.details["flagged"][0] == 3
    assert norms[3] == min(norms)
    assert v.score > v.threshold
    for k, value in model.state_dict().items():  # the caller's model is untouched
        assert torch.equal(value, before[k])
    if seed == 0:
        paths = save_trigger_figures(v, tmp_path)
        assert {p.name for p in paths} == {f"{name}_masks.png", f"{name}_patterns.png", f"{name}_triggers.png"}
        assert all(p.stat().st_size > 0 for p in paths)


@pytest.mark.parametrize("seed", [0, 1])
def test_btidbf_flags_badnets_with_its_target(zoo, clean, tmp_path, seed: int) -> None:
    """BTI-DBF (> 50% rule on the predictions on G(x + noise)) flags BadNets as class 3, at two seeds.

    Measured 2026-12-04 at these settings (`benchmarks/seed_sweep.py btidbf`, one thread, ≈ 26 s a run):
    seeds 0-4 give class 3 0.563, 0.543, 0.573, 0.593, 0.613 of the 300 images (class 5 second, 72-109).
    With batch 32 and 10 training epochs (the former setting) seed 1 gave 0.42; with 30 epochs 0.47.
    """
    v = tiny("btidbf", seed).detect(zoo.get("badnets").model, clean)
    assert_valid(v, "btidbf")
    hist = v.details["histogram"]
    assert sum(hist) == 300 and v.details["argmax_class"] == hist.index(max(hist))
    assert v.score == pytest.approx(max(hist) / 300)
    assert v.details["argmax_class"] == 3, hist
    assert v.backdoored and v.target == 3 and v.score > 0.5, hist
    if seed == 0:
        assert len(save_trigger_figures(v, tmp_path)) == 3


def test_btidbf_passes_the_clean_model_at_seed_0(zoo, clean) -> None:
    """The clean model at seed 0: [13, 22, 10, 16, 10, 97, 40, 1, 87, 4] (0.32, not flagged). BTI-DBF's false
    alarms are real, and this test does not hide them: at seed 1 the same settings flag the clean model as
    Bag (8, 0.88), as BTI-DBF leaned to Bag on every ResNet18 model (docs/detectors.md)."""
    vc = tiny("btidbf").detect(zoo.get("clean").model, clean)
    assert_valid(vc, "btidbf")
    assert not vc.backdoored and vc.target is None and vc.score <= 0.5, vc.details["histogram"]


@pytest.mark.parametrize("name", ["featurere", "unicorn", "btidbf-star"])
def test_baseline_runs_end_to_end(zoo, clean, tmp_path, name: str) -> None:
    det = tiny(name)
    v = det.detect(zoo.get("badnets").model, clean)
    assert_valid(v, name)
    if name in ("featurere", "unicorn"):
        assert len(v.details["mixed_value"]) == 10
        assert v.score == pytest.approx(-min(v.details["mixed_value"]))
    paths = save_trigger_figures(v, tmp_path)
    assert paths and all(p.exists() for p in paths)


@pytest.mark.parametrize(("name", "seed"), [("featurere", 0), ("featurere", 1), ("unicorn", 0), ("unicorn", 1)])
def test_feature_space_inversion_reaches_the_shirt_class(zoo, clean, name: str, seed: int) -> None:
    """What FeatureRE's and Unicorn's own inversions find at the CI settings: a transform that sends the clean
    images to Shirt (6), Fashion-MNIST's most confusable class and NC's second flag on this model.

    Measured 2026-12-04 (`benchmarks/seed_sweep.py featurere|unicorn`, the TINY settings, 2-4 s a run): the
    per-target inverted ASR of class 6 is 0.61 / 0.61 (FeatureRE, seeds 0 / 1) and 0.72 / 0.94 (Unicorn); class 0
    reaches 0.72 / 0.00 and 0.22 / 0.61; BadNets' target 3 reaches 0.00 at every seed: these budgets do not
    converge to the backdoor (a run with 100 images and 10 + 30 epochs, 115 s, ends at chance, 0.09-0.14, on
    every class), so neither flags the model (mixed values ≈ 33 and ≈ 9.4, threshold -0.75).
    """
    v = tiny(name, seed).detect(zoo.get("badnets").model, clean)
    asr = [stats["asr"] for stats in v.details["per_target"]]
    assert len(asr) == 10 and all(0.0 <= a <= 1.0 for a in asr)
    assert asr[6] >= 0.5, asr
    assert asr[6] >= sorted(asr)[-2], asr  # first or second of the ten


def test_figures_of_a_verdict_without_triggers_is_an_error(tmp_path) -> None:
    bare = Verdict(detector="nc", backdoored=False, target=None, score=0.0, threshold=2.0, seconds=0.0, seed=0)
    with pytest.raises(BanError, match="no recovered triggers"):
        save_trigger_figures(bare, tmp_path)


def test_model_with_wrong_classes_is_refused(clean) -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 7))
    with pytest.raises(BanError, match="classes"):
        create_detector("nc", device="cpu").detect(model, clean)
