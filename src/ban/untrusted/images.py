"""One picture file through Pillow, refusing decompression bombs before any pixel is decoded."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from ban.errors import BanError
from ban.untrusted.files import read_bytes

MAX_IMAGE_PIXELS = 4096 * 4096
"""The largest picture (width × height) ban decodes; classifiers here take a few dozen pixels a side."""


def read_image(path: Path, mode: str | None = None, size: tuple[int, int] | None = None) -> tuple[np.ndarray, str]:
    """Decode `path` as a uint8 array (H×W for mode "L", H×W×3 for "RGB") and return it with the mode used.

    `mode` None picks "L" for grey images and "RGB" otherwise. With `size` (width, height) the
    picture must have that size; it is checked from the header, before decoding.
    """
    data = read_bytes(path, "image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
                if w * h > MAX_IMAGE_PIXELS:
                    raise BanError(
                        f"image {path} declares {w}×{h} pixels, more than the {MAX_IMAGE_PIXELS} ban decodes "
                        "(a decompression bomb, or far too large for a classifier); resize it or remove it"
                    )
                if size is not None and (w, h) != size:
                    raise BanError(
                        f"image {path} is {w}×{h} but earlier images are {size[0]}×{size[1]}; "
                        "resize all images to one size"
                    )
                if mode is None:
                    mode = "L" if im.mode in ("L", "1", "I;16", "I") else "RGB"
                arr = np.asarray(im.convert(mode))
    except BanError:
        raise
    except Image.DecompressionBombError as exc:  # Pillow's own, larger limit, checked while opening
        raise BanError(
            f"image {path} declares more pixels than Pillow will decode ({exc}); it is a decompression bomb: remove it"
        ) from exc
    except Exception as exc:  # Pillow's plugins raise OSError, ValueError, SyntaxError, struct.error, ...
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BanError(f"cannot read image {path} ({detail}); remove or replace the file") from exc
    expected = (h, w) if mode == "L" else (h, w, 3)
    if arr.shape != expected or arr.dtype != np.uint8:
        raise BanError(f"image {path} decoded to {arr.dtype} {arr.shape}, not {expected}; re-save it as PNG")
    return arr, mode
