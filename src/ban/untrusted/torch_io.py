"""A plain PyTorch file through torch.load(weights_only=True) only, from bytes (never by file name)."""

from __future__ import annotations

import io
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from ban.errors import BanError
from ban.untrusted.restricted_pickle import pickle_imports

RESAVE = "re-save it as a state dict (torch.save(model.state_dict(), f)) or as safetensors"


class UnreadableTorchFile(BanError):
    """A file that `read_torch_object` refuses; `reason` is what is wrong with it, without the path or the fix,
    for callers that name the file in a message of their own (a search snapshot)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def _refuse_objects(path: Path, imports: list[str]) -> UnreadableTorchFile:
    shown = ", ".join(sorted(set(imports))[:3])
    return UnreadableTorchFile(
        f"{path} needs full unpickling (it imports {shown}), which could run code; ban refuses it: {RESAVE}",
        f"it imports {shown}, which could run code",
    )


def _unreadable(path: Path, reason: str) -> UnreadableTorchFile:
    return UnreadableTorchFile(
        f"cannot read {path} as a PyTorch checkpoint ({reason}); the file is corrupt or another format", reason
    )


def _imports_of(data: bytes) -> list[str]:
    """Globals the file's pickle would import: the stream itself, or `data.pkl` inside a torch zip."""
    if data[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                pkl = next((n for n in zf.namelist() if n.endswith("data.pkl")), None)
                data = zf.read(pkl) if pkl else b""
        except Exception:  # not a readable zip: nothing to scan
            return []
    return pickle_imports(data) or []


def read_torch_object(path: Path, data: bytes) -> Any:
    """What `torch.load(weights_only=True)` makes of `data` (the bytes of `path`); any failure is a BanError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": stderr keeps one line
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc))
        imports = [found.group(1)] if found else _imports_of(data)
        if imports:
            raise _refuse_objects(path, imports) from exc
        raise _unreadable(path, "not a PyTorch file") from exc
    except Exception as exc:  # torch's zip reader, the unpickler and storage rebuilding raise many types
        lines = str(exc).strip().splitlines()
        detail = lines[0][:200] if lines else ""
        if not isinstance(exc, RuntimeError):  # e.g. KeyError('3') says nothing without its type
            detail = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
        raise _unreadable(path, detail) from exc
