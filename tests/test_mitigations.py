"""Baseline mitigations on the shared real models: end to end, removal, checkpoint round trips, bad input."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ban.checkpoint import load_model, save_model
from ban.clean_data import CleanData
from ban.data import balanced_sample
from ban.errors import BanError
from ban.evaluate import evaluate
from ban.mitigations import MITIGATIONS, create_mitigation
from ban.mitigations.base import FineTuneRun, MitigationReport
from ban.mitigations.nad import attention_loss, attention_map
from ban.mitigations.sam import SAM
from ban.utils import make_generator

CLEAN = 500  # defender images the tests hand to every method (ANP's paper default; 1% of CIFAR-10)

# Small CPU budgets (fractions of each paper's epochs / rounds / iterations). FT-SAM: 10 epochs of
# 2 steps; crop padding 2 (the zoo models were trained without augmentation, and the paper's pad 4
# on 28-px images alone costs ~6 BA points: measured 0.817 -> 0.757 at pad 4, 0.770 at pad 2).
FAST: dict[str, dict[str, Any]] = {
    "ft": {"budget": 0.2},
    "fp": {"budget": 0.02},
    "ftsam": {"budget": 0.1, "crop_pad": 2},
    # ANP: no crop+flip here — the official pad 4 on 28-px images costs the clean zoo model 7 BA points
    # (0.831 -> 0.760, measured; docs/mitigations.md). Batches of 64 (the official 128) halve its two runs' 33 s
    # each; measured 2026-12-05 on 2 threads: the clean model prunes 0 neurons (BA 0.831 kept), BadNets 2 (17.5 s each)
    "anp": {"budget": 0.05, "eps": 0.2, "augment": False, "batch_size": 64},
}


@pytest.fixture(scope="module")
def clean(zoo: Any) -> CleanData:
    return CleanData.from_images(balanced_sample(zoo.defender, CLEAN, seed=1))


@pytest.fixture(scope="module")
def badnets(zoo: Any) -> Any:
    ckpt = zoo.get("badnets")
    assert ckpt.attack is not None and ckpt.attack.target == 3
    return ckpt


_RUNS: dict[str, tuple[nn.Module, MitigationReport]] = {}


def repaired(name: str, ckpt: Any, clean: CleanData, zoo: Any, **settings: Any) -> tuple[nn.Module, MitigationReport]:
    """Run (once per test session) mitigation `name` on the BadNets model; the evaluator measures BA/ASR."""
    key = json.dumps([name, settings], sort_keys=True)
    if key not in _RUNS:
        m = create_mitigation(name, seed=0, device="cpu", quiet=True, **{"clean_samples": CLEAN, **settings})
        _RUNS[key] = m.run(ckpt.model, clean, zoo.test, ckpt.attack)
    return _RUNS[key]


# Every method's report, its plain-data form and the untouched input model: tests/test_mitigations_regression.py.


def test_fine_pruning_prunes_dormant_channels_as_zero_columns(badnets: Any, clean: CleanData, zoo: Any) -> None:
    model, report = repaired("fp", badnets, clean, zoo, **FAST["fp"])
    d = report.details
    assert d["num_channels"] == model.linear.in_features
    assert 0 < d["num_pruned"] < d["num_channels"]
    # the stopping rule: accuracy on the clean images within 4 points at the chosen count
    assert d["clean_accuracy_curve"][d["num_pruned"]] >= d["clean_accuracy_curve"][0] - 0.04
    cols = model.linear.weight[:, d["pruned_channels"]]
    assert torch.count_nonzero(cols) == 0, "pruned channels must stay zero through fine-tuning"


@pytest.mark.parametrize("name", ["ftsam"])
def test_removes_the_backdoor_and_keeps_accuracy(name: str, badnets: Any, clean: CleanData, zoo: Any) -> None:
    """FT-SAM removes the tiny BadNets model's backdoor. ANP is measured on ResNet18-1/4 instead (docs/mitigations.md,
    "The repairs on ResNet18-1/4": ASR 0.001 for 34 BA points); on this CNN no threshold meets the criterion, which
    the tests no longer encode as an expected failure."""
    _, report = repaired(name, badnets, clean, zoo, **FAST[name])
    assert report.before is not None and report.after is not None and report.after.asr is not None
    assert report.after.asr < 0.20, f"{name}: ASR {report.after.asr:.3f} after repair"
    assert report.after.ba >= report.before.ba - 0.05, f"{name}: BA {report.before.ba:.3f} -> {report.after.ba:.3f}"


@pytest.mark.parametrize(("name", "drop"), [("ft", 0.2), ("fp", 0.3)])
def test_fine_tuning_and_fine_pruning_lower_the_asr(
    name: str, drop: float, badnets: Any, clean: CleanData, zoo: Any
) -> None:
    """Plain fine-tuning and Fine-Pruning weaken BadNets without removing it, at a small budget.

    Measured 2026-12-03 on this workplace's zoo model (seed 0, 500 images, one thread): FT at budget 0.2 (20 of the
    paper's 100 epochs) ASR 0.999 -> 0.646, BA 0.817 -> 0.794 (at 0.05: ASR 0.939); FP at budget 0.02 ASR
    0.999 -> 0.430, BA 0.789. The asserted drops are about half and 60 % of those."""
    _, report = repaired(name, badnets, clean, zoo, **FAST[name])
    assert report.before is not None and report.after is not None
    assert report.before.asr is not None and report.after.asr is not None
    assert report.after.asr < report.before.asr - drop, f"{name}: ASR {report.before.asr:.3f} -> {report.after.asr:.3f}"
    assert report.after.ba >= report.before.ba - 0.05, f"{name}: BA {report.before.ba:.3f} -> {report.after.ba:.3f}"


def test_ibau_lowers_the_asr_once_it_sees_enough_batches(badnets: Any, zoo: Any) -> None:
    """I-BAU unlearns BadNets when its outer loop gets enough batches; on the 500 images of the other tests it
    runs two batches a round and changes nothing (ASR 0.98-1.00 at every budget, docs/mitigations.md).

    Measured 2026-12-04 (`benchmarks/seed_sweep.py ibau --mitigation`, one thread, shared cores): its paper's
    5 % of the training set (3,000 images) at budget 1 (5 rounds): ASR 0.999 -> 0.000, BA 0.817 -> 0.692, 284 s;
    at budget 0.4 ASR 0.303, BA 0.578; here the same 24 outer steps on 768 images in batches of 64 (the
    perturbation on one image of each): seed 0 ASR 0.224, seed 1 0.367, BA 0.568 / 0.572, ≈ 33 s. I-BAU
    pays for the removal in accuracy on this small CNN; the asserted drop is about two thirds of the smaller
    measured one, the BA floor well above chance (0.10)."""
    n = 768
    clean = CleanData.from_images(balanced_sample(zoo.defender, n, seed=1))
    _, report = repaired("ibau", badnets, clean, zoo, clean_samples=n, batch_size=64, budget=0.4)
    assert report.before is not None and report.after is not None
    assert report.before.asr is not None and report.after.asr is not None
    assert report.settings["rounds"] == 2
    assert report.after.asr < report.before.asr - 0.4, f"ASR {report.before.asr:.3f} -> {report.after.asr:.3f}"
    assert report.after.ba > 0.4, f"BA {report.before.ba:.3f} -> {report.after.ba:.3f}"


@pytest.mark.parametrize("name", ["anp", "fp"])
def test_cleaned_checkpoint_reloads_and_reproduces_the_report(
    name: str, badnets: Any, clean: CleanData, zoo: Any, tmp_path: Any
) -> None:
    model, report = repaired(name, badnets, clean, zoo, **FAST[name])
    path = save_model(tmp_path / f"{name}.safetensors", model, dict(badnets.meta), badnets.attack)
    loaded = load_model(path)
    assert loaded.attack is not None and loaded.meta["arch"] == badnets.meta["arch"]
    again = evaluate(loaded.model, zoo.test, loaded.attack, device="cpu", seed=0)
    assert report.after is not None
    assert again.ba == pytest.approx(report.after.ba, abs=1e-9)
    assert again.asr == pytest.approx(report.after.asr, abs=1e-9)


def test_anp_prunes_little_on_a_clean_model(zoo: Any, clean: CleanData) -> None:
    ckpt = zoo.get("clean")
    m = create_mitigation("anp", seed=0, device="cpu", quiet=True, clean_samples=CLEAN, **FAST["anp"])
    _, report = m.run(ckpt.model, clean, zoo.test)
    backdoored = repaired("anp", zoo.get("badnets"), clean, zoo, **FAST["anp"])[1]
    assert report.details["pruned_fraction"] <= 0.05
    assert report.details["num_pruned"] <= backdoored.details["num_pruned"] + 1
    assert report.after is not None and report.before is not None
    assert report.after.ba >= report.before.ba - 0.03


# ---------------------------------------------------------------------------- NAD
def test_nad_attention_loss_is_the_official_at_loss() -> None:
    """bboylyg/NAD at.py (Σ_c |f|^p, L2-normalised over H×W, F.mse_loss) in Zagoruyko's form:
    normalize(f.pow(p).mean(1).view(N, -1)) and (A_s - A_t).pow(2).mean() over batch and positions."""
    g = torch.Generator().manual_seed(0)
    f_s, f_t = torch.randn(8, 16, 7, 7, generator=g), torch.randn(8, 16, 7, 7, generator=g)

    def at(f: torch.Tensor) -> torch.Tensor:
        return F.normalize(f.pow(2).mean(1).view(f.size(0), -1))

    assert attention_loss(f_s, f_t).item() == pytest.approx((at(f_s) - at(f_t)).pow(2).mean().item(), rel=1e-4)
    assert attention_map(f_s).flatten(1).norm(dim=1) == pytest.approx(torch.ones(8), abs=1e-5)


def test_nad_official_beta_swamps_cross_entropy_on_the_small_cnn(badnets: Any, clean: CleanData) -> None:
    """Measured 2026-12-03 (docs/mitigations.md, NAD): after the budget-0.05 teacher, β = 5000 makes the
    attention term's gradient ~20× the CE gradient on the zoo's BadNets CNN (the paper's run starts at
    β·AT ≈ 1.4, about CE's size), which is why the official β collapses this model's BA."""
    m = create_mitigation("nad", seed=0, device="cpu", quiet=True, clean_samples=CLEAN, budget=0.05)
    model = copy.deepcopy(badnets.model)
    data = clean.sample(CLEAN, 0)
    objective = m.hooks(FineTuneRun(model, data, torch.device("cpu"), make_generator(0))).objective
    assert objective is not None
    model.train()
    x, y = data.x[:64], data.y[:64]
    params = [p for p in model.parameters() if p.requires_grad]
    ce = F.cross_entropy(model(x), y)
    total = objective(model, x, y)
    g_ce = torch.autograd.grad(ce, params, allow_unused=True)
    g_total = torch.autograd.grad(total, params, allow_unused=True)
    g_at = [t - (c if c is not None else 0) for t, c in zip(g_total, g_ce, strict=True) if t is not None]
    norm = lambda gs: torch.sqrt(sum((t**2).sum() for t in gs if t is not None))  # noqa: E731
    at_term = total.item() - ce.item()
    assert at_term > 3 * ce.item(), f"β·AT {at_term:.2f} vs CE {ce.item():.2f}"
    assert norm(g_at) > 10 * norm(g_ce), f"|∇β·AT| {norm(g_at):.1f} vs |∇CE| {norm(g_ce):.1f}"


def test_nad_with_a_smaller_beta_trades_accuracy_for_removal(badnets: Any, clean: CleanData, zoo: Any) -> None:
    """Measured 2026-12-03 (one thread): β = 750 at budget 0.05 gives BA 0.817 -> 0.732, ASR 0.999 -> 0.185;
    no β or lr tried here keeps BA within 3 points and removes the backdoor (docs/mitigations.md, NAD)."""
    _, report = repaired("nad", badnets, clean, zoo, budget=0.05, beta=750)
    assert report.before is not None and report.after is not None and report.after.asr is not None
    assert report.after.asr < 0.30, f"ASR {report.after.asr:.3f}"
    assert report.after.ba >= report.before.ba - 0.12, f"BA {report.before.ba:.3f} -> {report.after.ba:.3f}"


# ---------------------------------------------------------------------------- bad input
def test_unknown_method_is_a_ban_error() -> None:
    with pytest.raises(BanError, match="unknown mitigation"):
        create_mitigation("no-such-repair")


def test_anp_needs_normalisation_layers(clean: CleanData) -> None:
    plain = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10)
    )
    with pytest.raises(BanError, match="normalisation.*another method"):
        create_mitigation("anp", device="cpu", clean_samples=CLEAN).repair(plain, clean)


@pytest.mark.parametrize("name", ["ft", "fp", "nad", "ibau", "ftsam", "anp"])
def test_too_little_clean_data_says_how_much(name: str, zoo: Any) -> None:
    few = CleanData.from_images(balanced_sample(zoo.defender, 200, seed=2))
    m = create_mitigation(name, device="cpu")  # paper default: 2500 (500 for ANP)
    need = m.clean_samples  # type: ignore[attr-defined]
    assert need > len(few)
    with pytest.raises(BanError, match=f"at least {need} clean images"):
        m.repair(nn.Sequential(nn.BatchNorm2d(1), nn.Flatten()), few)


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5])
@pytest.mark.parametrize("name", ["fp", "anp"])
def test_pruning_ratio_outside_unit_interval(name: str, ratio: float) -> None:
    with pytest.raises(BanError, match=r"\[0, 1\)"):
        create_mitigation(name, prune_ratio=ratio)


@pytest.mark.parametrize("budget", [0, -1, "lots"])
def test_bad_budget(budget: Any) -> None:
    with pytest.raises(BanError, match="budget"):
        create_mitigation("ft", budget=budget)


def test_every_method_accepts_the_cli_keywords() -> None:
    for name in MITIGATIONS:
        m = create_mitigation(name, seed=3, device="cpu", quiet=True, budget=0.5)
        assert m.seed == 3 and m.settings()["budget"] == 0.5


def test_a_preset_is_a_set_of_settings_and_explicit_ones_win() -> None:
    cpu = {"budget": 1 / 3, "lr": 0.02, "schedule": "cosine", "rob_lambda": 1.0, "augment": False}
    assert create_mitigation("ban", preset="cpu").settings() == create_mitigation("ban", **cpu).settings()
    assert create_mitigation("ban", preset="cpu", lr=0.01).settings()["lr"] == 0.01
    assert create_mitigation("ft", preset="paper").settings() == create_mitigation("ft").settings()
    with pytest.raises(BanError, match="no preset 'fast'"):
        create_mitigation("ban", preset="fast")


@pytest.mark.parametrize(("name", "settings"), [("ft", {"no_such": 1}), ("nad", {"epochs": 0}), ("anp", {"eps": "x"})])
def test_a_bad_setting_is_one_ban_error_line(name: str, settings: dict[str, Any]) -> None:
    with pytest.raises(BanError) as err:
        create_mitigation(name, **settings)
    assert "\n" not in str(err.value) and next(iter(settings)) in str(err.value)


# ---------------------------------------------------------------------------- SAM
def test_sam_steps_with_the_gradient_at_the_perturbed_point() -> None:
    w = nn.Parameter(torch.tensor([1.0, -2.0]))
    target = torch.tensor([0.5, 0.5])

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = ((w - target) ** 2).sum()
        loss.backward()
        return loss

    opt = SAM([w], torch.optim.SGD, rho=0.1, adaptive=False, lr=0.5)
    w0 = w.detach().clone()
    g0 = 2 * (w0 - target)
    e = 0.1 * g0 / g0.norm()
    expected = w0 - 0.5 * 2 * (w0 + e - target)
    loss = opt.step(closure)
    assert loss.item() == pytest.approx(((w0 - target) ** 2).sum().item())
    assert torch.allclose(w.detach(), expected, atol=1e-6)
