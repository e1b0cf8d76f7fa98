"""The Python API's bad input: one BanError line naming the problem, never an error from inside torch.

Each case failed before with a TypeError, AttributeError, IndexError or RuntimeError (or, for a grey image
given to a colour model, trained without a word: (x - mean) broadcast it to three channels)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import ban
from ban.data.dataset import ImageData
from ban.errors import BanError


def _cases(zoo: Any, tmp: Path) -> list[tuple[Callable[[], object], str]]:
    ckpt = zoo.get("clean")
    test = zoo.test.subset(torch.arange(64))
    rgb = ImageData(test.x.repeat(1, 3, 1, 1), test.y.clone(), 10)
    quick = ban.TrainConfig(epochs=1, device="cpu", quiet=True)
    return [
        (lambda: ban.load_model(5), "expected the checkpoint's path (a str or Path), got int"),
        (lambda: ban.load_model(zoo.path("clean"), input_size=0), "--input-size 0 is outside 1..1024"),
        (lambda: ban.save_model(tmp / "m.safetensors", "model", ckpt.meta), "save_model takes a torch nn.Module"),
        (lambda: ban.save_model(tmp / "m.safetensors", ckpt.model, None), "save_model takes the metadata as a dict"),
        (
            lambda: ban.save_model(tmp / "m.safetensors", ckpt.model, {**ckpt.meta, "note": object()}),
            "is not plain JSON data",
        ),
        (
            lambda: ban.evaluate(ckpt.model, rgb, device="cpu"),
            "test data has 3-channel images but the model takes 1-channel ones",
        ),
        (
            lambda: ban.evaluate(ckpt.model, test, ban.create_attack("badnets", target=3), device="cpu"),
            "the badnets attack has no trigger yet",
        ),
        (lambda: ban.evaluate(ckpt.model, test.x, device="cpu"), "evaluate takes the test images as ban ImageData"),
        (lambda: ban.create_model("small_cnn", 10, 0), "in_channels must be at least 1"),
        (lambda: ban.train_model(ban.create_model("small_cnn", 10, 1), test.subset([]), quick), "no training images"),
        (
            lambda: ban.train_model(ban.create_model("small_cnn", 5, 1), test, quick),
            "training data has 10 classes but the model outputs 5; build the model for the data",
        ),
        (
            lambda: ban.train_model(ban.create_model("small_cnn", 10, 3), test, quick),
            "training data has 1-channel images but the model takes 3-channel ones",
        ),
    ]


def test_bad_api_input_is_one_ban_error_line(zoo: Any, tmp_path: Path) -> None:
    for call, needle in _cases(zoo, tmp_path):
        with pytest.raises(BanError) as info:
            call()
        message = str(info.value)
        assert needle in message and "\n" not in message, message
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_evaluate_takes_a_checkpoint_with_its_attack(zoo: Any) -> None:
    ckpt, test = zoo.get("badnets"), zoo.test.subset(torch.arange(400))
    whole = ban.evaluate(ckpt, test, device="cpu")
    parts = ban.evaluate(ckpt.model, test, ckpt.attack, device="cpu")
    assert whole.asr is not None and (whole.ba, whole.asr) == (parts.ba, parts.asr)
