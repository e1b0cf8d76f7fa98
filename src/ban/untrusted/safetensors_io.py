"""Safetensors files read from bytes ban holds: the header checked first, the tensors by the library."""

from __future__ import annotations

import warnings
from pathlib import Path

from safetensors.torch import load as load_safetensors
from torch import Tensor

from ban.errors import BanError
from ban.untrusted.files import open_regular, read_bytes
from ban.untrusted.json_io import parse_json_object

MAX_HEADER_BYTES = 100_000_000  # the limit the safetensors library itself applies
FIX = "the file is corrupt or not safetensors: re-export or re-download it"


def _header_length(head: bytes, size: int, path: Path) -> int:
    if size < 8:
        raise BanError(
            f"{path} is {size} bytes long, too short for a safetensors file (it starts with an 8-byte header length); "
            f"{FIX}"
        )
    n = int.from_bytes(head[:8], "little")
    if n == 0 or n > size - 8:
        raise BanError(f"{path}: header length {n} does not fit the file's {size - 8} bytes after it; {FIX}")
    if n > MAX_HEADER_BYTES:
        raise BanError(f"{path}: header length {n} exceeds safetensors' limit of {MAX_HEADER_BYTES} bytes; {FIX}")
    return n


def looks_like_safetensors(head: bytes, size: int) -> bool:
    """Whether a file of `size` bytes starting with `head` (≥ 9 bytes) has the layout of a safetensors file."""
    if size < 9 or len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return 0 < n <= size - 8 and head[8:9] == b"{"


def _parse_header(raw: bytes, path: Path) -> dict[str, str]:
    """The `__metadata__` of a safetensors header (string to string), after checking the header is a JSON object."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BanError(
            f"{path}: the safetensors header is not UTF-8 text ({exc.reason} at byte {exc.start}); {FIX}"
        ) from exc
    header = parse_json_object(text, f"the safetensors header of {path}", FIX)
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise BanError(f"{path}: the safetensors __metadata__ must map strings to strings; {FIX}")
    return meta


def read_safetensors_metadata(path: Path) -> dict[str, str]:
    """The header metadata of the safetensors file at `path`, reading only the header."""
    with open_regular(path, "checkpoint") as f:
        size = f.seek(0, 2)
        f.seek(0)
        n = _header_length(f.read(8), size, path)
        return _parse_header(f.read(n), path)


def read_safetensors(path: Path, data: bytes | None = None) -> tuple[dict[str, Tensor], dict[str, str]]:
    """All tensors and the header metadata of the safetensors file at `path` (its bytes `data`, when read already)."""
    data = read_bytes(path, "checkpoint") if data is None else data
    n = _header_length(data[:8], len(data), path)
    meta = _parse_header(data[8 : 8 + n], path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns that the bytes buffer is read-only
            tensors = load_safetensors(data)
    except Exception as exc:  # SafetensorError, an unknown dtype (KeyError), an inconsistent shape, ...
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BanError(f"{path} is a corrupt safetensors file ({detail}); {FIX}") from exc
    return tensors, meta
