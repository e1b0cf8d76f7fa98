"""Reader for the IDX format of MNIST and Fashion-MNIST (gzipped or raw)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from ban.data.dataset import ImageData, from_uint8
from ban.errors import BanError

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4")}


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file: magic 0x0000TTDD (type TT, DD dimensions), big-endian sizes, then data."""
    try:
        raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as exc:
        raise BanError(f"cannot read IDX file {path}: {exc}; re-download or reinstall the dataset") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise BanError(
            f"{path} is not an IDX file (bad magic number); pass the folder with the original MNIST-format files"
        )
    dtype = np.dtype(_DTYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise BanError(f"{path} is truncated (header incomplete); re-download the file")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header < expected:
        raise BanError(
            f"{path} is truncated: header promises {dims} ({expected} bytes), holds {len(raw) - header}; re-download it"
        )
    return np.frombuffer(raw, dtype=dtype, count=int(np.prod(dims)), offset=header).reshape(dims)


def _find(folder: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx") + ".gz", stem.replace("-idx", ".idx")):
        p = folder / name
        if p.exists():
            return p
    raise BanError(f"{folder} has no {stem}[.gz]; pass --data-dir pointing at a folder with the MNIST-format IDX files")


def read_idx_dataset(folder: Path, split: str, name: str, flip: bool) -> ImageData:
    """Read the `split` ("train" or "test") of an MNIST-format dataset from `folder`."""
    img_stem, lbl_stem = _FILES[split]
    images = read_idx(_find(folder, img_stem))
    labels = read_idx(_find(folder, lbl_stem))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise BanError(
            f"{folder}: images {images.shape} and labels {labels.shape} do not match; files of different sets"
        )
    return from_uint8(images.astype(np.uint8), labels, num_classes=10, name=name, flip=flip)
