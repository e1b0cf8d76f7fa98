"""The `ban` metadata of a checkpoint, read from a stranger's file: JSON, then every field ban uses checked."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ban.errors import BanError
from ban.models.registry import canonical_arch
from ban.untrusted.json_io import parse_json_object

MAX_CLASSES = 100_000
MAX_CHANNELS = 16
MAX_SIDE = 1024
MAX_WIDTH = 16.0
FIX = "the checkpoint is corrupt or was not written by ban: re-export it, or load its tensors as a plain state dict"


def _int(value: Any, lo: int, hi: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _shape(value: Any, channels: int | None = None) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 3
        and _int(value[0], 1, MAX_CHANNELS)
        and all(_int(v, 1, MAX_SIDE) for v in value[1:])
        and (channels is None or value[0] == channels)
    )


class _Checker:
    def __init__(self, meta: dict[str, Any], path: Path) -> None:
        self.meta = meta
        self.path = path

    def fail(self, field: str, expected: str) -> BanError:
        value = repr(self.meta.get(field, "<missing>"))
        value = value if len(value) <= 40 else value[:37] + "..."
        return BanError(f"{self.path}: ban metadata field '{field}' is {value}, expected {expected}; {FIX}")

    def require(self, field: str, ok: bool, expected: str) -> None:
        if not ok:
            raise self.fail(field, expected)


def parse_ban_metadata(raw: str, path: Path) -> dict[str, Any]:
    """The `ban` header entry of `path` as a checked dict (see `check_ban_metadata`)."""
    meta = parse_json_object(raw, f"the ban metadata of {path}", FIX)
    check_ban_metadata(meta, path)
    return meta


def check_ban_metadata(meta: dict[str, Any], path: Path) -> None:
    """Raise a BanError naming the first field that a ban checkpoint's loader or the commands could not use."""
    c = _Checker(meta, path)
    c.require("arch", isinstance(meta.get("arch"), str), "an architecture name")
    try:
        meta["arch"] = canonical_arch(meta["arch"])
    except BanError as exc:
        raise BanError(f"{path}: {exc}") from exc
    c.require("num_classes", _int(meta.get("num_classes"), 2, MAX_CLASSES), f"an integer in 2..{MAX_CLASSES}")
    c.require("in_channels", _int(meta.get("in_channels"), 1, MAX_CHANNELS), f"an integer in 1..{MAX_CHANNELS}")
    ch = meta["in_channels"]
    width = meta.get("width", 1.0)
    c.require("width", _number(width) and 0 < width <= MAX_WIDTH, f"a number in (0, {MAX_WIDTH}]")
    c.require("input_shape", _shape(meta.get("input_shape"), ch), f"[{ch}, H, W] with 1 <= H, W <= {MAX_SIDE}")
    norm = meta.get("normalization", {})
    c.require("normalization", isinstance(norm, dict), "an object with mean and std")
    for key in ("mean", "std"):
        values = norm.get(key)
        ok = values is None or (isinstance(values, list) and len(values) == ch and all(_number(v) for v in values))
        c.require("normalization", ok, f"{key} as a list of {ch} numbers")
    for field in ("seed", "split_seed", "target"):
        c.require(field, meta.get(field) is None or _int(meta[field], -(2**63), 2**63 - 1), "an integer or null")
    c.require("dataset", meta.get("dataset") is None or isinstance(meta["dataset"], str), "a dataset name or null")
    for field in ("ba", "asr"):
        c.require(field, meta.get(field) is None or _number(meta[field]), "a number or null")
    attack = meta.get("attack")
    if attack:
        c.require("attack", isinstance(attack, dict) and isinstance(attack.get("name"), str), "an object with a name")
        c.require("attack", isinstance(attack.get("params", {}), dict), "params as an object")
        shape = attack.get("image_shape")
        c.require("attack", shape is None or _shape(shape), "image_shape as [C, H, W]")
        classes = attack.get("num_classes")
        c.require("attack", classes is None or _int(classes, 2, MAX_CLASSES), f"num_classes in 2..{MAX_CLASSES}")
