"""Dataset readers, the defender split, balanced sampling and augmentation, on real and fixture data."""

from __future__ import annotations

import gzip
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ban.data import Augment, balanced_sample, defender_split, load_dataset
from ban.data.cifar import read_cifar10
from ban.data.folder import read_image_folder, read_npz
from ban.data.idx import read_idx
from ban.errors import BanError


def _foolbox_data() -> Path:
    """foolbox's data folder, found without importing foolbox (installed with --no-deps)."""
    import importlib.util

    spec = importlib.util.find_spec("foolbox")
    assert spec is not None and spec.submodule_search_locations, "pip install --no-deps foolbox (make setup does)"
    return Path(list(spec.submodule_search_locations)[0]) / "data"


FOOLBOX_DATA = _foolbox_data()


def foolbox_cifar10() -> tuple[np.ndarray, np.ndarray]:
    """The 20 real CIFAR-10 test images shipped in foolbox (label at the end of each file name)."""
    files = sorted(FOOLBOX_DATA.glob("cifar10_*.png"))
    assert len(files) == 20
    images = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])  # N×32×32×3
    labels = np.array([int(f.stem.split("_")[-1]) for f in files])
    return images, labels


def write_cifar_py(folder: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Write the `cifar-10-batches-py` layout exactly as the original (pickled dicts, N×3072 uint8 rows)."""
    folder.mkdir(parents=True)
    data = images.transpose(0, 3, 1, 2).reshape(len(images), -1).astype(np.uint8)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        part = slice(i * 3, i * 3 + 3) if name != "test_batch" else slice(15, 20)
        batch = {
            b"batch_label": name.encode(),
            b"labels": labels[part].tolist(),
            b"data": data[part],
            b"filenames": [b"x.png"] * len(data[part]),
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))


def write_cifar_bin(folder: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Write the `cifar-10-batches-bin` layout: records of 1 label byte + 3072 pixel bytes."""
    folder.mkdir(parents=True)
    rows = np.concatenate([labels[:, None].astype(np.uint8), images.transpose(0, 3, 1, 2).reshape(len(images), -1)], 1)
    for i, name in enumerate([f"data_batch_{k}.bin" for k in range(1, 6)] + ["test_batch.bin"]):
        part = slice(i * 3, i * 3 + 3) if name != "test_batch.bin" else slice(15, 20)
        (folder / name).write_bytes(rows[part].astype(np.uint8).tobytes())


def test_fashion_mnist_real_files() -> None:
    train = load_dataset("fashion-mnist", "train")
    test = load_dataset("fashion-mnist", "test")
    assert train.x.shape == (60000, 1, 28, 28) and test.x.shape == (10000, 1, 28, 28)
    assert train.x.dtype == torch.float32 and train.y.dtype == torch.int64
    assert 0.0 <= float(train.x.min()) and float(train.x.max()) <= 1.0
    assert train.class_counts() == [6000] * 10 and test.class_counts() == [1000] * 10
    assert abs(float(train.x.mean()) - 0.2860) < 1e-3  # the published Fashion-MNIST mean


@pytest.mark.parametrize("layout", ["py", "bin"])
def test_cifar10_both_layouts_on_real_images(tmp_path: Path, layout: str) -> None:
    images, labels = foolbox_cifar10()
    folder = tmp_path / f"cifar-10-batches-{layout}"
    (write_cifar_py if layout == "py" else write_cifar_bin)(folder, images, labels)
    train = read_cifar10(tmp_path, "train")
    test = load_dataset("cifar10", "test", tmp_path)
    assert train.x.shape == (15, 3, 32, 32) and test.x.shape == (5, 3, 32, 32)
    expected = torch.from_numpy(images.transpose(0, 3, 1, 2)).float() / 255
    assert torch.equal(train.x, expected[:15]) and torch.equal(test.x, expected[15:])
    assert train.y.tolist() == labels[:15].tolist() and test.y.tolist() == labels[15:].tolist()


def test_cifar_pickle_that_would_create_a_file_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "pwned.txt"

    class Evil:
        def __reduce__(self):  # unpickling calls open(victim, "w")
            return (open, (str(victim), "w"))

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Evil(), b"labels": [0]}, protocol=2))
    with pytest.raises(BanError, match="unsafe or corrupt pickle"):
        read_cifar10(tmp_path, "test")
    assert not victim.exists()


def test_truncated_cifar_bin_is_reported(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    (folder / "test_batch.bin").write_bytes(b"\x01" * 5000)
    with pytest.raises(BanError, match="truncated"):
        read_cifar10(tmp_path, "test")


def test_image_folder_with_real_images(tmp_path: Path) -> None:
    images, labels = foolbox_cifar10()
    for i, (img, lab) in enumerate(zip(images, labels, strict=True)):
        d = tmp_path / f"class{lab}"
        d.mkdir(exist_ok=True)
        Image.fromarray(img).save(d / f"{i:02d}.png")
    data = read_image_folder(tmp_path)
    assert data.x.shape == (20, 3, 32, 32)
    assert data.num_classes == len(set(labels.tolist())) == len(data.class_names)
    # every image is read back pixel-exact, under the label of its folder
    for cls, name in enumerate(data.class_names):
        got = data.x[data.y == cls]
        want = torch.from_numpy(images[labels == int(name[5:])].transpose(0, 3, 1, 2)).float() / 255
        assert torch.equal(got, want)


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(BanError, match="no class subfolders"):
        read_image_folder(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(BanError, match="cannot read image"):
        read_image_folder(tmp_path)


def test_npz_layouts(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    y = np.arange(12) % 4
    np.savez(tmp_path / "a.npz", x=x, y=y)
    data = read_npz(tmp_path / "a.npz")
    assert data.x.shape == (12, 3, 32, 32) and data.num_classes == 4
    assert torch.equal(data.x, torch.from_numpy(x.transpose(0, 3, 1, 2)).float() / 255)
    np.savez(tmp_path / "b.npz", x=x.transpose(0, 3, 1, 2).astype(np.float32) / 255, y=y)
    assert torch.allclose(read_npz(tmp_path / "b.npz").x, data.x)
    np.savez(tmp_path / "c.npz", images=x)
    with pytest.raises(BanError, match="'x' and 'y'"):
        read_npz(tmp_path / "c.npz")
    np.savez(tmp_path / "d.npz", x=x.astype(np.float32), y=y)  # floats outside [0, 1]
    with pytest.raises(BanError, match=r"\[0, 1\]"):
        read_npz(tmp_path / "d.npz")


def test_idx_bad_magic_and_truncation(tmp_path: Path) -> None:
    bad = tmp_path / "bad-idx"
    bad.write_bytes(b"\x12\x34\x08\x03" + b"\x00" * 20)
    with pytest.raises(BanError, match="bad magic"):
        read_idx(bad)
    src = Path("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz")
    raw = gzip.open(src).read()
    short = tmp_path / "short.gz"
    short.write_bytes(gzip.compress(raw[:5000]))
    with pytest.raises(BanError, match="truncated"):
        read_idx(short)


def test_missing_dataset_folder_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(BanError, match="dataset-fashion-mnist"):
        load_dataset("fashion-mnist", "train", tmp_path / "nowhere")
    with pytest.raises(BanError, match="--data-dir"):
        load_dataset("cifar10", "train")
    with pytest.raises(BanError, match="unknown dataset"):
        load_dataset("imagenet-77", "train")


def test_defender_split_is_disjoint_and_reproducible() -> None:
    data = load_dataset("fashion-mnist", "test")
    data.x = data.x.clone()
    data.x[:, 0, 0, 0] = torch.arange(len(data), dtype=torch.float32) / len(data)  # tag each image by its index
    a1, d1 = defender_split(data, 0.1, seed=0)
    a2, d2 = defender_split(data, 0.1, seed=0)
    _, d3 = defender_split(data, 0.1, seed=1)
    tag = lambda d: set((d.x[:, 0, 0, 0] * len(data)).round().long().tolist())  # noqa: E731
    assert len(d1) == 1000 and len(a1) == 9000
    assert tag(a1).isdisjoint(tag(d1)) and len(tag(a1) | tag(d1)) == len(data)
    assert tag(d1) == tag(d2) and torch.equal(a1.y, a2.y)
    assert tag(d1) != tag(d3)


def test_balanced_sample() -> None:
    data = load_dataset("fashion-mnist", "test")
    s = balanced_sample(data, 95, seed=3)
    counts = s.class_counts()
    assert len(s) == 95 and max(counts) - min(counts) <= 1
    assert torch.equal(s.x, balanced_sample(data, 95, seed=3).x)
    few = data.subset(torch.nonzero(data.y != 4).flatten()[:500])
    with pytest.raises(BanError, match=r"classes \[4\]"):
        balanced_sample(few, 100, seed=0, min_per_class=2)


def test_augment_is_seeded_and_keeps_content() -> None:
    x = torch.rand(16, 3, 32, 32)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    a, b = Augment(4, True)(x, g1), Augment(4, True)(x, g2)
    assert torch.equal(a, b) and a.shape == x.shape
    assert torch.equal(Augment(0, False)(x), x)
    # with zero shift and no flip the crop is the identity; a shifted crop keeps pixels from the original image
    vals = set(x.flatten().tolist()) | {0.0}
    assert set(a.flatten().tolist()) <= vals


def test_datasets_copy_cleanly(tmp_path: Path) -> None:
    # the built-in default also reads from a user-provided copy of the IDX files (raw, not gzipped)
    for f in Path("/usr/share/datasets/fashion-mnist").glob("t10k-*.gz"):
        (tmp_path / f.name[:-3]).write_bytes(gzip.open(f).read())
    shutil.copy("/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz", tmp_path)
    test = load_dataset("fashion-mnist", "test", tmp_path)
    assert len(test) == 10000
