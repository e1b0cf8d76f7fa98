"""Results of one method column computed under different settings: the stale ones of an older version.

A result's path is keyed by the spec's settings of its method, not by the settings the code resolves
them to, so when a default changes in code (a new ban version) the results of the old default are
still found and reused. Every result records its resolved settings; a column whose results disagree
mixes versions, and the report says so, naming each setting and its values.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any

# where each kind of result keeps its method (the column label falls back to it) and its resolved settings
_LABEL = {"detect": "detector", "mitigate": "mitigation"}
_SETTINGS = {"detect": "verdict", "mitigate": "report"}


def _value(v: Any) -> str:
    return json.dumps(v, sort_keys=True)


def mixed_settings(results: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Counter[str]]]:
    """(kind, column) -> setting -> Counter(value -> results), for the settings that differ within a column."""
    values: dict[tuple[str, str], dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
    counts: Counter[tuple[str, str]] = Counter()
    for r in results:
        kind = r["kind"]
        column = (kind, str(r.get("method") or r[_LABEL[kind]]))  # two columns of one detector are two columns
        settings = r[_SETTINGS[kind]].get("settings") or {}
        counts[column] += 1
        for name, v in settings.items():
            values[column][name][_value(v)] += 1
    out: dict[tuple[str, str], dict[str, Counter[str]]] = {}
    for column, by_name in values.items():
        differing = {
            name: c for name, c in by_name.items() if len(c) > 1 or sum(c.values()) != counts[column]
        }  # two values, or the setting missing from some results
        if differing:
            out[column] = differing
    return out


def mixed_settings_lines(results: list[dict[str, Any]]) -> list[str]:
    """One warning line per column with mixed settings (empty when every column is consistent)."""
    lines = []
    for (kind, column), by_name in sorted(mixed_settings(results).items()):
        parts = [
            f"{name} = " + ", ".join(f"{v} ({n})" for v, n in sorted(c.items())) for name, c in sorted(by_name.items())
        ]
        lines.append(
            f"the `{column}` {'detection' if kind == 'detect' else 'mitigation'} results were computed "
            f"under different settings ({'; '.join(parts)}), "
            "likely by different ban versions; delete the stale result files and rerun `ban bench run`."
        )
    return lines
