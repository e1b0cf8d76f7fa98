"""CIFAR-10 from a user's folder: `cifar-10-batches-bin` (raw bytes) or `cifar-10-batches-py` (pickled).

The python layout is a pickle. It is read with `ban.untrusted`'s restricted unpickler, which
admits only the numpy pieces those files contain, so a malicious file cannot run code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ban.data.dataset import ImageData, from_uint8
from ban.errors import BanError
from ban.untrusted import read_bytes, safe_unpickle

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
_TEST = ["test_batch"]


def _get(d: dict, key: str) -> Any:
    for k in (key, key.encode()):
        if k in d:
            return d[k]
    raise KeyError(key)


def _read_py_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    obj = safe_unpickle(read_bytes(path, "CIFAR-10 batch"), path, "use the original CIFAR-10 python batches")
    try:
        data = np.asarray(_get(obj, "data"), dtype=np.uint8)
        labels = np.asarray(_get(obj, "labels"), dtype=np.int64)
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise BanError(f"{path}: not a CIFAR-10 python batch (no data/labels); check the folder") from exc
    if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise BanError(f"{path}: expected N×3072 uint8 data and N labels, got {data.shape} and {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise BanError(f"{path}: labels {labels.min()}..{labels.max()} lie outside 0..9; not a CIFAR-10 batch")
    return data.reshape(-1, 3, 32, 32), labels


def _read_bin_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = np.frombuffer(read_bytes(path, "CIFAR-10 batch"), dtype=np.uint8)
    if raw.size == 0 or raw.size % 3073 != 0:
        raise BanError(
            f"{path}: size {raw.size} is not a multiple of 3073 bytes; the file is truncated or not CIFAR-10 binary"
        )
    rec = raw.reshape(-1, 3073)
    labels = rec[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise BanError(f"{path}: label {labels.max()} out of range 0..9; not a CIFAR-10 binary batch")
    return rec[:, 1:].reshape(-1, 3, 32, 32), labels


def find_cifar_layout(folder: Path) -> tuple[Path, str]:
    """Return (batch folder, 'py' | 'bin') for a folder that is or contains a CIFAR-10 layout."""
    for cand in (folder, folder / "cifar-10-batches-py", folder / "cifar-10-batches-bin"):
        if (cand / "test_batch").exists() or (cand / "data_batch_1").exists():
            return cand, "py"
        if (cand / "test_batch.bin").exists() or (cand / "data_batch_1.bin").exists():
            return cand, "bin"
    raise BanError(
        f"{folder} holds no CIFAR-10 batches; pass --data-dir with cifar-10-batches-py or cifar-10-batches-bin inside"
    )


def read_cifar10(folder: Path, split: str) -> ImageData:
    """Read the train (5 batches) or test split of CIFAR-10 from either standard layout."""
    base, layout = find_cifar_layout(folder)
    names = _TRAIN if split == "train" else _TEST
    xs, ys = [], []
    for n in names:
        path = base / (n + ".bin" if layout == "bin" else n)
        if not path.exists():
            raise BanError(f"{path} is missing; the CIFAR-10 folder is incomplete")
        x, y = (_read_bin_batch if layout == "bin" else _read_py_batch)(path)
        xs.append(x)
        ys.append(y)
    data = from_uint8(np.concatenate(xs), np.concatenate(ys), 10, "cifar10", flip=True, layout="NCHW")
    data.class_names = list(CIFAR10_CLASSES)
    return data
