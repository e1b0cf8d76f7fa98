"""Mutation fuzzing of every format ban reads from strangers: safetensors, .pt state dicts, IDX sets, .npz.

Each test mutates a valid file (truncation, flipped bytes, changed header fields, dtypes and
shapes) and runs `ban` on the mutant in this process. For every mutant the outcome must be a
load that works end to end (exit 0, a BA line) or a refusal: exit 2 with one line. Never a
traceback (an uncaught exception fails the test), never a hang (a time bound per run), never a
file left behind. Examples are derandomised, so CI runs the same mutants every time; for a
deeper, random search set BAN_FUZZ_EXAMPLES (e.g. BAN_FUZZ_EXAMPLES=1000).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import struct
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostile import IDX_FILES, Base, assert_one_line_or_ok, build_base, files_in, run_cli, safetensors_bytes

DEEP = int(os.environ.get("BAN_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=DEEP or 40,
    deadline=None,
    derandomize=not DEEP,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
SECONDS_PER_RUN = 20.0

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.sampled_from([0, 1, 2, 3, 28, 1024, 1025, -1])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
SAFETENSORS_DTYPES = ["F16", "BF16", "F32", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL", "F8_E4M3", "C64", "??"]
TORCH_DTYPES = [torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.uint8, torch.bool, torch.complex64]
NUMPY_DTYPES = ["uint8", "int8", "int64", "uint16", "float16", "float32", "float64", "bool", "complex64", "<U2", "V4"]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Base:
    return build_base(tmp_path_factory.mktemp("fuzz-base"))


@pytest.fixture(scope="module", autouse=True)
def base_untouched(base: Base):
    before = files_in(base.folder)
    yield
    assert files_in(base.folder) == before


@dataclass(frozen=True)
class Mutant:
    """A mutated file (or folder of files) and how it was made; the repr is the recipe, not the bytes."""

    how: str
    content: bytes | dict[str, bytes] = field(repr=False)


def _flip(data: bytes, flips: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for pos, xor in flips:
        if out:
            out[pos % len(out)] ^= xor
    return bytes(out)


FLIPS = st.lists(st.tuples(st.integers(0, 2**31), st.integers(1, 255)), min_size=1, max_size=4)


def _run_mutant(name: str, mutant: Mutant, args_for: Any) -> None:
    """Write the mutant into a fresh folder, run `ban`, check the outcome and that no file was added."""
    content = mutant.content
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if isinstance(content, dict):
            target = folder / name
            target.mkdir()
            for fname, data in content.items():
                (target / fname).write_bytes(data)
        else:
            target = folder / name
            target.write_bytes(content)
        before = files_in(folder)
        run = run_cli(args_for(target), seconds=SECONDS_PER_RUN)
        assert_one_line_or_ok(run)
        if run.code == 0:
            assert run.out.startswith("BA "), run.out
        assert files_in(folder) == before


# ------------------------------------------------------------------ safetensors


@st.composite
def safetensors_mutant(draw: st.DrawFn, base: Base) -> Mutant:
    raw = base.ckpt.read_bytes()
    header, body = base.safetensors_parts()
    kind = draw(st.sampled_from(["truncate", "flip", "length", "tensor", "metadata", "metadata-text"]))
    if kind == "truncate":
        end = draw(st.integers(0, len(raw) - 1))
        return Mutant(f"truncate at {end}", raw[:end])
    if kind == "flip":
        flips = draw(FLIPS)
        return Mutant(f"flip {flips}", _flip(raw, flips))
    if kind == "length":
        n = int.from_bytes(raw[:8], "little")
        new = draw(st.integers(0, 2**64 - 1) | st.integers(max(0, n - 16), n + 16))
        return Mutant(f"header length {new}", struct.pack("<Q", new) + raw[8:])
    if kind == "tensor":
        name = draw(st.sampled_from(sorted(k for k in header if k != "__metadata__")))
        what = draw(st.sampled_from(["dtype", "shape", "data_offsets", "delete"]))
        if what == "delete":
            del header[name]
        elif what == "dtype":
            header[name]["dtype"] = draw(st.sampled_from(SAFETENSORS_DTYPES) | JSON)
        elif what == "shape":
            header[name]["shape"] = draw(st.lists(st.integers(0, 40), max_size=5) | JSON)
        else:
            header[name]["data_offsets"] = draw(st.lists(st.integers(0, len(body) + 8), max_size=3) | JSON)
        return Mutant(f"{name} {what}: {header.get(name)}", safetensors_bytes(header, body))
    meta = json.loads(header["__metadata__"]["ban"])
    if kind == "metadata-text":
        header["__metadata__"]["ban"] = draw(st.text(max_size=30) | st.just(json.dumps(meta)[:-1]))
        return Mutant(f"ban metadata text {header['__metadata__']['ban'][:40]!r}", safetensors_bytes(header, body))
    path = draw(
        st.sampled_from(
            [*sorted(meta), "attack.name", "attack.params", "attack.image_shape", "attack.num_classes"]
            + ["normalization.mean", "normalization.std"]
        )
    )
    node, key = (meta, path) if "." not in path else (meta[path.split(".")[0]], path.split(".")[1])
    if draw(st.booleans()):
        node[key] = draw(JSON)
    else:
        node.pop(key, None)
    header["__metadata__"]["ban"] = json.dumps(meta)
    return Mutant(f"metadata {path} = {node.get(key, '<deleted>')!r}", safetensors_bytes(header, body))


@FUZZ
@given(data=st.data())
def test_fuzz_safetensors_checkpoint(base: Base, data: st.DataObject) -> None:
    mutant = data.draw(safetensors_mutant(base))
    _run_mutant("m.safetensors", mutant, lambda p: ["eval", p, "--data", base.npz])


# ------------------------------------------------------------------ .pt state dicts


@st.composite
def torch_mutant(draw: st.DrawFn, base: Base) -> Mutant:
    raw = base.pt.read_bytes()
    kind = draw(st.sampled_from(["truncate", "flip", "tensor", "entry"]))
    if kind == "truncate":
        end = draw(st.integers(0, len(raw) - 1))
        return Mutant(f"truncate at {end}", raw[:end])
    if kind == "flip":
        flips = draw(FLIPS)
        return Mutant(f"flip {flips}", _flip(raw, flips))
    state = torch.load(base.pt, weights_only=True)
    name = draw(st.sampled_from(sorted(state)))
    if kind == "tensor":
        old = state[name]
        dtype = draw(st.sampled_from([old.dtype, *TORCH_DTYPES]))
        shape = draw(st.just(tuple(old.shape)) | st.lists(st.integers(0, 20), max_size=4).map(tuple))
        state[name] = torch.zeros(shape, dtype=dtype) if dtype != old.dtype or shape != old.shape else old
        how = f"{name} as {dtype} {shape}"
    else:
        choice = draw(st.sampled_from(["non-tensor", "int-key", "nested", "drop"]))
        if choice == "non-tensor":
            state[name] = draw(st.integers() | st.text(max_size=5) | st.none())
        elif choice == "int-key":
            state[draw(st.integers(-5, 5))] = torch.zeros(2)  # type: ignore[index]
        elif choice == "nested":
            state = {draw(st.sampled_from(["netC", "model", "state_dict", "other"])): state, "epoch": 1}
        else:
            state.pop(name)
        how = f"{choice} at {name}"
    buf = io.BytesIO()
    torch.save(state, buf)
    return Mutant(how, buf.getvalue())


@FUZZ
@given(data=st.data())
def test_fuzz_torch_state_dict(base: Base, data: st.DataObject) -> None:
    mutant = data.draw(torch_mutant(base))
    _run_mutant("m.pt", mutant, lambda p: ["eval", p, "--arch", "small_cnn", "--data", base.npz])


# ------------------------------------------------------------------ IDX sets


@st.composite
def idx_mutant(draw: st.DrawFn, base: Base) -> Mutant:
    files = {f: gzip.decompress((base.idx / (f + ".gz")).read_bytes()) for f in IDX_FILES}
    name = draw(st.sampled_from(["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]))
    raw = files[name]
    kind = draw(st.sampled_from(["truncate", "flip", "type", "ndim", "dim", "gz-truncate", "gz-flip"]))
    how = f"{name}: {kind}"
    if kind == "truncate":
        end = draw(st.integers(0, len(raw) - 1))
        raw, how = raw[:end], f"{how} at {end}"
    elif kind == "flip":
        flips = draw(FLIPS)
        raw, how = _flip(raw, flips), f"{how} {flips}"
    elif kind == "type":
        code = draw(st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0xFF]))
        raw, how = raw[:2] + bytes([code]) + raw[3:], f"{how} {code:#x}"
    elif kind == "ndim":
        ndim = draw(st.integers(0, 255))
        raw, how = raw[:3] + bytes([ndim]) + raw[4:], f"{how} {ndim}"
    elif kind == "dim":
        i = draw(st.integers(0, raw[3] - 1))
        value = draw(st.integers(0, 2**32 - 1) | st.integers(0, 64))
        raw, how = raw[: 4 + 4 * i] + struct.pack(">I", value) + raw[8 + 4 * i :], f"{how} {i} = {value}"
    packed = {f: gzip.compress(v, mtime=0) for f, v in files.items()}
    gz = gzip.compress(raw, mtime=0)
    if kind == "gz-truncate":
        end = draw(st.integers(0, len(gz) - 1))
        gz, how = gz[:end], f"{how} at {end}"
    elif kind == "gz-flip":
        flips = draw(FLIPS)
        gz, how = _flip(gz, flips), f"{how} {flips}"
    if kind.startswith("gz") or draw(st.booleans()):
        packed[name] = gz
        return Mutant(how + ", gzipped", {f + ".gz": v for f, v in packed.items()})
    packed.pop(name)
    return Mutant(how + ", raw", {**{f + ".gz": v for f, v in packed.items()}, name: raw})


@FUZZ
@given(data=st.data())
def test_fuzz_idx_set(base: Base, data: st.DataObject) -> None:
    mutant = data.draw(idx_mutant(base))
    _run_mutant("idx", mutant, lambda p: ["eval", base.ckpt, "--data", p])


# ------------------------------------------------------------------ .npz


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _edit_npy_header(raw: bytes, member: str, header_text: str) -> bytes:
    """The .npz `raw` with the header dict of `member` replaced by `header_text` (padded as numpy does)."""
    src = zipfile.ZipFile(io.BytesIO(raw))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as out:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == member:
                hlen = struct.unpack("<H", data[8:10])[0]
                text = header_text.encode("latin-1", "replace")
                text = text + b" " * ((64 - (10 + len(text) + 1) % 64) % 64) + b"\n"
                data = data[:6] + b"\x01\x00" + struct.pack("<H", len(text) % 65536) + text + data[10 + hlen :]
            out.writestr(info.filename, data)
    return buf.getvalue()


@st.composite
def npz_mutant(draw: st.DrawFn, base: Base) -> Mutant:
    raw = base.npz.read_bytes()
    with np.load(base.npz) as f:
        arrays = {"x": f["x"], "y": f["y"]}
    kind = draw(st.sampled_from(["truncate", "flip", "dtype", "shape", "header", "drop"]))
    if kind == "truncate":
        end = draw(st.integers(0, len(raw) - 1))
        return Mutant(f"truncate at {end}", raw[:end])
    if kind == "flip":
        flips = draw(FLIPS)
        return Mutant(f"flip {flips}", _flip(raw, flips))
    name = draw(st.sampled_from(["x", "y"]))
    if kind == "dtype":
        dtype = draw(st.sampled_from(NUMPY_DTYPES))
        scale = draw(st.sampled_from([1.0, 1 / 255, -1.0, float("nan")]))
        arr = arrays[name].astype(np.float64) * scale
        with np.errstate(all="ignore"):
            arrays[name] = np.nan_to_num(arr).astype(dtype) if dtype not in ("<U2", "V4") else arr.astype(dtype)
        return Mutant(f"{name} as {dtype} scaled by {scale}", _npz(arrays))
    if kind == "shape":
        shape = draw(st.lists(st.integers(0, 30), max_size=5))
        arrays[name] = np.zeros(shape, dtype=arrays[name].dtype)
        return Mutant(f"{name} of shape {shape}", _npz(arrays))
    if kind == "drop":
        arrays.pop(name)
        return Mutant(f"without {name}", _npz(arrays))
    descr = draw(st.sampled_from(["'|u1'", "'<i8'", "'<f4'", "'|O'", "'>f8'", "'xx'"]))
    shape = draw(st.lists(st.integers(0, 2**40), max_size=4).map(tuple) | st.text(max_size=6))
    text = draw(
        st.sampled_from(
            [
                f"{{'descr': {descr}, 'fortran_order': False, 'shape': {shape}, }}",
                f"{{'descr': {descr}, 'fortran_order': True, 'shape': {shape}, }}",
                "{'descr': '|u1'",
                "not a dict",
            ]
        )
    )
    return Mutant(f"{name}.npy header {text!r}", _edit_npy_header(raw, f"{name}.npy", text))


@FUZZ
@given(data=st.data())
def test_fuzz_npz(base: Base, data: st.DataObject) -> None:
    mutant = data.draw(npz_mutant(base))
    _run_mutant("m.npz", mutant, lambda p: ["eval", base.ckpt, "--data", p])
