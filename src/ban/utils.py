"""Small shared helpers: device choice, seeding, atomic writes, version stamps."""

from __future__ import annotations

import contextlib
import errno
import os
import platform
import random
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from ban.errors import BanError
from ban.version import __version__


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """`"auto"` picks CUDA when present, else CPU; anything else is passed to torch."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BanError(f"device '{device}' was asked for but CUDA is not available; pass --device cpu or auto")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise BanError(f"unknown device '{device}'; use auto, cpu or cuda[:N]") from exc


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch.Generator seeded with `seed` (explicit randomness: nothing reads the global RNG)."""
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


@contextlib.contextmanager
def global_rng_from(generator: torch.Generator) -> Iterator[None]:
    """Library code in the block that reads torch's global CPU RNG (layer initialisation) draws from
    `generator` instead, which advances as if it had been drawn from; the global RNG is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.set_state(generator.get_state())
        try:
            yield
        finally:
            generator.set_state(torch.default_generator.get_state())


def seed_everything(seed: int) -> None:
    """Seed the global RNGs too, for library code (cuDNN, layer init) that reads them."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def versions() -> dict[str, str]:
    """Versions recorded in every result."""
    return {
        "ban": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it over `path`, else delete it.

    A folder that cannot be written (read-only, a virtual file system such as /proc) or a full disk is a
    BanError naming the path, not an OSError from inside the writer."""
    target = Path(path)
    try:
        if target.parent and not target.parent.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise _unwritable(target, exc) from exc
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():  # mkstemp's file is private (0600); the result gets an ordinary file's mode
            os.chmod(tmp_path, _mode_for(target))
        os.replace(tmp_path, target)
    except OSError as exc:
        if exc.errno in _WRITE_ERRORS:
            raise _unwritable(target, exc) from exc
        raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _mode_for(target: Path) -> int:
    """The mode a rewritten file keeps (the existing file's), or a new file's under the umask (0666 & ~umask)."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        umask = os.umask(0o022)
        os.umask(umask)
        return 0o666 & ~umask


_WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EXDEV}


def _unwritable(target: Path, exc: OSError) -> BanError:
    return BanError(f"cannot write {target} ({exc.strerror or exc}); pass a path in a folder you can write to")


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write text to `path` atomically (write, then rename)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Put `model` in eval mode for the block and restore its previous mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def batches(n: int, batch_size: int) -> Iterator[slice]:
    """Consecutive slices covering range(n)."""
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))
