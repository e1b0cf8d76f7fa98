"""The one reading layer for files ban did not write: checkpoints, their metadata, datasets.

ban inspects models from strangers, so this package is its attack surface. Every untrusted file
is opened here and nowhere else; each reader refuses anything that is not a regular file (a
FIFO would block forever), bounds what a header may make it allocate, never unpickles more than
tensors (or, for CIFAR-10 batches, numpy arrays), and turns every failure of the underlying
library (safetensors, torch, json, zlib, numpy, Pillow) into a one-line `BanError` that names
the file, the problem and the fix.
"""

from ban.untrusted.files import MAX_DECODED_BYTES, read_bytes, regular_file
from ban.untrusted.gzip_io import gunzip_prefix, is_gzip
from ban.untrusted.images import MAX_IMAGE_PIXELS, read_image
from ban.untrusted.json_io import parse_json_object
from ban.untrusted.npz import read_npz_arrays
from ban.untrusted.restricted_pickle import pickle_imports, safe_unpickle
from ban.untrusted.safetensors_io import looks_like_safetensors, read_safetensors, read_safetensors_metadata
from ban.untrusted.torch_io import UnreadableTorchFile, read_torch_object

__all__ = [
    "MAX_DECODED_BYTES",
    "MAX_IMAGE_PIXELS",
    "UnreadableTorchFile",
    "gunzip_prefix",
    "is_gzip",
    "looks_like_safetensors",
    "parse_json_object",
    "pickle_imports",
    "read_bytes",
    "read_image",
    "read_npz_arrays",
    "read_safetensors",
    "read_safetensors_metadata",
    "read_torch_object",
    "regular_file",
    "safe_unpickle",
]
