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
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from ban.errors import BanError
from ban.untrusted import UnreadableTorchFile, read_bytes, read_torch_object
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
        except UnreadableTorchFile as e:  # a file that is not a snapshot
            raise BanError(
                f"cannot resume the search from {self.path} ({e.reason}); delete it to start the search again"
            ) from None
        if not isinstance(state, dict) or state.get("key") != self.key:
            return None
        self.before = float(state.get("elapsed", 0.0))
        return state

    def elapsed(self) -> float:
        return self.before + time.perf_counter() - self.start

    def save(self, state: Callable[[], dict[str, Any]], force: bool = False) -> bool:
        """Write the state that `state()` gathers if it is time to (always when `every` is 0 or `force`); True
        when written. The state is gathered only then: a search without snapshots copies nothing per epoch."""
        now = time.perf_counter()
        if self.path is None or (not force and now - self.last_save < self.every):
            return False
        with atomic_path(self.path) as tmp:
            torch.save({**state(), "key": self.key, "elapsed": self.elapsed()}, tmp)
        self.last_save = now
        return True

    def clear(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


class Stateful(Protocol):
    """What has a state of its own to save and restore: a module, an optimiser."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: dict[str, Any], /) -> Any: ...


#: a piece of a loop's state: a module, an optimiser or another `Stateful` (its state_dict), a tensor (a
#: parameter, restored in place), a numpy array (restored in place), a generator (its state), a list of plain
#: values (restored in place)
Part = Stateful | Tensor | np.ndarray | torch.Generator | list[Any]


def state_of(part: Part) -> Any:
    """What a snapshot keeps of `part` (see `Part`)."""
    if isinstance(part, torch.Generator):
        return part.get_state()
    if isinstance(part, Tensor):
        return part.detach().cpu()
    if isinstance(part, np.ndarray):
        return torch.from_numpy(part.copy())
    if isinstance(part, list):
        return list(part)
    return part.state_dict()


def restore(part: Part, state: Any) -> None:
    """Put `state` (from `state_of`) back into `part`, in place."""
    if isinstance(part, torch.Generator):
        part.set_state(state)
    elif isinstance(part, Tensor):
        with torch.no_grad():
            part.copy_(state)
    elif isinstance(part, np.ndarray):
        part[...] = state.numpy()
    elif isinstance(part, list):
        part[:] = state
    else:
        part.load_state_dict(state)


class Resumable:
    """A loop of epochs named `name` whose whole state (`parts`, given to `resume`) a snapshot keeps after
    whole epochs, so that a run stopped part-way continues after the last epoch saved, exactly as if it had
    not stopped. `path` None: no snapshot (every method a no-op but `resume`, which then returns 0).

    `first` is the epoch it continued at (0: it started afresh); `snapshot.before` the seconds of its
    earlier sittings. Whoever runs the loops clears their snapshots once the whole run has finished.
    """

    def __init__(self, name: str, path: str | Path | None, key: str, every: float = 60.0) -> None:
        self.name = name
        self.snapshot = Snapshot(path, key, every)
        self.parts: dict[str, Part] = {}
        self.first = 0

    def resume(self, parts: dict[str, Part]) -> int:
        """Keep `parts` as the loop's state, restore them from its snapshot when there is one, and return
        the epoch to start at."""
        self.parts = parts
        state = self.snapshot.load()
        if state is not None:
            for name, part in parts.items():
                restore(part, state["parts"][name])
            self.first = int(state["epoch"])
        return self.first

    def save(self, epochs: int, force: bool = False) -> None:
        """After `epochs` whole epochs: write the parts' state if it is time to (always when `force`)."""
        self.snapshot.save(lambda: {"epoch": epochs, "parts": {n: state_of(p) for n, p in self.parts.items()}}, force)

    def clear(self) -> None:
        self.snapshot.clear()
