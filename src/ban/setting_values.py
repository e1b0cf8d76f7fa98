"""How a method's setting is read from `--param` or a bench spec: the one conversion that detectors' and
mitigations' settings share, so a value that means nothing is refused rather than bent into one."""

from __future__ import annotations

import math
from typing import Any

from ban.errors import BanError

#: what a setting's error asks for, by the type of its default
KINDS: dict[type, str] = {bool: "true or false", int: "a whole number", float: "a finite number", str: "text"}


def kind_of(annotation: str) -> type | None:
    """The type a setting's annotation names (`int`, `float | None`, ...; the dataclasses' and constructors'
    annotations are strings), or None for any other annotation."""
    return _NAMED.get(annotation.removesuffix(" | None"))


_NAMED: dict[str, type] = {t.__name__: t for t in KINDS}


def convert_setting(name: str, kind: type, value: Any, default: Any = None, what: str = "setting") -> Any:
    """`value` as `kind` (bool, int, float or str); a one-line BanError naming the setting otherwise
    (`what`: the word for it, "setting" for methods, "parameter" for attacks).

    Stricter than the type's own constructor, each for a reason: a bool takes only true or false
    (bool("no") is True), a whole number no fraction (int(1.5) is 1), a number must be finite (NaN
    passes every range check after it).
    """
    try:
        if kind is bool:
            if value not in (True, False):
                raise ValueError(value)
            return bool(value)
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if kind is float:
            number = float(value)
            if not math.isfinite(number):
                raise ValueError(value)
            return number
        return kind(value)
    except (TypeError, ValueError, OverflowError):
        wanted, by_default = KINDS.get(kind, kind.__name__), "unset" if default is None else repr(default)
        raise BanError(f"{what} {name} must be {wanted} ({by_default} by default), got {value!r}") from None
