"""BAN's figures show what the verdict computed: its own noise, BatchNorm statistics and statistic."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ban.clean_data import CleanData
from ban.detectors import Verdict, create_detector
from ban.errors import BanError
from ban.figures.detection import detection_figures, verdict_features


@pytest.fixture(scope="module")
def scanned(zoo):  # type: ignore[no-untyped-def]
    clean = CleanData.from_images(zoo.defender)
    model = zoo.get("badnets").model
    det = create_detector("ban", seed=0, budget=0.25, device="cpu", early_stop=False, eval_samples=600)
    return det, det.detect(model, clean), model, clean


def test_full_scale_predictions_are_the_verdicts_own(scanned) -> None:  # type: ignore[no-untyped-def]
    det, verdict, model, clean = scanned
    before = {k: b.clone() for k, b in model.state_dict().items()}
    _, pred = verdict_features(model, verdict, clean, 1.0, 400, 0, torch.device("cpu"))
    # the held-out histogram and these 400 clean images come from one distribution: same argmax, close share
    counts = torch.tensor(verdict.details["histogram"])
    assert int(torch.bincount(pred, minlength=len(counts)).argmax()) == int(counts.argmax())
    share = float((pred == int(counts.argmax())).double().mean())
    assert abs(share - float(counts.max()) / float(counts.sum())) < 0.1
    _, quiet = verdict_features(model, verdict, clean, 0.0, 400, 0, torch.device("cpu"))
    assert float((quiet == clean.sample(400, 0).y).double().mean()) > 0.7  # no noise: the model's own accuracy
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the figure leaves the model as it was


def test_figures_are_written_and_need_the_run(tmp_path: Path, scanned) -> None:  # type: ignore[no-untyped-def]
    det, verdict, model, clean = scanned
    paths = detection_figures(det, verdict, model, clean, tmp_path, seed=0)
    assert {p.name for p in paths} == {"histogram.png", "mask.png", "tsne.png"}
    assert all(p.stat().st_size > 1000 for p in paths)
    read_back = Verdict.from_dict(verdict.to_dict())  # JSON carries no tensors
    assert read_back.artifacts == {} and "artifacts" not in verdict.to_dict()
    with pytest.raises(BanError, match="rescan"):
        verdict_features(model, read_back, clean, 1.0, 50, 0, torch.device("cpu"))


def test_histogram_of_a_mean_shows_the_mean_it_decided_on(tmp_path: Path, scanned) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from PIL import Image

    from ban.detectors.ban_detector import averaged_scores
    from ban.figures.detection import histogram_figure

    _, verdict, _, _ = scanned
    assert verdict.settings["combine"] == "mean" and verdict.settings["restarts"] == 2  # the default
    averaged = averaged_scores(verdict)
    assert averaged is not None
    scores, per_run, seeds = averaged
    assert seeds == [0, 1]
    for c, s in enumerate(scores):  # the bars are the hand-computed mean of the two runs' per-class scores
        assert abs(s - (per_run[0][c] + per_run[1][c]) / 2) < 1e-5
    assert abs(max(scores) - verdict.score) < 1e-5
    assert [max(r) for r in per_run] == pytest.approx([r["score"] for r in verdict.details["restarts"]], abs=1e-5)
    best_of = replace(verdict, settings={**verdict.settings, "combine": "max"})
    assert averaged_scores(best_of) is None  # a best-of is the chosen run's own histogram
    wide = Image.open(histogram_figure(verdict, tmp_path / "mean.png")).size[0]
    narrow = Image.open(histogram_figure(best_of, tmp_path / "max.png")).size[0]
    assert wide > narrow * 1.3  # the mean's own panel is drawn beside the chosen run's histograms
