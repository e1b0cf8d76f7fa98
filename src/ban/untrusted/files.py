"""Opening an untrusted path: regular files only (never a FIFO, device or socket), read whole."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ban.errors import BanError

MAX_DECODED_BYTES = 4 * 2**30
"""The most a header (IDX dimensions, .npy shape, gzip stream) may make ban decode from one file."""


def _describe(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _refuse(path: Path, what: str, mode: int) -> BanError:
    noun = what if what.endswith("file") else f"{what} file"  # "IDX file", "reference file": not "... file file"
    if stat.S_ISDIR(mode):
        return BanError(f"{path} is a folder, not a {noun}; pass the file itself")
    return BanError(f"{path} is {_describe(mode)}, not a {noun}; ban reads only regular files: copy it to one")


def _stat_error(path: Path, what: str, exc: OSError) -> BanError:
    if isinstance(exc, FileNotFoundError):
        return BanError(f"{what} {path} not found; check the path")
    return BanError(f"cannot open {what} {path} ({exc.strerror or exc}); check the path and its permissions")


def regular_file(path: str | os.PathLike[str], what: str) -> Path:
    """`path` as a Path when it names an existing regular file; else a BanError saying what it is instead."""
    if not isinstance(path, str | os.PathLike):
        raise BanError(f"expected the {what}'s path (a str or Path), got {type(path).__name__}")
    p = Path(path)
    try:
        mode = p.stat().st_mode
    except OSError as exc:
        raise _stat_error(p, what, exc) from exc
    if not stat.S_ISREG(mode):
        raise _refuse(p, what, mode)
    return p


@contextlib.contextmanager
def open_regular(path: str | os.PathLike[str], what: str) -> Iterator[BinaryIO]:
    """Open `path` for reading; refuses non-regular files on the open descriptor itself (no race, no blocking)."""
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise _stat_error(p, what, exc) from exc
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _refuse(p, what, mode)
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with f:
        yield f


def read_bytes(path: str | os.PathLike[str], what: str, limit: int | None = None) -> bytes:
    """The content of a regular file, or its first `limit` bytes."""
    with open_regular(path, what) as f:
        try:
            return f.read() if limit is None else f.read(limit)
        except OSError as exc:
            raise BanError(f"cannot read {what} {path} ({exc.strerror or exc}); check the file") from exc
