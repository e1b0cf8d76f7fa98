"""JSON text from an untrusted file, required to be one object."""

from __future__ import annotations

import json
from typing import Any

from ban.errors import BanError

_JSON_TYPES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


def parse_json_object(text: str | bytes, what: str, fix: str) -> dict[str, Any]:
    """`text` parsed as a JSON object; anything else (bad syntax, an array, deep nesting) is a BanError.

    `what` names the text ("the ban metadata of m.safetensors"); `fix` says what to do about it.
    """
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        detail = str(exc).splitlines()[0] if isinstance(exc, ValueError) else "nested too deeply"
        raise BanError(f"{what} is not valid JSON ({detail}); {fix}") from exc
    if not isinstance(obj, dict):
        raise BanError(f"{what} is a JSON {_JSON_TYPES.get(type(obj), 'value')}, not an object; {fix}")
    return obj
