"""Reader for the IDX format of MNIST and Fashion-MNIST (gzipped or raw), and the folder layout that holds it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ban.data.dataset import ImageData, from_uint8
from ban.errors import BanError
from ban.untrusted import MAX_DECODED_BYTES, gunzip_prefix, is_gzip, read_bytes

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4")}
_MAX_HEADER = 4 + 4 * 255
MAX_CLASSES = 10_000


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file: magic 0x0000TTDD (type TT, DD dimensions), big-endian sizes, then data.

    A gzipped file is decompressed only as far as its header's sizes reach.
    """
    raw = read_bytes(path, "IDX file")
    gz = is_gzip(raw)
    head = gunzip_prefix(raw, _MAX_HEADER, path) if gz else raw[:_MAX_HEADER]
    if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _DTYPES:
        raise BanError(
            f"{path} is not an IDX file (bad magic number); pass the folder with the original MNIST-format files"
        )
    dtype = np.dtype(_DTYPES[head[2]])
    ndim = head[3]
    header = 4 + 4 * ndim
    if len(head) < header:
        raise BanError(f"{path} is truncated (header incomplete); re-download the file")
    dims = [int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    shown = dims if ndim <= 4 else f"{ndim} dimensions {dims[:4]}..."
    count = math.prod(dims)
    expected = count * dtype.itemsize
    # bound the product of the non-zero sizes too: with a 0 among them, reshape would still overflow
    span = math.prod(d for d in dims if d) * dtype.itemsize
    if span > MAX_DECODED_BYTES:
        size = f"{span} bytes" if span < 10**15 else "over 10^15 bytes"
        raise BanError(
            f"{path}: header declares {shown} ({size}), more than the {MAX_DECODED_BYTES} ban reads; "
            "the file is corrupt or not a dataset ban can hold in memory"
        )
    body = gunzip_prefix(raw, header + expected, path) if gz else raw[: header + expected]
    if len(body) - header < expected:
        raise BanError(
            f"{path} is truncated: header promises {shown} ({expected} bytes), holds {len(body) - header}; "
            "re-download it"
        )
    return np.frombuffer(body, dtype=dtype, count=count, offset=header).reshape(dims).copy()  # writable


def _candidates(stem: str) -> tuple[str, ...]:
    return (stem + ".gz", stem, stem.replace("-idx", ".idx") + ".gz", stem.replace("-idx", ".idx"))


def _find(folder: Path, stem: str) -> Path:
    for name in _candidates(stem):
        p = folder / name
        if p.exists():
            return p
    raise BanError(f"{folder} has no {stem}[.gz]; pass --data-dir pointing at a folder with the MNIST-format IDX files")


def has_idx_layout(folder: Path) -> bool:
    """Whether `folder` holds MNIST-format IDX files (either split) directly."""
    return any((folder / n).exists() for stems in _FILES.values() for s in stems for n in _candidates(s))


def read_idx_dataset(folder: Path, split: str, name: str, flip: bool, num_classes: int | None = 10) -> ImageData:
    """Read the `split` ("train" or "test") of an MNIST-format dataset from `folder`.

    `num_classes` None takes the class count from the labels (a user's own IDX set).
    """
    img_stem, lbl_stem = _FILES[split]
    img_path, lbl_path = _find(folder, img_stem), _find(folder, lbl_stem)
    images, labels = read_idx(img_path), read_idx(lbl_path)
    if images.ndim != 3 or images.dtype != np.uint8 or 0 in images.shape:
        raise BanError(
            f"{img_path}: expected N×H×W uint8 images, got {images.dtype} {images.shape}; pass the original image file"
        )
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise BanError(f"{lbl_path}: expected N integer labels, got {labels.dtype} {labels.shape}; pass the label file")
    if len(images) != len(labels):
        raise BanError(
            f"{folder}: {len(images)} images in {img_path.name} but {len(labels)} labels in {lbl_path.name}; "
            "files of different sets"
        )
    k = int(labels.max()) + 1 if num_classes is None else num_classes
    if int(labels.min()) < 0 or not 2 <= k <= MAX_CLASSES or int(labels.max()) >= k:
        raise BanError(
            f"{lbl_path}: labels {int(labels.min())}..{int(labels.max())} do not fit {k} classes; pass the label file"
        )
    return from_uint8(images, labels, num_classes=k, name=name, flip=flip)
