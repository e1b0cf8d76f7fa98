"""The calibrated score: a detector's score ranked among a reference zoo's clean models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ban.calibration import (
    MIN_CLEAN,
    Reference,
    calibrate,
    load_references,
    references_from_detections,
    save_references,
    select_reference,
)
from ban.errors import BanError

SETTINGS = {"preset": "paper", "statistic": "no-mask", "rule": "pooled", "eps": 0.3, "quiet": True, "seed": 0}


def _ref(scores: tuple[float, ...] = (0.12, 0.2, 0.31, 0.4, 0.4, 0.55), **kw: Any) -> Reference:
    base: dict[str, Any] = {
        "detector": "ban",
        "arch": "resnet18",
        "width": 0.25,
        "dataset": "fashion-mnist",
        "num_classes": 10,
        "settings": {k: v for k, v in SETTINGS.items() if k not in ("quiet", "seed")},
        "clean_scores": scores,
    }
    return Reference(**{**base, **kw})


def test_rank_matches_a_hand_count() -> None:
    ref = _ref()
    # 0.4 ties two clean scores and 0.55 is above it: 3 of 6 clean models scored at least 0.4
    c = calibrate(ref, 0.4)
    assert (c.clean_models, c.clean_at_or_above) == (6, 3)
    assert c.false_alarm_rate == pytest.approx(0.5)
    assert c.p_value == pytest.approx(4 / 7)
    top = calibrate(ref, 0.9)
    assert top.clean_at_or_above == 0 and top.p_value == pytest.approx(1 / 7)
    assert top.sentence().startswith("higher than all 6 clean models")
    assert calibrate(ref, 0.0).sentence().startswith("not higher than any of the 6")


def test_reference_file_round_trip_and_selection(tmp_path: Path) -> None:
    path = save_references(tmp_path / "ref.json", [_ref(), _ref(arch="vgg16_bn", width=0.25)])
    refs = load_references(path)
    assert len(refs) == 2 and refs[0].clean_scores == _ref().clean_scores
    got = select_reference(refs, "ban", "vgg16_bn", 0.25, "fashion-mnist", 10, SETTINGS)
    assert got.arch == "vgg16_bn"


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"arch": "preact_resnet18"}, "architecture"),
        ({"width": 1.0}, "width"),
        ({"dataset": "cifar10"}, "dataset"),
        ({"num_classes": 43}, "class count"),
    ],
)
def test_mismatched_reference_is_one_clear_error(change: dict[str, Any], words: str) -> None:
    want = {"arch": "resnet18", "width": 0.25, "dataset": "fashion-mnist", "num_classes": 10, **change}
    with pytest.raises(BanError, match=words) as info:
        select_reference([_ref()], "ban", want["arch"], want["width"], want["dataset"], want["num_classes"], SETTINGS)
    assert "\n" not in str(info.value)


def test_too_few_clean_models_and_other_settings_are_refused() -> None:
    few = _ref(scores=tuple(0.1 * i for i in range(MIN_CLEAN - 1)))
    with pytest.raises(BanError, match=f"fewer than {MIN_CLEAN}"):
        select_reference([few], "ban", "resnet18", 0.25, "fashion-mnist", 10, SETTINGS)
    with pytest.raises(BanError, match="eps"):
        select_reference([_ref()], "ban", "resnet18", 0.25, "fashion-mnist", 10, {**SETTINGS, "eps": 0.5})
    with pytest.raises(BanError, match="no reference for detector 'nc'"):
        select_reference([_ref()], "nc", "resnet18", 0.25, "fashion-mnist", 10, SETTINGS)


@pytest.mark.parametrize("content", ["", "{not json", "[1, 2]", '{"format": "other", "references": []}'])
def test_broken_reference_files_are_refused(tmp_path: Path, content: str) -> None:
    p = tmp_path / "ref.json"
    p.write_text(content)
    with pytest.raises(BanError) as info:
        load_references(p)
    assert "\n" not in str(info.value)


def test_a_folder_or_a_missing_reference_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(BanError) as info:
        load_references(tmp_path)
    assert str(info.value) == f"{tmp_path} is a folder, not a reference file; pass the file itself"
    with pytest.raises(BanError) as info:
        load_references(tmp_path / "nosuch.json")
    assert str(info.value) == f"reference file {tmp_path / 'nosuch.json'} not found; check the path"


def test_references_come_from_the_clean_results_only() -> None:
    def result(score: float, backdoored: bool) -> dict[str, Any]:
        model = {"backdoored": backdoored, "arch_label": "resnet18-w0.25", "arch": "resnet18", "width": 0.25}
        verdict = {"score": score, "settings": SETTINGS, "details": {"histogram": [0] * 10}}
        return {"method": "ban", "detector": "ban", "model": model, "verdict": verdict}

    rows = [result(0.3, False), result(0.99, True), result(0.1, False)]
    (ref,) = references_from_detections(rows, "fashion-mnist", "zoo")
    assert ref.clean_scores == (0.1, 0.3) and ref.num_classes == 10
    assert json.loads(json.dumps(ref.to_dict()))["clean_scores"] == [0.1, 0.3]


def test_detect_reports_the_rank_among_the_reference(tmp_path: Path, zoo, capsys) -> None:  # type: ignore[no-untyped-def]
    from ban.cli import main

    ckpt = zoo.get("clean")
    path = tmp_path / "clean.safetensors"
    from ban.checkpoint import save_model

    save_model(path, ckpt.model, ckpt.meta)
    # the scan's verdict is not what is tested, only its rank: the cheapest scan will do (2026-12-05: 16.8 s -> 2 s)
    scan = ["detect", str(path), "--budget", "0.05", "--clean-samples", "1200", "--param", "eval_samples=300", "-q"]
    first = tmp_path / "v.json"
    assert main([*scan, "--json", str(first)]) == 0
    verdict = json.loads(first.read_text())
    score, settings = verdict["score"], verdict["settings"]
    scores = (score - 0.2, score - 0.1, score, score + 0.05, score + 0.1, score - 0.3)  # 3 at or above
    ref = _ref(scores, arch=ckpt.meta["arch"], width=float(ckpt.meta["width"]), settings=settings)
    ref_path = save_references(tmp_path / "ref.json", [ref])
    out = tmp_path / "calibrated.json"
    assert main([*scan, "--reference", str(ref_path), "--json", str(out)]) == 0
    cal = json.loads(out.read_text())["details"]["calibration"]
    assert (cal["clean_models"], cal["clean_at_or_above"]) == (6, 3)
    assert cal["p_value"] == pytest.approx(4 / 7)
    assert "3 of 6 clean models scored at least this much" in capsys.readouterr().out
    other = save_references(tmp_path / "other.json", [_ref(scores, arch="vgg16_bn", settings=settings)])
    assert main([*scan, "--reference", str(other)]) == 2
    assert "architecture vgg16," in capsys.readouterr().err  # the registry's name for vgg16_bn


def test_the_reference_with_the_scans_settings_is_chosen() -> None:
    base = _ref().settings
    paper, other = _ref(source="a"), _ref(settings={**base, "statistic": "negative-mask"}, source="b")
    got = select_reference([other, paper], "ban", "resnet18", 0.25, "fashion-mnist", 10, SETTINGS)
    assert got.source == "a"
