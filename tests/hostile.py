"""Helpers for the hostile-file tests: run `ban` in-process under a time bound, build valid base files.

The base files are small and real: a ban checkpoint (small CNN with a BadNets trigger), the
same model as a plain `.pt` state dict, 40 real Fashion-MNIST test images as `.npz` and as an
IDX folder. Tests mutate copies of them.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import signal
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ban.attacks import create_attack
from ban.checkpoint import model_metadata, save_model
from ban.cli import main
from ban.data import balanced_sample, load_dataset
from ban.models import create_model

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


class Hang(BaseException):
    """Raised by `time_limit`; a BaseException, so no `except Exception` in ban can swallow it."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Fail with Hang when the block runs longer than `seconds` (SIGALRM; the main thread only)."""

    def on_alarm(signum: int, frame: object) -> None:
        raise Hang(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@dataclass
class Run:
    code: int
    out: str
    err: str
    warned: list[str]


def run_cli(args: list[str | Path], seconds: float = 30.0) -> Run:
    """`ban ARGS` in this process: exit code, stdout, stderr and the warnings it raised."""
    out, err = io.StringIO(), io.StringIO()
    with (
        time_limit(seconds),
        warnings.catch_warnings(record=True) as caught,
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        warnings.simplefilter("always")
        code = main([str(a) for a in args])
    return Run(code, out.getvalue(), err.getvalue(), [str(w.message) for w in caught])


def assert_refused(run: Run, *fragments: str) -> str:
    """Exit 2 with exactly one line on stderr, `error: ...` holding every fragment; no traceback, no warning."""
    lines = run.err.strip().splitlines()
    assert run.code == 2, (run.code, run.err[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), run.err[-2000:]
    assert "Traceback" not in run.err and not run.warned, (run.err, run.warned)
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def assert_one_line_or_ok(run: Run) -> None:
    """The outcome every mutant must have: success (exit 0), or a one-line refusal with exit 2."""
    if run.code == 0:
        return
    assert_refused(run)


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# ------------------------------------------------------------------ base files


def small_model(arch: str = "small_cnn", width: float = 0.25, seed: int = 0) -> torch.nn.Module:
    """A 1-channel, 10-class model with non-trivial BatchNorm statistics (so a wrong load shows)."""
    gen = torch.Generator().manual_seed(seed)
    model = create_model(arch, 10, 1, width, [0.286], [0.353], seed=seed)
    model.train()
    with torch.no_grad():
        model(torch.rand(32, 1, 28, 28, generator=gen))
    return model.eval()


def real_images(n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """`n` real Fashion-MNIST test images (uint8, N×28×28) with their labels, class-balanced."""
    test = balanced_sample(load_dataset("fashion-mnist", "test"), n, seed=0)
    x = (test.x[:, 0] * 255).round().to(torch.uint8).numpy()
    return x, test.y.numpy()


def idx_bytes(array: np.ndarray) -> bytes:
    """`array` (uint8) in the IDX format: magic 0x00000800 | ndim, big-endian dimensions, data."""
    head = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return head + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx_folder(folder: Path, x: np.ndarray, y: np.ndarray, gz: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in zip(IDX_FILES, (x, y, x, y), strict=True):
        raw = idx_bytes(arr)
        (folder / (name + ".gz" if gz else name)).write_bytes(gzip.compress(raw, mtime=0) if gz else raw)
    return folder


@dataclass
class Base:
    folder: Path
    ckpt: Path  # ban checkpoint with a BadNets attack
    pt: Path  # the same model as a plain state dict
    npz: Path  # 40 real images
    idx: Path  # the same images as an IDX folder (train and test)

    def safetensors_parts(self) -> tuple[dict, bytes]:
        """The header (parsed) and the data section of the base checkpoint."""
        raw = self.ckpt.read_bytes()
        n = int.from_bytes(raw[:8], "little")
        return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def safetensors_bytes(header: dict, body: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + body


def build_base(folder: Path) -> Base:
    folder.mkdir(parents=True, exist_ok=True)
    model = small_model()
    attack = create_attack("badnets", target=3)
    attack.setup((1, 28, 28), 10)
    meta = model_metadata(model, "small_cnn", 10, (1, 28, 28), 0.25, "fashion-mnist", 0)
    ckpt = save_model(folder / "base.safetensors", model, meta, attack)
    pt = folder / "base.pt"
    torch.save(model.state_dict(), pt)
    x, y = real_images(40)
    npz = folder / "base.npz"
    np.savez(npz, x=x, y=y)
    idx = write_idx_folder(folder / "idx-set", x, y)
    return Base(folder, ckpt, pt, npz, idx)
