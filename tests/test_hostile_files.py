"""Hostile and broken files, one test per class of failure: each refused in one line with exit 2, or loaded right.

ban inspects models from strangers, so what it reads is its attack surface. Every case here goes
through the `ban` command in this process (stderr captured, a time bound per run) and checks
the one line it prints; the mutation-based versions of these checks are in test_fuzz_files.py.
"""

from __future__ import annotations

import ast
import json
import os
import pickle
import re
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from PIL import Image

from ban.checkpoint import load_model, save_model
from ban.cli import app
from ban.data import balanced_sample, load_dataset
from ban.errors import BanError
from ban.evaluate import evaluate
from hostile import (
    Base,
    assert_refused,
    build_base,
    files_in,
    real_images,
    run_cli,
    safetensors_bytes,
    small_model,
    time_limit,
    write_idx_folder,
)

SRC = Path(__file__).resolve().parents[1] / "src" / "ban"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Base:
    return build_base(tmp_path_factory.mktemp("base"))


# ------------------------------------------------------------------ broken safetensors files


def _with_header(base: Base, edit: Callable[[dict], None]) -> bytes:
    header, body = base.safetensors_parts()
    edit(header)
    return safetensors_bytes(header, body)


def _with_ban_meta(base: Base, text: str) -> bytes:
    def edit(h: dict) -> None:
        h["__metadata__"]["ban"] = text

    return _with_header(base, edit)


def _with_meta_field(base: Base, key: str, value: object) -> bytes:
    header, _ = base.safetensors_parts()
    meta = json.loads(header["__metadata__"]["ban"])
    meta[key] = value
    return _with_ban_meta(base, json.dumps(meta))


def _nan_weight(base: Base) -> bytes:
    header, body = base.safetensors_parts()
    start, _ = header["model.linear.bias"]["data_offsets"]
    body = body[:start] + struct.pack("<f", float("nan")) + body[start + 4 :]
    return safetensors_bytes(header, body)


def _evil_pickle() -> bytes:
    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    return pickle.dumps({"model": Evil()}, protocol=2)


def _torch_zip() -> bytes:
    import io

    buf = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, buf)
    return buf.getvalue()


BROKEN_SAFETENSORS: dict[str, tuple[Callable[[Base], bytes], str]] = {
    "empty": (lambda b: b"", "too short for a safetensors file"),
    "shorter-than-the-length-field": (lambda b: b"\x05\x00\x00", "too short for a safetensors file"),
    "length-larger-than-the-file": (lambda b: struct.pack("<Q", 10**6) + b"{}", "header length 1000000"),
    "length-zero": (lambda b: struct.pack("<Q", 0) + b"{}", "header length 0"),
    "header-not-utf8": (lambda b: struct.pack("<Q", 4) + b"{\xff\xfe}", "not UTF-8"),
    "header-not-json": (lambda b: struct.pack("<Q", 6) + b"{nope}", "not valid JSON"),
    "header-json-array": (lambda b: struct.pack("<Q", 2) + b"[]", "is a JSON array, not an object"),
    "header-nested-too-deeply": (lambda b: struct.pack("<Q", 200_000) + b"[" * 200_000, "nested too deeply"),
    "metadata-not-strings": (lambda b: _with_header(b, lambda h: h.update(__metadata__={"ban": 5})), "__metadata__"),
    "ban-metadata-not-json": (lambda b: _with_ban_meta(b, "{not json"), "ban metadata"),
    "ban-metadata-json-array": (lambda b: _with_ban_meta(b, "[1, 2]"), "is a JSON array"),
    "ban-metadata-wrong-type": (lambda b: _with_meta_field(b, "num_classes", "ten"), "'num_classes' is 'ten'"),
    "ban-metadata-unknown-arch": (lambda b: _with_meta_field(b, "arch", "resnet1000"), "unknown architecture"),
    "ban-metadata-shape-too-small": (lambda b: _with_meta_field(b, "input_shape", [1, 1, 1]), "does not run on"),
    "ban-metadata-wrong-width": (lambda b: _with_meta_field(b, "width", 1.0), "do not fit the architecture"),
    "pickle-named-safetensors": (lambda b: _evil_pickle(), "named .safetensors but holds a pickle"),
    "torch-zip-named-safetensors": (lambda b: _torch_zip(), "named .safetensors but holds a zip"),
    "truncated-tensor-data": (lambda b: b.ckpt.read_bytes()[:-100], "corrupt safetensors file"),
    "tensor-dtype-changed": (
        lambda b: _with_header(b, lambda h: h["model.linear.bias"].update(dtype="I32")),
        "linear.bias: file torch.int32",
    ),
    "nan-weights": (_nan_weight, "NaN or Inf"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_SAFETENSORS))
def test_broken_safetensors_refused_by_info_eval_and_detect(base: Base, tmp_path: Path, case: str) -> None:
    make, fragment = BROKEN_SAFETENSORS[case]
    path = tmp_path / f"{case}.safetensors"
    path.write_bytes(make(base))
    for args in (
        ["info", path],
        ["eval", path, "--data", base.npz],
        ["detect", path, "--data", base.npz, "--budget", "0.01"],
    ):
        assert_refused(run_cli(args), path.name, fragment)
    assert files_in(tmp_path) == [path.name]


def test_safetensors_without_ban_metadata_points_to_a_flag_that_exists(base: Base, tmp_path: Path) -> None:
    header, body = base.safetensors_parts()
    del header["__metadata__"]
    bare = tmp_path / "bare.safetensors"
    bare.write_bytes(safetensors_bytes(header, body))
    line = assert_refused(run_cli(["info", bare]), "--arch")
    assert "--num-classes" not in line
    # with the flag it names, the same file loads, as a plain state dict
    ok = run_cli(["info", bare, "--arch", "small_cnn"])
    assert ok.code == 0 and "normalization_assumed" in ok.out


# ------------------------------------------------------------------ special paths


def test_fifo_as_model_or_data_is_refused_without_blocking(base: Base, tmp_path: Path) -> None:
    fifo = tmp_path / "model.pt"
    os.mkfifo(fifo)
    for args in (
        ["info", fifo, "--arch", "resnet18"],
        ["eval", fifo, "--arch", "resnet18", "--data", base.npz],
        ["detect", fifo, "--arch", "resnet18", "--data", base.npz],
    ):
        assert_refused(run_cli(args, seconds=10), "FIFO")
    data_fifo = tmp_path / "data.npz"
    os.mkfifo(data_fifo)
    assert_refused(run_cli(["eval", base.ckpt, "--data", data_fifo], seconds=10), "FIFO")
    idx = write_idx_folder(tmp_path / "idx", *real_images(10))
    (idx / "t10k-images-idx3-ubyte.gz").unlink()
    os.mkfifo(idx / "t10k-images-idx3-ubyte.gz")
    assert_refused(run_cli(["eval", base.ckpt, "--data", idx], seconds=10), "FIFO")
    images = tmp_path / "images" / "a"
    images.mkdir(parents=True)
    os.mkfifo(images / "0.png")
    with time_limit(10), pytest.raises(BanError, match="FIFO"):
        load_dataset(str(tmp_path / "images"))


def test_model_path_that_is_a_folder(base: Base, tmp_path: Path) -> None:
    (tmp_path / "m.safetensors").mkdir()
    assert_refused(run_cli(["info", tmp_path / "m.safetensors"]), "is a folder")


def test_outputs_are_checked_before_any_work(base: Base, tmp_path: Path) -> None:
    out_dir = tmp_path / "existing"
    out_dir.mkdir()
    # the data is bad too: the --out check comes first, so nothing is loaded or trained
    assert_refused(run_cli(["train", "--out", out_dir, "--data", "nowhere"]), "--out", "is a folder")
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    assert_refused(run_cli(["train", "--out", a_file / "m.safetensors"]), "is a file, not a folder")
    assert_refused(run_cli(["mitigate", base.ckpt, "--out", out_dir, "--data", "nowhere"]), "--out", "is a folder")
    assert_refused(run_cli(["detect", base.ckpt, "--json", out_dir, "--data", "nowhere"]), "--json", "is a folder")
    assert_refused(run_cli(["detect", base.ckpt, "--figures", a_file, "--data", "nowhere"]), "--figures")
    assert_refused(run_cli(["attack", "preview", "--out", out_dir, "--data", "nowhere"]), "--out", "is a folder")
    with pytest.raises(BanError, match="is a folder"):
        save_model(out_dir, small_model(), {})
    assert files_in(tmp_path) == ["a-file", "existing"]


# ------------------------------------------------------------------ images


def _png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares `width`×`height` grey pixels, with one tiny compressed row behind it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _image_folder(root: Path, n: int = 3) -> Path:
    x, y = real_images(20)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(x[i + (cls == "b") * n]).save(root / cls / f"{i}.png")
    return root


@pytest.mark.parametrize("bomb", ["declared-beyond-pillow", "declared-beyond-ban", "real"])
def test_decompression_bomb_in_an_image_folder(base: Base, tmp_path: Path, bomb: str) -> None:
    folder = _image_folder(tmp_path / "imgs")
    target = folder / "b" / "zz.png"
    if bomb == "real":
        Image.new("L", (4100, 4100)).save(target)  # 16.8 Mpx of zeros, a few KB on disk
    else:
        target.write_bytes(_png_declaring(*((100_000, 100_000) if bomb == "declared-beyond-pillow" else (5000, 5000))))
    assert target.stat().st_size < 100_000
    for args in (
        ["train", "--data", folder, "--out", tmp_path / "m.safetensors", "--epochs", "1"],
        ["detect", base.ckpt, "--data", folder],
    ):
        assert_refused(run_cli(args), "zz.png", "decompression bomb")
    assert not (tmp_path / "m.safetensors").exists()


def test_image_folder_with_an_empty_class_is_refused(tmp_path: Path) -> None:
    folder = _image_folder(tmp_path / "imgs")
    (folder / "c").mkdir()
    (folder / "c" / "notes.txt").write_text("no images here")
    with pytest.raises(BanError, match="class folder .*c holds no images"):
        load_dataset(str(folder))
    # a hidden folder is not a class
    (folder / "c" / "notes.txt").unlink()
    (folder / "c").rmdir()
    (folder / ".ipynb_checkpoints").mkdir()
    data = load_dataset(str(folder))
    assert data.class_names == ["a", "b"] and data.class_counts() == [3, 3]


def test_broken_images_name_the_file(tmp_path: Path) -> None:
    folder = _image_folder(tmp_path / "imgs")
    good = (folder / "a" / "0.png").read_bytes()
    (folder / "a" / "1.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(BanError, match=r"cannot read image .*1\.png"):
        load_dataset(str(folder))
    (folder / "a" / "1.png").write_bytes(good)
    Image.new("L", (30, 30)).save(folder / "b" / "2.png")
    with pytest.raises(BanError, match=r"2\.png is 30×30 but earlier images are 28×28"):
        load_dataset(str(folder))


# ------------------------------------------------------------------ plain state dicts at their own size


@pytest.fixture(scope="module")
def resnet28(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, dict[str, Path]]:
    """A 28-px ResNet18 (width 0.25) saved as the paper code's plain layouts, without normalisation."""
    folder = tmp_path_factory.mktemp("plain")
    model = small_model("resnet18", 0.25)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("normalize.")}
    paths = {}
    for key in (None, "netC", "model_state_dict", "model"):
        paths[str(key)] = folder / f"{key or 'bare'}.pth"
        torch.save(state if key is None else {key: state, "epoch": 199}, paths[str(key)])
    return model, paths


@pytest.mark.parametrize("key", ["None", "netC", "model_state_dict", "model"])
def test_eval_a_plain_28px_resnet18_at_its_own_size(resnet28: tuple, key: str) -> None:
    model, paths = resnet28
    run = run_cli(["eval", paths[key], "--arch", "resnet18", "--data", "fashion-mnist", "--test-subset", "100"])
    assert run.code == 0, run.err
    # the BA printed is the BA of these very weights on the same 100 images at 28 px
    test = balanced_sample(load_dataset("fashion-mnist", "test"), 100, seed=0)
    loaded = load_model(paths[key], arch="resnet18")
    assert torch.equal(loaded.model(test.x[:16]), _identity_normalized(model)(test.x[:16]))
    expected = evaluate(loaded.model, test, None, device="cpu", seed=0).ba
    assert run.out.startswith(f"BA {expected:.4f} (100 images)")


def _identity_normalized(model: torch.nn.Module) -> torch.nn.Module:
    """`model` with the normalisation a plain state dict without one gets (mean 0, std 1)."""
    import copy

    m = copy.deepcopy(model)
    m.normalize.mean.zero_()
    m.normalize.std.fill_(1.0)
    return m


def test_detect_a_plain_28px_resnet18(resnet28: tuple) -> None:
    _, paths = resnet28
    args = ["detect", paths["None"], "--arch", "resnet18", "--data", "fashion-mnist"]
    run = run_cli([*args, "--clean-samples", "100", "--budget", "0.02", "--quiet"], seconds=120)
    assert run.code == 0, run.err
    assert run.out.startswith("bare.pth: ") and "score" in run.out


def test_input_size_of_a_plain_state_dict(resnet28: tuple, tmp_path: Path) -> None:
    _, paths = resnet28
    info = run_cli(["info", paths["None"], "--arch", "resnet18"])
    assert info.code == 0 and "input_shape: [1, None, None] (H, W taken from the data" in " ".join(info.out.split())
    sized = run_cli(["info", paths["None"], "--arch", "resnet18", "--input-size", "28", "--json"])
    assert json.loads(sized.out)["input_shape"] == [1, 28, 28]
    wrong = ["eval", paths["None"], "--arch", "resnet18", "--data", "fashion-mnist", "--input-size", "32"]
    assert_refused(run_cli(wrong), "(1, 32, 32)", "does not fit")
    # a checkpoint that would not know its input size is never written
    unsized = load_model(paths["None"], arch="resnet18")
    with pytest.raises(BanError, match="input size is unknown"):
        save_model(tmp_path / "unsized.safetensors", unsized.model, unsized.meta)
    unsized.adopt_input_size((1, 28, 28))
    assert unsized.input_shape == (1, 28, 28)
    sized = save_model(tmp_path / "sized.safetensors", unsized.model, unsized.meta)
    assert load_model(sized).input_shape == (1, 28, 28)


def test_tensors_that_do_not_fit_the_architecture_are_refused_by_info(resnet28: tuple, tmp_path: Path) -> None:
    model, _ = resnet28
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("normalize.")}
    bad = dict(state, **{"linear.weight": torch.zeros(10, 7)})
    torch.save(bad, tmp_path / "misshaped.pt")
    assert_refused(run_cli(["info", tmp_path / "misshaped.pt", "--arch", "resnet18"]), "misshaped.pt", "mis-shaped")
    torch.save({**state, "extra.weight": torch.zeros(3)}, tmp_path / "extra.pt")
    assert_refused(run_cli(["info", tmp_path / "extra.pt", "--arch", "resnet18"]), "1 unexpected")
    torch.save(dict(state, **{"linear.bias": torch.zeros(10, dtype=torch.complex64)}), tmp_path / "complex.pt")
    assert_refused(run_cli(["info", tmp_path / "complex.pt", "--arch", "resnet18"]), "dtype complex64")
    # one wide first convolution implies a ResNet18 of width 64 (45 GB); it is refused without building it
    torch.save({"conv1.weight": torch.zeros(4096, 1, 1, 1)}, tmp_path / "wide.pt")
    with time_limit(10):
        assert_refused(run_cli(["info", tmp_path / "wide.pt", "--arch", "resnet18"]), "do not fit the architecture")


# ------------------------------------------------------------------ flags named by messages


def _cli_options() -> set[str]:
    def walk(cmd: object) -> set[str]:
        found: set[str] = set()
        for p in getattr(cmd, "params", []):
            found |= set(p.opts) | set(getattr(p, "secondary_opts", []))
        for sub in getattr(cmd, "commands", {}).values():
            found |= walk(sub)
        return found

    return walk(typer.main.get_command(app)) | {"--help"}  # every command has it, outside its params


def _argparse_strings(tree: ast.AST) -> set[int]:
    """ids of the string constants that declare argparse flags (python -m ban.demo has its own)."""
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument":
            ids |= {id(a) for a in node.args}
    return ids


def test_every_flag_that_a_message_names_exists() -> None:
    options = _cli_options()
    assert {"--arch", "--input-size", "--data-dir", "--out"} <= options
    flag = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
    unknown = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text())
        skip = _argparse_strings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
                unknown += [f"{path.relative_to(SRC)}:{node.lineno} {f}" for f in flag.findall(node.value)]
    unknown = [u for u in unknown if u.split()[-1] not in options]
    assert not unknown, unknown


# ------------------------------------------------------------------ one reading layer

UNTRUSTED_READERS = re.compile(
    r"torch\.load\(|safe_open\(|load_file\(|Image\.open\(|np\.load\(|gzip\.open\(|pickle\.loads?\(|Unpickler\("
    r"|zipfile\.ZipFile\(|\.read_bytes\(\)"
)
# known exception, to move into ban.untrusted: trigger pictures named by --param (ban.untrusted.read_image fits)
NOT_YET_MOVED = {"attacks/trigger.py"}


def test_only_ban_untrusted_opens_model_and_data_files() -> None:
    found = {
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if path.parent.name != "untrusted" and UNTRUSTED_READERS.search(path.read_text())
    }
    assert found <= NOT_YET_MOVED, found - NOT_YET_MOVED


# ------------------------------------------------------------------ IDX files in a folder


def test_a_folder_of_idx_files_is_a_dataset(base: Base, tmp_path: Path) -> None:
    x, y = real_images(40)
    data = load_dataset(str(base.idx), "test")
    assert data.name == "idx-set" and data.num_classes == 10 and data.x.shape == (40, 1, 28, 28)
    assert torch.equal(data.x, torch.from_numpy(x)[:, None].float() / 255) and data.y.tolist() == y.tolist()
    run = run_cli(["eval", base.ckpt, "--data", base.idx])
    assert run.code == 0 and "(40 images)" in run.out, run.err
    raw = write_idx_folder(tmp_path / "raw-idx", x, y, gz=False)
    assert torch.equal(load_dataset(str(raw), "test").x, data.x)
    (raw / "train-images-idx3-ubyte").unlink()
    assert_refused(run_cli(["train", "--data", raw, "--out", tmp_path / "m.safetensors"]), "train-images-idx3-ubyte")


def test_gzip_bomb_in_an_idx_file_stops_at_the_declared_size(tmp_path: Path) -> None:
    import tracemalloc

    x, y = real_images(10)
    folder = write_idx_folder(tmp_path / "idx", x, y)
    # a header that declares 10 images, followed by 128 MB of zeros: only the declared bytes are decoded
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    head = bytes([0, 0, 8, 3]) + struct.pack(">III", 10, 28, 28)
    zeros = b"\0" * 2**20
    blob = comp.compress(head + x.tobytes()) + b"".join(comp.compress(zeros) for _ in range(128)) + comp.flush()
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(blob)
    tracemalloc.start()
    try:
        with time_limit(20):
            assert len(load_dataset(str(folder), "test")) == 10
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, peak
    # declared dimensions far beyond any dataset are refused from the header alone
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">III", 2**31, 2**16, 2**16))
    with pytest.raises(BanError, match="more than the"):
        load_dataset(str(folder), "test")


# ------------------------------------------------------------------ pickles that import


@pytest.mark.parametrize("form", ["protocol-2", "protocol-5", "torch-zip", "builtins-exec"])
def test_pickle_that_imports_is_refused_without_running(tmp_path: Path, form: str) -> None:
    victim = tmp_path / "pwned.txt"

    class Evil:
        def __reduce__(self):
            if form == "builtins-exec":
                return (exec, (f"open({str(victim)!r}, 'w').write('x')",))
            return (os.system, (f"touch {victim}",))

    path = tmp_path / "evil.pth"
    if form == "torch-zip":
        torch.save({"state_dict": Evil()}, path)
    else:
        path.write_bytes(pickle.dumps({"state_dict": Evil()}, protocol=2 if form == "protocol-2" else 5))
    expected = "builtins.exec" if form == "builtins-exec" else "system"
    for cmd in ("info", "eval", "detect"):
        assert_refused(run_cli([cmd, path, "--arch", "resnet18"]), "needs full unpickling", expected)
    assert not victim.exists()


def test_pickled_cifar_batch_that_imports_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "pwned.txt"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {victim}",))

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Evil(), b"labels": [0]}))
    (folder / "data_batch_1").write_bytes(b"")
    with pytest.raises(BanError, match="unsafe or corrupt pickle"):
        load_dataset("cifar10", "test", tmp_path)
    with pytest.raises(BanError, match="corrupt pickle"):
        load_dataset("cifar10", "train", tmp_path)
    assert not victim.exists()


def test_npz_with_python_objects_is_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "obj.npz", x=np.array([object()] * 4, dtype=object), y=np.zeros(4, dtype=np.int64))
    with pytest.raises(BanError, match="holds Python objects"):
        load_dataset(str(tmp_path / "obj.npz"))
