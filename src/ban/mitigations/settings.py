"""`MitigationSettings`: the settings every mitigation has, validated once; each method's dataclass extends it.

A method's settings are one frozen dataclass: its fields are the keyword settings the method accepts
(`create_mitigation(name, **settings)`, `ban mitigate --param key=value`, a bench spec's `settings:`),
with the paper's values as defaults. `__post_init__` converts each value to its field's type and
raises a one-line `BanError` for a value the method cannot use. The budget is recorded once and
applied where a count of the paper's epochs, rounds or iterations is used (`scaled`).
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, fields
from typing import Any, ClassVar

from ban.errors import BanError
from ban.setting_values import convert_setting, kind_of

_COMMON = ("seed", "device", "quiet", "budget", "clean_samples")


def check_budget(budget: float | None) -> float:
    """The budget as a positive float (None → 1.0, the paper's setting)."""
    if budget is None:
        return 1.0
    try:
        value = float(budget)
    except (TypeError, ValueError) as exc:
        raise BanError(f"budget must be a positive number (a fraction of the paper's epochs), got {budget!r}") from exc
    if not value > 0 or not math.isfinite(value):
        raise BanError(f"budget must be a positive number (1.0 = the paper's epochs, 0.1 = a tenth), got {budget}")
    return value


def scale_epochs(epochs: int, budget: float | None) -> int:
    """`epochs` scaled by the compute budget (a fraction of the paper's setting; None = 1.0), at least 1."""
    if budget is None:
        return epochs
    return max(1, int(round(epochs * check_budget(budget))))


def _converted(name: str, kind: str, value: Any, default: Any = None) -> Any:
    """`value` as the type `kind` names (`int`, `float | None`, ...); other kinds are kept as given."""
    optional = kind.endswith(" | None")
    cast = kind_of(kind)
    if cast is None or (value is None and optional):
        return value
    return convert_setting(name, cast, value, default)


@dataclass(frozen=True, kw_only=True)
class MitigationSettings:
    """What every mitigation has.

    seed: every random draw (the clean sample included); device: "auto", "cpu", "cuda", ...;
    quiet: no progress bars; budget: a fraction of the paper's epochs, rounds or iterations
    (1.0 = the paper's, 0.1 = a tenth); clean_samples: how many clean images the method draws
    (class-balanced, with `seed`).
    """

    seed: int = 0
    device: str = "auto"
    quiet: bool = True
    budget: float = 1.0
    clean_samples: int = 2500

    #: counts of the paper's epochs, rounds or iterations: `recorded` gives `paper_NAME` and NAME × budget
    scaled_fields: ClassVar[tuple[str, ...]] = ()
    #: settings that must be > 0
    positive: ClassVar[tuple[str, ...]] = ("clean_samples",)

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name != "budget":
                default = None if f.default is MISSING else f.default
                object.__setattr__(self, f.name, _converted(f.name, str(f.type), getattr(self, f.name), default))
        object.__setattr__(self, "budget", check_budget(self.budget))
        for name in self.positive:
            if not getattr(self, name) > 0:
                raise BanError(f"setting {name} must be positive, got {getattr(self, name)}")

    @classmethod
    def names(cls) -> list[str]:
        """Every setting this dataclass accepts."""
        return [f.name for f in fields(cls)]

    def scaled(self, count: int) -> int:
        """`count` (the paper's epochs, rounds or iterations) scaled by the budget, at least 1."""
        return scale_epochs(count, self.budget)

    def recorded(self) -> dict[str, Any]:
        """What a report records: budget, clean_samples and the method's own settings (a count in
        `scaled_fields` twice: `paper_NAME` as given, NAME as scaled by the budget)."""
        out: dict[str, Any] = {"budget": self.budget, "clean_samples": self.clean_samples}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in self.scaled_fields:
                out[f"paper_{f.name}"] = value
                value = self.scaled(value)
            if f.name not in _COMMON:
                out[f.name] = value
        return out
