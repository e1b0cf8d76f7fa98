"""`load_dataset`: the built-in datasets by name, or a user's folder / .npz by path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ban.data.cifar import find_cifar_layout, read_cifar10
from ban.data.dataset import ImageData
from ban.data.folder import read_image_folder, read_npz
from ban.data.idx import has_idx_layout, read_idx_dataset
from ban.errors import BanError
from ban.registry import Registry


@dataclass(frozen=True)
class DatasetInfo:
    """What ban knows about a named dataset: where it lives by default and how to normalise it."""

    name: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    flip: bool
    default_dir: str | None
    install_hint: str


DATASETS: Registry[DatasetInfo] = Registry("dataset")
DATASETS.register(
    "fashion-mnist",
    DatasetInfo(
        "fashion-mnist",
        (0.2860,),
        (0.3530,),
        flip=True,
        default_dir="/usr/share/datasets/fashion-mnist",
        install_hint="install the Debian package 'dataset-fashion-mnist' (sudo apt-get install dataset-fashion-mnist) "
        "or pass --data-dir with the IDX files",
    ),
    aliases=["fmnist", "fashionmnist"],
)
DATASETS.register(
    "mnist",
    DatasetInfo(
        "mnist",
        (0.1307,),
        (0.3081,),
        flip=False,
        default_dir="/usr/share/datasets/mnist",
        install_hint="pass --data-dir with the MNIST IDX files (train-images-idx3-ubyte.gz, ...)",
    ),
)
DATASETS.register(
    "cifar10",
    DatasetInfo(
        "cifar10",
        (0.4914, 0.4822, 0.4465),
        (0.2023, 0.1994, 0.2010),
        flip=True,
        default_dir=None,
        install_hint="pass --data-dir with the folder holding cifar-10-batches-py or cifar-10-batches-bin",
    ),
    aliases=["cifar", "cifar-10"],
)
FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
DEFAULT_DATASET = "fashion-mnist"


def list_datasets() -> list[str]:
    return DATASETS.list()


def dataset_info(name: str) -> DatasetInfo | None:
    """The built-in dataset that `name` spells (any case, `_` or `-`, or an alias), or None (a path, perhaps)."""
    return DATASETS.get(name)


def unknown_dataset(name: str) -> BanError:
    """The error for a name that is neither a built-in dataset nor an existing file or folder."""
    return BanError(f"unknown dataset '{name}': not one of {DATASETS.choices()} and no such file or folder")


def normalization_for(data: ImageData) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std): the published constants for a named dataset, else measured on `data`."""
    info = DATASETS.exact(data.name)
    if info is not None and len(info.mean) == data.image_shape[0]:
        return info.mean, info.std
    x = data.x
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def load_dataset(name: str = DEFAULT_DATASET, split: str = "train", data_dir: str | Path | None = None) -> ImageData:
    """Load `split` ("train" or "test") of a dataset.

    `name` is a built-in name (fashion-mnist, mnist, cifar10), a path to an image folder
    (one subfolder per class; `data_dir/train` and `data_dir/test` are used when present),
    a folder holding MNIST-format IDX files, a CIFAR-10 folder, or a `.npz` file with `x` and `y`.
    """
    if split not in ("train", "test"):
        raise BanError(f"unknown split '{split}'; use train or test")
    info = dataset_info(name)
    if info is not None:
        key = info.name
        folder = Path(data_dir) if data_dir else (Path(info.default_dir) if info.default_dir else None)
        if folder is None:
            raise BanError(f"dataset '{key}' needs its files: {info.install_hint}")
        if not folder.is_dir():
            raise BanError(f"dataset folder {folder} not found: {info.install_hint}")
        if key == "cifar10":
            return read_cifar10(folder, split)
        data = read_idx_dataset(folder, split, key, info.flip)
        if key == "fashion-mnist":
            data.class_names = list(FASHION_MNIST_CLASSES)
        return data
    path = Path(name)
    if not path.exists():
        raise unknown_dataset(name)
    if not path.is_dir():
        if path.suffix.lower() != ".npz":
            raise BanError(f"{path}: unsupported data file; use a .npz with x and y, or an image folder")
        return read_npz(path)
    if (path / split).is_dir():
        return read_image_folder(path / split, name=path.name)
    if has_idx_layout(path):
        known = DATASETS.exact(path.name.lower())
        data = read_idx_dataset(path, split, path.name, known.flip if known else True, 10 if known else None)
        if known is not None and known.name == "fashion-mnist":
            data.class_names = list(FASHION_MNIST_CLASSES)
        return data
    try:
        find_cifar_layout(path)
    except BanError:
        return read_image_folder(path)
    return read_cifar10(path, split)
