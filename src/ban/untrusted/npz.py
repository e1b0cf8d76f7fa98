"""Arrays from an `.npz` (a zip of `.npy` files), each checked against its header before it is read."""

from __future__ import annotations

import io
import math
import zipfile
from pathlib import Path
from typing import IO

import numpy as np

from ban.errors import BanError
from ban.untrusted.files import MAX_DECODED_BYTES, read_bytes

FIX = "save it with numpy.savez(path, x=..., y=...)"


def _header(fp: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fp)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(fp)
    raise ValueError(f".npy format version {version[0]}.{version[1]} is not supported")


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, name: str, budget: int) -> np.ndarray:
    with zf.open(info) as fp:
        shape, _, dtype = _header(fp)
        offset = fp.tell()
    if dtype.hasobject:
        raise BanError(f"{path}: array '{name}' holds Python objects, which would need unpickling; {FIX} from numbers")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > info.file_size - offset:
        raise BanError(
            f"{path}: array '{name}' declares shape {shape} ({nbytes} bytes) but holds {info.file_size - offset}; "
            f"the file is truncated or corrupt: {FIX}"
        )
    if nbytes > budget:
        raise BanError(f"{path}: the arrays need more than the {MAX_DECODED_BYTES} bytes ban loads; use fewer images")
    with zf.open(info) as fp:
        return np.lib.format.read_array(fp, allow_pickle=False)


def read_npz_arrays(path: Path, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The arrays `names` of the `.npz` at `path`; never unpickles, never allocates more than the file declares."""
    data = read_bytes(path, ".npz")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            members = {i.filename[: -len(".npy")]: i for i in zf.infolist() if i.filename.endswith(".npy")}
            missing = [n for n in names if n not in members]
            if missing:
                wanted = " and ".join(repr(n) for n in names)
                raise BanError(f"{path} must hold arrays {wanted}, found {sorted(members)}; {FIX}")
            out: dict[str, np.ndarray] = {}
            budget = MAX_DECODED_BYTES
            for n in names:
                out[n] = _read_member(zf, members[n], path, n, budget)
                budget -= out[n].nbytes
            return out
    except BanError:
        raise
    except Exception as exc:  # zipfile, zlib, numpy's header parser and reader: any of them may meet a mutant
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BanError(f"cannot read {path} as .npz ({detail}); {FIX}") from exc
