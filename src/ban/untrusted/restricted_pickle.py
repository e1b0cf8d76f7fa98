"""Pickles without running them: a numpy-only unpickler (CIFAR-10 batches) and a static import scan."""

from __future__ import annotations

import io
import pickle
import pickletools
from pathlib import Path
from typing import Any

from ban.errors import BanError

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}
_STRINGS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that refuses every global except numpy array reconstruction."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load global '{module}.{name}'")


def safe_unpickle(data: bytes, source: Path, fix: str) -> Any:
    """Unpickle `data` admitting only numpy arrays; anything else, or a corrupt stream, is a BanError."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise BanError(f"{source}: unsafe or corrupt pickle ({exc}); {fix}") from exc
    except Exception as exc:  # a mutated stream can fail in the unpickler or in numpy's reconstruction
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BanError(f"{source}: corrupt pickle ({detail}); {fix}") from exc


def pickle_imports(data: bytes) -> list[str] | None:
    """The globals a pickle stream would import, read off its opcodes without running it (None: not a pickle)."""
    found: list[str] = []
    strings: list[str] = []
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name in _STRINGS and isinstance(arg, str | bytes):
                strings.append(arg if isinstance(arg, str) else arg.decode("latin-1"))
            elif op.name in ("GLOBAL", "INST") and isinstance(arg, str):
                found.append(arg.replace(" ", "."))
            elif op.name == "STACK_GLOBAL":
                found.append(".".join(strings[-2:]) if len(strings) >= 2 else "an object")
            if op.name == "STOP":
                break
    except Exception:  # genops raises ValueError and others on a stream that is not a pickle
        return found or None
    return found
