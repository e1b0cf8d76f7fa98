"""A long search's state on disk, so that a run stopped part-way (a killed process, the end of a
sitting) continues where it stopped instead of starting again.

A snapshot is one file of tensors, numbers and strings, written beside its final result (write, then
rename) and read back through `ban.untrusted` (torch's weights-only loader): nothing in it is
unpickled but tensors and plain values. It carries a fingerprint of what produced it (settings, data,
model); a snapshot of other settings is not resumed.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ban.errors import BanError
from ban.untrusted import read_bytes, read_torch_object
from ban.utils import atomic_path


def fingerprint(*parts: Any) -> str:
    """A short hash of JSON-able parts (settings, shapes) and tensors (the data a search runs on)."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, torch.Tensor):
            t = p.detach().to("cpu", torch.float64).contiguous()
            h.update(repr(tuple(t.shape)).encode())
            h.update(t.numpy().tobytes())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:24]


class Snapshot:
    """One search's state at `path` (None: no snapshots, every method a no-op).

    `load()` gives the saved state when its fingerprint matches (else None); `save(state)` writes it when
    `every` seconds have passed since the last write (0: every call); `clear()` removes it once the
    search has finished. `elapsed()` is the search's time in all sittings so far.
    """

    def __init__(self, path: str | Path | None, key: str, every: float = 60.0) -> None:
        self.path = None if path is None else Path(path)
        self.key = key
        self.every = every
        self.before = 0.0  # seconds spent in earlier sittings
        self.start = time.perf_counter()
        self.last_save = self.start

    def load(self) -> dict[str, Any] | None:
        """The saved state of this search, or None (no file, or a file of other settings)."""
        if self.path is None or not self.path.is_file():
            return None
        try:  # through the untrusted-file layer: tensors and plain values only, never an object
            state = read_torch_object(self.path, read_bytes(self.path, "search snapshot"))
        except BanError as e:  # a file that is not a snapshot
            raise BanError(
                f"cannot resume the search from {self.path} ({str(e).split('(', 1)[-1].split(')', 1)[0]}); "
                "delete it to start the search again"
            ) from None
        if not isinstance(state, dict) or state.get("key") != self.key:
            return None
        self.before = float(state.get("elapsed", 0.0))
        return state

    def elapsed(self) -> float:
        return self.before + time.perf_counter() - self.start

    def save(self, state: Callable[[], dict[str, Any]]) -> bool:
        """Write the state that `state()` gathers if it is time to (always when `every` is 0); True when
        written. The state is gathered only then: a search without snapshots copies nothing per epoch."""
        now = time.perf_counter()
        if self.path is None or now - self.last_save < self.every:
            return False
        with atomic_path(self.path) as tmp:
            torch.save({**state(), "key": self.key, "elapsed": self.elapsed()}, tmp)
        self.last_save = now
        return True

    def clear(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
