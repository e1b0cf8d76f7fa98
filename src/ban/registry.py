"""`Registry`: named entries (models, datasets, attacks, detectors, mitigations) found by any spelling.

Names are normalised here and nowhere else: case, surrounding spaces and `_` vs `-` do not matter,
and each entry may carry aliases (`cifar` and `cifar-10` for `cifar10`). Iterating a registry gives
the canonical names in registration order; `list()` gives them sorted. An unknown name is a
one-line `BanError` that lists the choices.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from ban.errors import BanError

T = TypeVar("T")
R = TypeVar("R")


def preset_values(who: str, presets: Mapping[str, dict[str, Any]], preset: str) -> dict[str, Any]:
    """The settings of `who`'s preset `preset`; a name it lacks is a BanError listing its presets."""
    if preset in presets:
        return dict(presets[preset])
    if not presets:
        raise BanError(f"{who} has no presets; drop preset={preset}")
    raise BanError(f"{who} has no preset '{preset}'; choose one of {', '.join(presets)}")


def normalize(name: str) -> str:
    """The lookup key of a name: lower case, no surrounding spaces, `_` read as `-`."""
    return name.strip().lower().replace("_", "-")


class Registry(Mapping[str, T], Generic[T]):
    """A read-only mapping from canonical names to entries, whose lookups accept any spelling.

    `kind` names the entries in messages ("unknown {kind} 'x'; choose one of a, b").
    `registry[name]`, `name in registry` and `registry.get(name)` normalise `name` and follow aliases.
    """

    def __init__(self, kind: str, label: str | None = None) -> None:
        self.kind = kind
        self.label = label or kind
        self._entries: dict[str, T] = {}
        self._keys: dict[str, str] = {}
        self._aliases: dict[str, list[str]] = {}

    def register(self, name: str, entry: T, aliases: Iterable[str] = ()) -> T:
        """Add `entry` under canonical `name` and its `aliases`; a spelling already taken is a ValueError."""
        spellings = [name, *aliases]
        for spelling in spellings:
            taken = self._keys.get(normalize(spelling))
            if taken is not None:
                raise ValueError(f"{self.kind} name '{spelling}' is already registered (as '{taken}')")
        self._entries[name] = entry
        self._aliases[name] = list(aliases)
        for spelling in spellings:
            self._keys[normalize(spelling)] = name
        return entry

    def register_named(self, *entries: T) -> None:
        """Register each entry under its own `name` attribute (a method class's `name: ClassVar[str]`)."""
        for entry in entries:
            self.register(entry.name, entry)

    def preset_lines(self, flag: str) -> list[str]:
        """One line per named preset of the entries (their `PRESETS`; "paper", the defaults, left out),
        `  NAME FLAG preset=P: key=value, ...` (for `ban info`)."""
        lines = []
        for key in self.list():
            for preset, values in getattr(self._entries[key], "PRESETS", {}).items():
                if preset != "paper":
                    shown = ", ".join(f"{k}={v}" for k, v in values.items()) or "options of its own (its docs)"
                    lines.append(f"  {key} {flag} preset={preset}: {shown}")
        return lines

    def resolve(self, name: str) -> str | None:
        """The canonical name that `name` spells, or None."""
        return self._keys.get(normalize(name)) if isinstance(name, str) else None

    def canonical(self, name: str) -> str:
        """The canonical name that `name` spells; an unknown name is a BanError listing the choices."""
        key = self.resolve(name)
        if key is None:
            raise self.unknown(name)
        return key

    def entry(self, name: str) -> T:
        """The entry that `name` spells; an unknown name is a BanError listing the choices."""
        return self._entries[self.canonical(name)]

    def exact(self, name: str) -> T | None:
        """The entry registered under exactly the canonical `name` (no normalisation, no aliases), or None."""
        return self._entries.get(name)

    def create(self: Registry[Callable[..., R]], name: str, **settings: Any) -> R:
        """Call the entry that `name` spells with `settings`; settings it refuses are a BanError."""
        key = self.canonical(name)
        try:
            return self._entries[key](**settings)
        except TypeError as exc:
            raise BanError(f"bad settings for {self.kind} '{key}': {exc}") from exc

    def list(self) -> list[str]:
        """The canonical names, sorted."""
        return sorted(self._entries)

    def aliases(self, name: str) -> list[str]:
        """The aliases of the entry that `name` spells, in registration order."""
        return list(self._aliases[self.canonical(name)])

    def choices(self) -> str:
        """The canonical names as one comma-separated line."""
        return ", ".join(self.list()) or "none registered yet"

    def unknown(self, name: str) -> BanError:
        """The error for a name that spells no entry: one line naming the choices."""
        return BanError(f"unknown {self.label} '{name}'; choose one of {self.choices()}")

    def __getitem__(self, name: str) -> T:
        key = self.resolve(name)
        if key is None:
            raise KeyError(name)
        return self._entries[key]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.resolve(name) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"
