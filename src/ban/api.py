"""`ban.detect` and `ban.mitigate`: the one-call Python API over the detector and mitigation registries."""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from ban.checkpoint import Checkpoint
from ban.clean_data import CleanData
from ban.data.dataset import ImageData
from ban.detectors import Verdict, create_detector
from ban.errors import BanError
from ban.mitigations import MitigationReport, create_mitigation
from ban.model_fit import check_fits


def _model(model: Checkpoint | nn.Module) -> nn.Module:
    if isinstance(model, Checkpoint):
        return model.model
    if isinstance(model, nn.Module):
        return model
    hint = "; load the file first with ban.load_model(path)" if isinstance(model, str | os.PathLike) else ""
    raise BanError(f"expected a ban Checkpoint or a torch nn.Module, got {type(model).__name__}{hint}")


def _clean(data: CleanData | ImageData) -> CleanData:
    if isinstance(data, CleanData):
        return data
    if isinstance(data, ImageData):
        return CleanData.from_images(data)
    raise BanError(f"expected clean data as ban CleanData or ImageData, got {type(data).__name__}")


def _fitting(model: Checkpoint | nn.Module, data: CleanData | ImageData, what: str) -> CleanData | ImageData:
    """`data`, checked against a Checkpoint's recorded input shape and classes: a model with adaptive pooling
    reads images of any size, and would be scanned on the wrong ones without complaint."""
    if isinstance(model, Checkpoint) and model.input_size_known and isinstance(data, CleanData | ImageData):
        check_fits(data, model.num_classes, model.input_shape, what)
    return data


def detect(
    model: Checkpoint | nn.Module, clean_data: CleanData | ImageData, detector: str = "ban", **settings: Any
) -> Verdict:
    """Scan `model` with `detector` (settings: seed, device, quiet, budget, preset, ...) on the defender's clean data.

    A Checkpoint's attack is never shown to the detector: only its model is passed on.
    """
    clean = _clean(_fitting(model, clean_data, "clean data"))
    return create_detector(detector, **settings).detect(_model(model), clean)


def mitigate(
    model: Checkpoint | nn.Module,
    clean_data: CleanData | ImageData,
    method: str = "ban",
    test: ImageData | None = None,
    **settings: Any,
) -> tuple[nn.Module, MitigationReport]:
    """Repair a copy of `model` with `method`; BA on `test` (and ASR when `model` is a Checkpoint with its attack)."""
    attack = model.attack if isinstance(model, Checkpoint) else None
    if test is not None:
        _fitting(model, test, "test data")
    clean = _clean(_fitting(model, clean_data, "clean data"))
    return create_mitigation(method, **settings).run(_model(model), clean, test, attack)
