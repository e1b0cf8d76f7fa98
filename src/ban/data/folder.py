"""Image folders (one subfolder per class, read with Pillow) and `.npz` files with `x` and `y`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ban.data.dataset import ImageData, from_uint8
from ban.errors import BanError
from ban.untrusted import MAX_DECODED_BYTES, read_image, read_npz_arrays

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
MAX_CLASSES = 10_000


def read_image_folder(folder: Path, name: str | None = None, flip: bool = True) -> ImageData:
    """Read `folder/<class>/<image>`; classes are the sorted subfolder names (hidden ones skipped).

    All images must share one size; every class folder must hold at least one image.
    """
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise BanError(f"{folder} has no class subfolders; lay images out as {folder}/<class>/<image>.png")
    images: list[np.ndarray] = []
    labels: list[int] = []
    mode: str | None = None
    size: tuple[int, int] | None = None
    total = 0
    for label, cls in enumerate(classes):
        files = [p for p in sorted((folder / cls).iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            raise BanError(
                f"class folder {folder / cls} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                "add its images or remove the folder"
            )
        for path in files:
            arr, mode = read_image(path, mode, size)
            size = (arr.shape[1], arr.shape[0])
            total += arr.nbytes
            if total > MAX_DECODED_BYTES // 4:  # held as float32 afterwards
                raise BanError(f"{folder}: the images exceed {MAX_DECODED_BYTES} bytes as float32; use fewer images")
            images.append(arr)
            labels.append(label)
    data = from_uint8(np.stack(images), np.array(labels), len(classes), name or folder.name, flip)
    data.class_names = classes
    return data


def _layout(x: np.ndarray, path: Path) -> str:
    if x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        return "NHWC"
    if x.ndim in (3, 4):
        return "NCHW"
    raise BanError(f"{path}: 'x' must be N×H×W, N×H×W×C or N×C×H×W, got {x.shape}")


def read_npz(path: Path, name: str | None = None, flip: bool = True, num_classes: int | None = None) -> ImageData:
    """Read an `.npz` with `x` (N×H×W, N×H×W×C or N×C×H×W; uint8 or float in [0,1]) and `y` (N labels)."""
    arrays = read_npz_arrays(path, ("x", "y"))
    x, y = arrays["x"], arrays["y"]
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise BanError(f"{path}: 'y' must be a 1-D integer array, got {y.dtype} {y.shape}")
    layout = _layout(x, path)
    if len(x) != len(y) or len(y) == 0 or 0 in x.shape:
        raise BanError(f"{path}: 'x' {x.shape} and 'y' {y.shape} must hold the same, non-zero number of images")
    if x.dtype != np.uint8 and not np.issubdtype(x.dtype, np.floating):
        raise BanError(f"{path}: 'x' must be uint8 or float in [0, 1], got {x.dtype}; convert it (x / 255 or uint8)")
    k = int(num_classes if num_classes is not None else int(y.max()) + 1)
    if int(y.min()) < 0 or not 2 <= k <= MAX_CLASSES or int(y.max()) >= k:
        raise BanError(f"{path}: labels {int(y.min())}..{int(y.max())} do not fit {k} classes; labels must be 0..K-1")
    if x.dtype == np.uint8:
        return from_uint8(x, y, k, name or path.stem, flip, layout=layout)
    arr = x.astype(np.float32)
    if arr.ndim == 3:
        arr = arr[:, None]
    elif layout == "NHWC":
        arr = arr.transpose(0, 3, 1, 2)
    if not np.isfinite(arr).all():
        raise BanError(f"{path}: 'x' holds NaN or Inf values; fix or drop those images")
    if np.min(arr) < 0 or np.max(arr) > 1:
        raise BanError(f"{path}: float images must lie in [0, 1]; scale them (x / 255) or save uint8")
    return ImageData(
        torch.from_numpy(np.ascontiguousarray(arr)), torch.from_numpy(y.astype(np.int64)), k, name or path.stem, flip
    )
