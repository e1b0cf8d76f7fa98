"""Helpers of the behaviour locks (tests/test_detectors_regression.py, tests/test_mitigations_regression.py)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import pytest
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


def weights_fingerprint(model: torch.nn.Module) -> float:
    """Σ|w| over every floating-point tensor of the state dict, in float64: which trained model this is."""
    return math.fsum(float(t.double().abs().sum()) for t in model.state_dict().values() if t.is_floating_point())


def require_recorded_model(model: torch.nn.Module, recorded: float, rerecord: str) -> None:
    """Skip a lock whose values were recorded on another zoo model.

    The zoo trains its models on the machine that runs the tests; another CPU's float kernels (or
    another torch build) give other weights from the same recipe, and every locked number moves with
    them although no code changed (measured 2026-12-03: the BadNets recipe trained on an AMD EPYC
    differs from the model the locks were first recorded on). A lock speaks only for its model.
    """
    got = weights_fingerprint(model)
    if not math.isclose(got, recorded, rel_tol=1e-9):
        pytest.skip(
            f"the zoo's BadNets model here (weights Σ|w| {got:.9g}) is not the one this lock was recorded on "
            f"({recorded:.9g}): another CPU or torch build trained it; re-record with `{rerecord}`"
        )
