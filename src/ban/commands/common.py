"""Options and helpers shared by the subcommands."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from ban.data import ImageData, balanced_sample, defender_split, load_dataset
from ban.errors import BanError

console = Console()
err_console = Console(stderr=True)

DataOpt = typer.Option(
    "fashion-mnist", "--data", help="Dataset name (fashion-mnist, mnist, cifar10), image folder or .npz."
)
DataDirOpt = typer.Option(
    None, "--data-dir", help="Folder holding the dataset's files (default: the built-in location)."
)
SeedOpt = typer.Option(0, "--seed", help="Random seed; the same seed gives the same result.")
DeviceOpt = typer.Option("auto", "--device", help="auto (CUDA when present), cpu or cuda[:N].")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress bars.")
InputSizeOpt = typer.Option(
    None, "--input-size", help="Image side in px of a plain state dict (default: taken from the data)."
)


def _existing_ancestor(path: Path) -> Path:
    for parent in path.absolute().parents:
        if parent.exists():
            return parent
    return Path(path.absolute().anchor)


def check_output_file(
    path: Path | None, flag: str, example: str = "model.safetensors", model: Path | None = None
) -> None:
    """Refuse, before any work starts, an output file path that cannot be written (a folder, a FIFO, ...) or
    that is the input `model` itself (its verdict or repair would replace the model it was made from)."""
    if path is None:
        return
    if path.is_dir():
        raise BanError(f"{flag} {path} is a folder; pass a file path, e.g. {path / example}")
    if path.exists() and not path.is_file():
        raise BanError(f"{flag} {path} exists and is not a regular file; pass a new file path")
    if model is not None and path.exists() and model.is_file() and os.path.samefile(path, model):
        raise BanError(f"{flag} {path} is the model given as input and would be overwritten; pass another path")
    _check_parent(path, flag)


def check_output_dir(path: Path | None, flag: str) -> None:
    """Refuse, before any work starts, an output folder path that names a file or lies below one."""
    if path is None:
        return
    if path.exists() and not path.is_dir():
        raise BanError(f"{flag} {path} exists and is not a folder; pass a folder path")
    _check_parent(path, flag)


def _check_parent(path: Path, flag: str) -> None:
    anc = path.parent if path.parent.exists() else _existing_ancestor(path)
    if not anc.is_dir():
        raise BanError(f"{flag} {path}: {anc} is a file, not a folder; pass a path inside a folder")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise BanError(f"{flag} {path}: folder {anc} is not writable; pass a path you can write to")
    try:  # os.access says yes for root on a read-only mount or in /proc: create a file there to be sure
        fd, probe = tempfile.mkstemp(prefix=".ban-write-check.", dir=anc)
    except OSError as exc:
        reason = exc.strerror or exc
        raise BanError(f"{flag} {path}: cannot create files in {anc} ({reason}); pass a path you can write to") from exc
    os.close(fd)
    os.unlink(probe)


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """`key=value` pairs; values parsed as JSON where possible (numbers, true/false, lists), else strings."""
    import json

    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise BanError(f"parameter '{item}' must look like key=value")
        key, value = item.split("=", 1)
        try:
            out[key.strip().replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip().replace("-", "_")] = value
    return out


def attacker_and_defender(
    data: str, data_dir: Path | None, split_seed: int = 0, defender_fraction: float = 0.1
) -> tuple[ImageData, ImageData]:
    """The training set split into the attacker's part and the defender's held-out pool (paper: 90/10)."""
    train = load_dataset(data, "train", data_dir)
    return defender_split(train, defender_fraction, split_seed)


def maybe_subset(data: ImageData, n: int | None, seed: int) -> ImageData:
    """A class-balanced subset of `n` images, or `data` itself when `n` is None or covers it."""
    if n is None or n >= len(data):
        return data
    return balanced_sample(data, n, seed)
