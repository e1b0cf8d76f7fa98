"""BAN detection and mitigation on the shared tiny real models (tests/zoo.py), at a reduced budget."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import ban
from ban.checkpoint import load_model, save_model
from ban.clean_data import CleanData
from ban.cli import main
from ban.data import ImageData
from ban.detectors import BAN, Verdict, create_detector
from ban.errors import BanError
from ban.evaluate import evaluate

FAST = {"budget": 0.25, "eval_samples": 1000}  # 5 mask epochs, 8 noise steps, 1000 held-out images
# The faithful preset at this budget decides BadNets (0.842, target 3) and the clean model (0.376)
# right (2026-12-02); it sends too few of the WaNet model's classes to its target (0.478) and
# `clean-seed1` scores 0.497, at the threshold, so it is tested on the first two.


@pytest.fixture(scope="module")
def clean(zoo) -> CleanData:  # type: ignore[no-untyped-def]
    return CleanData.from_images(zoo.defender)


_VERDICTS: dict[tuple[str, str, bool | None], Verdict] = {}


def fast_verdict(zoo, clean: CleanData, name: str, preset: str, recalibrate_bn: bool | None = None) -> Verdict:  # type: ignore[no-untyped-def]
    """BAN at the preset's CI budget on a zoo model (None: the preset's recalibration); each is detected once."""
    key = (name, preset, recalibrate_bn)
    if key not in _VERDICTS:
        det = create_detector("ban", preset=preset, recalibrate_bn=recalibrate_bn, **FAST)
        _VERDICTS[key] = det.detect(zoo.get(name).model, clean)
    return _VERDICTS[key]


@pytest.mark.parametrize("preset", ["paper", "faithful"])
def test_flags_badnets_with_its_target(zoo, clean, preset: str) -> None:  # type: ignore[no-untyped-def]
    v = fast_verdict(zoo, clean, "badnets", preset)
    assert v.backdoored and v.target == 3
    assert v.score > v.threshold
    assert len(v.details["histogram_no_mask"]) == 10 and len(v.details["histogram_negative_mask"]) == 10


@pytest.mark.parametrize(
    ("name", "preset"),
    [("clean", "paper"), ("clean", "faithful")],  # 13 more clean models: docs/ban-defaults.md, "The rule on two zoos"
)
def test_passes_clean_models(zoo, clean, name: str, preset: str) -> None:  # type: ignore[no-untyped-def]
    v = fast_verdict(zoo, clean, name, preset)
    assert not v.backdoored and v.target is None
    assert v.score <= v.threshold


# The faithful preset decides WaNet at half the paper's budget (0.989, docs/ban-defaults.md), not at CI's.
def test_flags_a_per_batch_attack(zoo, clean) -> None:  # type: ignore[no-untyped-def]
    ckpt = zoo.get("wanet")
    v = fast_verdict(zoo, clean, "wanet", "paper")
    assert v.backdoored and v.target == ckpt.meta["target"], v.details["histogram"]
    rates = v.details["flip_rates"]
    assert sum(r > 0.5 for i, r in enumerate(rates) if i != v.target) >= 5  # most other classes go to the target


def test_recalibrated_statistics_pass_a_clean_model(zoo, clean) -> None:  # type: ignore[no-untyped-def]
    """Faithful preset with the noisy network's own BatchNorm statistics (recalibrated) passes the clean model.

    Without recalibration the eval-mode network under noise keeps the running statistics of earlier batches'
    noises: on the zoo model of 2026-11-25 that collapsed the clean model (0.597 -> class 4, per-class rule) and
    recalibration passed it (0.091); on this workplace's AMD EPYC model (2026-12-03) the mixed statistics gave
    0.391, under the threshold, so the comparison depends on the machine's model and is no longer run here (it
    cost a second faithful scan). The recalibrated scan must pass a clean model on any machine, under both rules:
    the faithful scan of `test_passes_clean_models` (pooled) is re-scored by the detector's own per-class rule
    from the confusion matrix it recorded (the rule only reads that matrix; one scan fewer in CI)."""
    from ban.detectors.ban_detector import flag_and_target, per_class_scores

    own = fast_verdict(zoo, clean, "clean", "faithful")
    assert own.settings["recalibrate_bn"] and own.settings["statistic"] == "no-mask"
    assert not own.backdoored and own.score <= own.threshold, own.details["histogram"]
    scores = per_class_scores(torch.tensor(own.details["confusion_no_mask"]), q=0.5)
    assert flag_and_target(scores, own.threshold) == (False, None), scores
    assert sum(own.details["confusion_no_mask"][c][c] for c in range(10)) > 0  # a real matrix, not an empty one


def test_per_class_rule_tells_a_sink_from_a_backdoor() -> None:
    """Hand-made confusion matrices: a sink fed by three similar classes vs. every class flipping."""
    from ban.detectors.ban_detector import per_class_scores

    sink = torch.eye(10, dtype=torch.long) * 100
    for c in (0, 2, 3):  # T-shirt, Pullover, Dress -> Shirt (6): a natural sink, 40% of all images
        sink[c, c], sink[c, 6] = 0, 100
    backdoor = torch.zeros(10, 10, dtype=torch.long)
    backdoor[:, 8] = 60
    backdoor += torch.eye(10, dtype=torch.long) * 40
    assert float(sink.sum(0).max()) / float(sink.sum()) == 0.4
    assert per_class_scores(sink)[6] == 0.0  # pooled share 0.4, but the median class sends nothing
    scores = per_class_scores(backdoor)
    assert int(scores.argmax()) == 8 and abs(float(scores[8]) - 0.6) < 1e-9


def test_same_seed_same_verdict_and_model_unchanged(zoo, clean) -> None:  # type: ignore[no-untyped-def]
    model = zoo.get("badnets").model
    x = zoo.test.x[:64]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        before = model(x)
    # faithful preset: train-mode BN moves the running statistics; determinism needs no more than 1 mask epoch
    # and 2 noise steps (budget 0.05), which cut this test from 16.5 s to a few (2026-12-05)
    cheap = {"budget": 0.05, "eval_samples": 300, "batches_per_epoch": 5}
    a = create_detector("ban", preset="faithful", seed=7, **cheap).detect(model, clean)
    b = create_detector("ban", preset="faithful", seed=7, **cheap).detect(model, clean)
    assert (a.backdoored, a.target, a.score, a.details["histogram_no_mask"]) == (
        b.backdoored, b.target, b.score, b.details["histogram_no_mask"],
    )  # fmt: skip
    with torch.no_grad():
        assert torch.equal(model(x), before)  # noise off, BN statistics restored
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert not model.training


def test_verdict_json_round_trip(tmp_path: Path, zoo, clean) -> None:  # type: ignore[no-untyped-def]
    v = ban.detect(zoo.get("badnets"), zoo.defender, seed=1, **FAST)  # the API accepts a Checkpoint and ImageData
    path = tmp_path / "v.json"
    v.save(path)
    w = Verdict.load(path)
    assert w == v
    assert w.settings["preset"] == "paper" and w.settings["budget"] == 0.25
    assert {"clean_loss", "noisy_loss", "loss_rise", "histogram_negative_mask"} <= set(w.details)


@pytest.mark.parametrize(("name", "flagged"), [("r18-badnets", True), ("r18-clean", False)])
def test_defaults_decide_resnet18(zoo, clean, name: str, flagged: bool) -> None:  # type: ignore[no-untyped-def]
    """The paper's architecture at the defaults (full budget): ResNet18-1/4 trained with augmentation, BadNets
    target 2 (ASR 0.93) flagged with its target, the clean model of the same recipe passed."""
    checkpoint = zoo.get(name)
    v = BAN().detect(checkpoint.model, clean)
    assert v.backdoored is flagged
    assert v.target == (2 if flagged else None) == checkpoint.meta.get("target")
    assert len(v.details["restarts"]) == 2 and v.settings["step_scale"] == 2.5


def test_restarts_keep_the_highest_scoring_run(zoo, clean) -> None:  # type: ignore[no-untyped-def]
    """restarts=2 runs the detector at seeds 0 and 1, each as a single run would, and keeps the higher score."""
    model = zoo.get("clean").model
    single = [BAN(seed=s, restarts=1, **FAST).detect(model, clean) for s in (0, 1)]
    both = BAN(restarts=2, combine="max", **FAST).detect(model, clean)
    runs = both.details["restarts"]
    assert [r["seed"] for r in runs] == [0, 1]
    assert [r["score"] for r in runs] == pytest.approx([v.score for v in single])
    assert [r["argmax_class"] for r in runs] == [v.details["argmax_class"] for v in single]
    best = max(single, key=lambda v: v.score)
    assert both.score == pytest.approx(best.score) and both.backdoored == best.backdoored
    assert both.details["restart_chosen"] == single.index(best)
    assert both.details["histogram"] == best.details["histogram"] and both.settings["restarts"] == 2


def test_restarts_mean_averages_every_class_score(zoo, clean) -> None:  # type: ignore[no-untyped-def]
    """combine=mean: a class's score is its mean over the runs; each run predicts all of its share of the held-out
    images (1000 shared by 2 runs: 500 each, as a single run asked for 500 draws them)."""
    model = zoo.get("badnets").model
    halves = {**FAST, "eval_samples": 500}
    single = [BAN(seed=s, restarts=1, early_stop=False, **halves).detect(model, clean) for s in (0, 1)]
    both = BAN(restarts=2, combine="mean", **FAST).detect(model, clean)
    a, b = (v.details["scores_per_class"] for v in single)
    expected = [(x + y) / 2 for x, y in zip(a, b, strict=True)]
    assert both.details["scores_per_class"] == pytest.approx(expected, abs=1e-6)
    best = max(range(10), key=lambda c: expected[c])
    assert both.score == pytest.approx(expected[best], abs=1e-6)
    assert both.backdoored and both.target == best == 3  # the BadNets target, at 0.5 of the mean
    assert both.details["restart_chosen"] == int(a[best] < b[best])  # the run scoring higher on that class
    assert both.details["images_predicted"] == both.details["images_held_out"] == 500


def test_bad_inputs_are_clear_errors(zoo, clean) -> None:  # type: ignore[no-untyped-def]
    model = zoo.get("clean").model
    few = CleanData.from_images(zoo.defender.subset(list(range(50))))
    with pytest.raises(BanError, match="at least 100 clean images"):
        BAN(**FAST).detect(model, few)
    rgb = ImageData(torch.rand(200, 3, 32, 32), torch.arange(200) % 10, 10)
    with pytest.raises(BanError, match="3-channel images but the model takes 1-channel ones"):
        BAN(**FAST).detect(model, CleanData.from_images(rgb))
    five = ImageData(zoo.defender.x[:200], zoo.defender.y[:200] % 5, 5)
    with pytest.raises(BanError, match="classes"):
        BAN(**FAST).detect(model, CleanData.from_images(five))
    with pytest.raises(BanError, match="Checkpoint"):
        BAN(**FAST).detect(zoo.get("clean"), clean)  # type: ignore[arg-type]
    with pytest.raises(BanError, match=r"got str; load the file first with ban.load_model\(path\)$"):
        ban.detect("model.safetensors", clean)  # type: ignore[arg-type]
    with pytest.raises(BanError, match="preset"):
        BAN(preset="fast")
    with pytest.raises(BanError, match="restarts"):
        BAN(restarts=0)
    with pytest.raises(BanError, match="combine restarts"):
        BAN(combine="median")
    with pytest.raises(BanError, match="step_scale"):
        BAN(step_scale=0)
    with pytest.raises(BanError, match="quantile must be a finite number"):
        BAN(quantile="x")  # as `--param quantile=x` gives it
    for bad in ("nan", float("inf")):  # NaN passes every `eps < 0` check; it used to fail later, as a model's NaN
        with pytest.raises(BanError, match="setting eps must be a finite number"):
            BAN(eps=bad)
    with pytest.raises(BanError, match=r"mask_batches must be a whole number \(unset by default\), got 'x'"):
        BAN(mask_batches="x")  # a setting whose default is None (the preset's) is checked by its annotation
    with pytest.raises(BanError, match="early_stop must be true or false"):
        BAN(early_stop="maybe")  # bool("maybe") would be True
    assert BAN(mask_batches=3.0, early_stop=False).settings()["mask_batches"] == 3
    nothing = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 10))
    with pytest.raises(BanError, match="no neurons to perturb"):
        BAN(**FAST).detect(nothing, clean)


def test_mitigation_removes_badnets(zoo, clean) -> None:  # type: ignore[no-untyped-def]
    ckpt = zoo.get("badnets")
    # CI budget: 8 of the paper's 24 epochs, lr 0.02 annealed to 0 (cosine), rob_lambda 1.0, no augmentation (the
    # zoo models were trained without it). Measured with one thread: ASR 0.999 -> 0.063, BA 0.817 -> 0.792. With the
    # paper's constant lr (0.01 here) BA fell to 0.7805-0.791 (thread count alone moves it a point), with
    # cosine lr 0.01 ASR stayed at 0.107 (docs/mitigations.md).
    # That is the method's `cpu` preset.
    repaired, report = ban.mitigate(ckpt, clean, "ban", test=zoo.test, preset="cpu", seed=0)
    assert report.asr_known and report.before is not None and report.after is not None
    assert report.before.asr is not None and report.before.asr > 0.9
    assert report.after.asr is not None and report.after.asr < 0.10
    assert report.after.ba >= report.before.ba - 0.03
    assert report.settings["budget"] == 1 / 3 and report.settings["epochs"] == 8
    assert report.settings["schedule"] == "cosine"
    assert evaluate(ckpt.model, zoo.test, ckpt.attack, device="cpu").asr > 0.9  # the original is untouched


def test_cli_detect_folder_json_and_mitigate(tmp_path: Path, zoo, capsys) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "models"
    folder.mkdir()
    for name in ("badnets", "clean"):
        c = zoo.get(name)
        save_model(folder / f"{name}.safetensors", c.model, c.meta, c.attack)
    out = tmp_path / "verdicts.json"
    args = ["detect", str(folder), "--budget", "0.25", "--clean-samples", "1200", "--json", str(out), "-q"]
    assert main([*args, "--fail-on-backdoor"]) == 1
    printed = " ".join(capsys.readouterr().out.split())
    assert "score = mean of 2 runs on class 3 (seed 0: " in printed  # the default's score, read as a mean
    rows = {r["model"]: r for r in json.loads(out.read_text())}
    assert rows["badnets.safetensors"]["backdoored"] and rows["badnets.safetensors"]["target"] == 3
    assert not rows["clean.safetensors"]["backdoored"]
    assert main(["detect", str(folder / "clean.safetensors"), "--clean-samples", "50", "-q"]) == 2
    # --preset names a preset of whichever detector runs; one it lacks is one line, exit 2
    bad = ["detect", str(folder / "clean.safetensors"), "--detector", "nc", "--preset", "gpu", "-q"]
    assert main(bad) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: detector 'nc' has no preset 'gpu'; choose one of paper, cpu"
    )
    cleaned = tmp_path / "cleaned.safetensors"
    code = main(["mitigate", str(folder / "badnets.safetensors"), "--out", str(cleaned), "--budget", "0.1",
                 "--param", "clean_samples=600", "--test-subset", "500", "-q"])  # fmt: skip
    assert code == 0
    reloaded = load_model(cleaned)
    assert reloaded.attack is not None and reloaded.meta["mitigation"]["method"] == "ban"


@pytest.mark.parametrize("rule", ["per-class", "pooled"])
def test_early_stop_never_changes_the_decision(rule: str) -> None:
    """Predict images batch by batch; when the stop test fires, the verdict reported from the images seen so
    far must equal the verdict on the whole held-out set."""
    from ban.detectors.ban_detector import flag_and_target

    det = BAN(rule=rule)
    g = torch.Generator().manual_seed(0)
    k, n, stops = 10, 400, 0
    for trial in range(80):
        y = torch.arange(k).repeat(n // k)[torch.randperm(n, generator=g)]
        pred = torch.randint(0, k, (n,), generator=g)
        pred[torch.rand(n, generator=g) < trial / 80] = trial % k  # from clean-looking to strongly backdoored
        full = torch.bincount(y * k + pred, minlength=k * k).view(k, k)
        totals = torch.bincount(y, minlength=k)
        for stop in range(16, n, 16):
            part = torch.bincount(y[:stop] * k + pred[:stop], minlength=k * k).view(k, k)
            if det._decided(part, totals):
                stops += 1
                assert flag_and_target(det._scores(part), det.threshold) == flag_and_target(
                    det._scores(full), det.threshold
                ), (trial, stop)
                break
    assert stops >= 20  # the stop test fires on clear cases
