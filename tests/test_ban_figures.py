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
