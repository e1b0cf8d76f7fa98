"""The reference zoo trains a recipe at its own thread count and leaves the caller's as it was."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import torch

from ban.zoo import BASE, Zoo

# one epoch on 1000 images: a few seconds, a recipe no other test uses
TINY = dataclasses.replace(BASE, epochs=1, subset=1000, test_subset=200, seed=11)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="training takes min(2, cores) threads: one core shows nothing")
def test_training_keeps_the_callers_thread_count(tmp_path: Path) -> None:
    """A benchmark that asks for one thread and then for a zoo model that is not cached yet used to go on
    with the two threads of the training, and timed them as one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        zoo = Zoo(tmp_path, {"tiny": TINY})
        trained = zoo.get("tiny")
        assert torch.get_num_threads() == 1
        assert zoo.path("tiny").exists() and trained.meta["seed"] == 11
    finally:
        torch.set_num_threads(before)
