"""Image folders (one subfolder per class, read with Pillow) and `.npz` files with `x` and `y`."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ban.data.dataset import ImageData, from_uint8
from ban.errors import BanError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def read_image_folder(folder: Path, name: str | None = None, flip: bool = True) -> ImageData:
    """Read `folder/<class>/<image>`; classes are the sorted subfolder names. All images must share one size."""
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise BanError(f"{folder} has no class subfolders; lay images out as {folder}/<class>/<image>.png")
    images: list[np.ndarray] = []
    labels: list[int] = []
    mode: str | None = None
    for label, cls in enumerate(classes):
        for path in sorted((folder / cls).iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(path) as im:
                    if mode is None:
                        mode = "L" if im.mode in ("L", "1", "I;16", "I") else "RGB"
                    arr = np.asarray(im.convert(mode))
            except (UnidentifiedImageError, OSError) as exc:
                raise BanError(f"cannot read image {path}: {exc}; remove or replace the file") from exc
            if images and arr.shape != images[0].shape:
                raise BanError(
                    f"{path} is {arr.shape} but earlier images are {images[0].shape}; resize all images to one size"
                )
            images.append(arr)
            labels.append(label)
    if not images:
        raise BanError(f"{folder} has class subfolders but no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    data = from_uint8(np.stack(images), np.array(labels), len(classes), name or folder.name, flip)
    data.class_names = classes
    return data


def read_npz(path: Path, name: str | None = None, flip: bool = True, num_classes: int | None = None) -> ImageData:
    """Read an `.npz` with `x` (N×H×W, N×H×W×C or N×C×H×W; uint8 or float in [0,1]) and `y` (N labels)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            if "x" not in f or "y" not in f:
                raise BanError(f"{path} must hold arrays 'x' and 'y', found {sorted(f.files)}")
            x, y = f["x"], f["y"]
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise BanError(f"cannot read {path} as .npz: {exc}; save it with numpy.savez(path, x=..., y=...)") from exc
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise BanError(f"{path}: 'y' must be a 1-D integer array, got {y.dtype} {y.shape}")
    k = int(num_classes if num_classes is not None else (int(y.max()) + 1 if len(y) else 0))
    if x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        layout = "NHWC"
    elif x.ndim in (3, 4):
        layout = "NCHW"
    else:
        raise BanError(f"{path}: 'x' must be N×H×W, N×H×W×C or N×C×H×W, got {x.shape}")
    if x.dtype == np.uint8:
        return from_uint8(x, y, k, name or path.stem, flip, layout=layout)
    import torch

    arr = x.astype(np.float32)
    if arr.ndim == 3:
        arr = arr[:, None]
    elif layout == "NHWC":
        arr = arr.transpose(0, 3, 1, 2)
    if arr.size and (np.nanmin(arr) < 0 or np.nanmax(arr) > 1):
        raise BanError(f"{path}: float images must lie in [0, 1]; scale them (x / 255) or save uint8")
    return ImageData(
        torch.from_numpy(np.ascontiguousarray(arr)), torch.from_numpy(y.astype(np.int64)), k, name or path.stem, flip
    )
