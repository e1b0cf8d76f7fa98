"""Helpers of the behaviour locks (tests/test_detectors_regression.py, tests/test_mitigations_regression.py)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Torch on one CPU thread for the block (training a zoo model sets its own thread count)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def numbers_checksum(value: Any) -> float:
    """Σ|x| over every number (and tensor element) in a nested structure of dicts and lists."""
    if isinstance(value, dict):
        return math.fsum(numbers_checksum(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return math.fsum(numbers_checksum(v) for v in value)
    if isinstance(value, Tensor):
        return float(value.double().abs().sum())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return abs(float(value))
    return 0.0
