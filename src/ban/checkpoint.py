"""Safe checkpoints: safetensors plus JSON metadata; plain PyTorch files only with weights_only=True.

A ban checkpoint is one `.safetensors` file. Its tensors are the model's state dict under
`model.` and the attack's state (trigger, warp grid, generator weights) under `attack.`; its
header metadata key `ban` holds JSON: architecture and arguments, classes, input shape,
normalisation, dataset, seed, BA, versions, and optionally attack name, parameters, target, ASR.

Files are read through `ban.untrusted` (regular files only, every library failure a BanError);
nothing here ever unpickles arbitrary objects: a file that needs full unpickling is refused. A
model is first built on the meta device and compared with the file's tensors, so a hostile file
cannot make ban allocate a model larger than the tensors it holds.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from ban.errors import BanError
from ban.models.base import SplitModel
from ban.models.registry import MODELS, canonical_arch, create_model
from ban.untrusted import (
    looks_like_safetensors,
    read_bytes,
    read_safetensors,
    read_safetensors_metadata,
    read_torch_object,
    regular_file,
)
from ban.untrusted.metadata import MAX_SIDE, parse_ban_metadata
from ban.utils import atomic_path, versions

if TYPE_CHECKING:
    from ban.attacks.base import Attack

FORMAT = "ban-checkpoint/1"
PAPER_KEYS = ("netC", "model_state_dict", "model", "state_dict", "net")
LOADABLE_DTYPES = {
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
    torch.uint8,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.bool,
}
PROBE_SIDE = 32  # every architecture that runs at PROBE_SIDE px runs at any larger size


def _probe(model: nn.Module, shape: tuple[int, int, int], num_classes: int, source: str) -> None:
    """Raise unless `model` maps one image of `shape` (sides capped at PROBE_SIDE) to `num_classes` logits."""
    c, h, w = shape
    x = torch.zeros(1, c, min(h, PROBE_SIDE), min(w, PROBE_SIDE))
    try:
        with torch.no_grad():
            out = model(x)
    except (RuntimeError, ValueError) as exc:
        detail = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise BanError(
            f"{source}: the model does not run on inputs of shape {shape} ({detail}); "
            "pass data of the size it was trained on (or --input-size)"
        ) from exc
    if tuple(out.shape) != (1, num_classes):
        raise BanError(f"{source}: the model outputs {tuple(out.shape)[1:]} values, not {num_classes} class scores")


@dataclass
class Checkpoint:
    """A loaded model with its metadata and (when it carries one) its attack.

    A plain state dict loaded without an input size has `meta["input_shape"]` = [C, None, None]
    until `adopt_input_size` takes the size from the data it is used with.
    """

    model: SplitModel
    meta: dict[str, Any] = field(default_factory=dict)
    attack: Attack | None = None
    source: str = "the checkpoint"

    @property
    def num_classes(self) -> int:
        return int(self.meta["num_classes"])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        shape = self.meta["input_shape"]
        if any(v is None for v in shape):
            raise BanError(f"the input size of {self.source} is unknown (a plain state dict); pass --input-size")
        return tuple(int(v) for v in shape)  # type: ignore[return-value]

    @property
    def input_size_known(self) -> bool:
        return all(v is not None for v in self.meta["input_shape"])

    def adopt_input_size(self, image_shape: tuple[int, int, int]) -> None:
        """Take the height and width of `image_shape` when this checkpoint does not know its input size.

        The architectures are size-agnostic, so a plain state dict fits data of any size; the
        channel count stays the model's (a mismatch is reported where the data is checked).
        """
        if self.input_size_known:
            return
        c = int(self.meta["input_shape"][0])
        _, h, w = (int(v) for v in image_shape)
        if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
            raise BanError(f"images of {h}×{w} px are outside 1..{MAX_SIDE} px a side; resize them")
        if c == int(image_shape[0]):
            _probe(self.model, (c, h, w), self.num_classes, self.source)
        self.meta["input_shape"] = [c, h, w]


def model_metadata(
    model: SplitModel,
    arch: str,
    num_classes: int,
    input_shape: tuple[int, int, int],
    width: float = 1.0,
    dataset: str | None = None,
    seed: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The metadata every ban checkpoint carries (pass BA, attack etc. as `extra`)."""
    return {
        "format": FORMAT,
        "arch": canonical_arch(arch),
        "num_classes": int(num_classes),
        "in_channels": int(input_shape[0]),
        "width": float(width),
        "input_shape": [int(v) for v in input_shape],
        "normalization": {
            "mean": model.normalize.mean.flatten().tolist(),
            "std": model.normalize.std.flatten().tolist(),
        },
        "dataset": dataset,
        "seed": seed,
        "versions": versions(),
        **extra,
    }


def _check_finite(tensors: dict[str, Tensor], source: str) -> None:
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise BanError(f"{source}: {len(bad)} tensors hold NaN or Inf values (e.g. {bad[0]}); the checkpoint is broken")


def _check_tensors(tensors: dict[str, Tensor], source: str) -> None:
    odd = [k for k, v in tensors.items() if v.dtype not in LOADABLE_DTYPES]
    if odd:
        raise BanError(
            f"{source}: tensor {odd[0]} has dtype {str(tensors[odd[0]].dtype).replace('torch.', '')}, "
            "which ban does not load; re-save the weights as float32"
        )
    _check_finite(tensors, source)


def save_model(path: str | Path, model: SplitModel, meta: dict[str, Any], attack: Attack | None = None) -> Path:
    """Write `model` (and `attack`'s state) with `meta` to a `.safetensors` file, atomically."""
    if not isinstance(path, str | os.PathLike):
        raise BanError(f"save_model takes the checkpoint's path (a str or Path), got {type(path).__name__}")
    if not isinstance(model, nn.Module):
        raise BanError(f"save_model takes a torch nn.Module, got {type(model).__name__}")
    if not isinstance(meta, dict):
        raise BanError(f"save_model takes the metadata as a dict (model_metadata(...)), got {type(meta).__name__}")
    path = Path(path)
    if path.is_dir():
        raise BanError(f"{path} is a folder; pass a file path for the checkpoint, e.g. {path / 'model.safetensors'}")
    if None in meta.get("input_shape", []):
        raise BanError(f"the model's input size is unknown, so {path} would not load; give load_model an input_size")
    tensors = {f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    meta = dict(meta)
    if attack is not None:
        tensors.update({f"attack.{k}": v.detach().cpu().contiguous().clone() for k, v in attack.state_dict().items()})
        meta["attack"] = attack.describe()
    _check_finite(tensors, str(path))
    try:
        text = json.dumps(meta)
    except (TypeError, ValueError) as exc:
        problem = f"the metadata for {path} is not plain JSON data ({exc})"
        raise BanError(f"{problem}; keep to str, numbers, lists and dicts") from exc
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"ban": text})
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The JSON metadata of a ban `.safetensors` checkpoint, checked, without loading tensors."""
    path = Path(path)
    raw = read_safetensors_metadata(path).get("ban")
    if raw is None:
        raise BanError(f"{path} is a safetensors file without ban metadata; load it as a plain state dict with --arch")
    return parse_ban_metadata(raw, path)


def _kind_of(head: bytes) -> str:
    if head[:4] == b"PK\x03\x04":
        return "a zip archive (a PyTorch file)"
    if head[:1] == b"\x80":
        return "a pickle (a PyTorch file)"
    return "something else"


def _read_file(path: Path) -> tuple[dict[str, Tensor], dict[str, Any] | None]:
    """The tensors of `path` and its ban metadata (None for a plain state dict); content decides the format."""
    data = read_bytes(path, "checkpoint")
    named = path.suffix.lower() == ".safetensors"
    if named and not looks_like_safetensors(data[:9], len(data)) and _kind_of(data[:4]) != "something else":
        raise BanError(
            f"{path} is named .safetensors but holds {_kind_of(data[:4])}; rename it to .pt to load it as a "
            "plain state dict (read with weights_only), or re-export it as safetensors"
        )
    if named or looks_like_safetensors(data[:9], len(data)):
        tensors, header = read_safetensors(path, data)
        meta = parse_ban_metadata(header["ban"], path) if "ban" in header else None
        return tensors, meta
    return _state_dict_of(read_torch_object(path, data), path), None


def _state_dict_of(obj: Any, path: Path) -> dict[str, Tensor]:
    """The tensors of a plain state dict, also under the paper code's keys (`netC`, `model_state_dict`, ...)."""
    if isinstance(obj, dict):
        for key in PAPER_KEYS:
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not any(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
        raise BanError(f"{path} holds no state dict (looked at the top level and under {', '.join(PAPER_KEYS)})")
    state = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, Tensor)}
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _mismatch(own: dict[str, Tensor], state: dict[str, Tensor], allow_missing_normalize: bool) -> list[str]:
    missing = [k for k in own if k not in state and not (allow_missing_normalize and k.startswith("normalize."))]
    unexpected = [k for k in state if k not in own]
    misshaped = [k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    mistyped = [k for k in state if k in own and state[k].is_floating_point() != own[k].is_floating_point()]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    if misshaped:
        k = misshaped[0]
        file_shape, model_shape = tuple(state[k].shape), tuple(own[k].shape)
        parts.append(f"{len(misshaped)} mis-shaped (e.g. {k}: file {file_shape} vs model {model_shape})")
    if mistyped:
        k = mistyped[0]
        parts.append(f"{len(mistyped)} of the wrong kind (e.g. {k}: file {state[k].dtype} vs model {own[k].dtype})")
    return parts


def _build(
    arch: str,
    num_classes: int,
    in_channels: int,
    width: float,
    mean: Any,
    std: Any,
    state: dict[str, Tensor],
    source: str,
    allow_missing_normalize: bool,
    hint: str,
) -> SplitModel:
    """The architecture with `state` loaded; checked on the meta device first, so nothing large is built in vain."""
    try:
        with torch.device("meta"):
            skeleton = create_model(arch, num_classes, in_channels, width, mean, std)
    except BanError as exc:
        raise BanError(f"{source}: {exc}") from exc
    except Exception as exc:  # the sizes come from a stranger's file: any constructor error is bad input
        raise BanError(f"{source}: the tensors do not describe a {arch} ({exc}); {hint}") from exc
    parts = _mismatch(skeleton.state_dict(), state, allow_missing_normalize)
    if parts:
        raise BanError(f"{source}: tensors do not fit the architecture: {'; '.join(parts)}; {hint}")
    model = create_model(arch, num_classes, in_channels, width, mean, std)
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise BanError(f"{source}: tensors do not fit the architecture ({str(exc).splitlines()[0]})") from exc
    return model.eval()


def _plain_dims(arch: str, state: dict[str, Tensor]) -> tuple[int, int, float]:
    """(classes, input channels, width) read off a plain state dict at the architecture's own first and last layer.

    The layer names come from the architecture (built on the meta device), so the order of the
    file's tensors does not matter; a layer the file lacks leaves the default (10, 3, 1.0).
    """
    with torch.device("meta"):
        ref = create_model(arch, 10, 1, 1.0).state_dict()
    layers = [(k, v) for k, v in ref.items() if not k.startswith("normalize.")]
    first = next(k for k, v in layers if v.ndim == 4)
    last = [k for k, v in layers if v.ndim == 2][-1]
    classes = int(state[last].shape[0]) if last in state and state[last].ndim == 2 else 10
    conv = state.get(first)
    if conv is None or conv.ndim != 4:
        return classes, 3, 1.0
    return classes, int(conv.shape[1]), float(conv.shape[0]) / int(ref[first].shape[0])


def _attack_of(meta: dict[str, Any], tensors: dict[str, Tensor], source: str) -> Attack:
    from ban.attacks import create_attack

    info = meta["attack"]
    try:
        attack = create_attack(info["name"], preset=info.get("preset"), **info.get("params", {}))
        attack.setup(
            tuple(info.get("image_shape") or meta["input_shape"]),
            int(info.get("num_classes") or meta["num_classes"]),
        )
    except BanError as exc:
        raise BanError(f"{source}: the attack in its metadata cannot be rebuilt: {exc}") from exc
    except (TypeError, ValueError, RuntimeError, KeyError, IndexError) as exc:
        raise BanError(
            f"{source}: the attack in its metadata cannot be rebuilt ({exc}); the checkpoint is corrupt"
        ) from exc
    attack_state = {k[len("attack.") :]: v for k, v in tensors.items() if k.startswith("attack.")}
    try:
        attack.load_state_dict(attack_state, strict=True)
    except RuntimeError as exc:
        raise BanError(
            f"{source}: the attack's saved state does not fit '{info['name']}': {str(exc).splitlines()[0]}"
        ) from exc
    return attack


def _load_ban(path: Path, tensors: dict[str, Tensor], meta: dict[str, Any]) -> Checkpoint:
    model_state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    norm = meta.get("normalization", {})
    model = _build(
        meta["arch"],
        meta["num_classes"],
        meta["in_channels"],
        meta.get("width", 1.0),
        norm.get("mean"),
        norm.get("std"),
        model_state,
        str(path),
        allow_missing_normalize=False,
        hint="the metadata does not match the tensors: re-export the checkpoint",
    )
    _probe(model, tuple(meta["input_shape"]), meta["num_classes"], str(path))  # type: ignore[arg-type]
    attack = _attack_of(meta, tensors, str(path)) if meta.get("attack") else None
    return Checkpoint(model, meta, attack, str(path))


def load_model(
    path: str | Path,
    arch: str | None = None,
    num_classes: int | None = None,
    width: float | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    input_size: int | None = None,
) -> Checkpoint:
    """Load a ban checkpoint, or a plain state dict (also the paper code's layouts) given `arch`.

    For plain files: `num_classes`, input channels and width are read off the tensors when not
    given; the normalisation (`mean`, `std`) must be given when the file lacks it; the input size
    is `input_size`, or else left to `Checkpoint.adopt_input_size` (the architectures are size-agnostic).
    """
    path = regular_file(path, "checkpoint")
    if input_size is not None and not 1 <= input_size <= MAX_SIDE:
        raise BanError(f"--input-size {input_size} is outside 1..{MAX_SIDE}; pass the side of the model's images")
    if arch is not None:
        arch = canonical_arch(arch)  # a misspelt --arch is refused even where the file names its own
    tensors, meta = _read_file(path)
    _check_tensors(tensors, str(path))
    if meta is not None:
        return _load_ban(path, tensors, meta)
    # a plain state dict: the user names the architecture
    state = {
        k[len("model.") :] if k.startswith("model.") else k: v
        for k, v in tensors.items()
        if not k.startswith("attack.")
    }
    if arch is None:
        raise BanError(f"{path} carries no ban metadata; pass --arch (one of {MODELS.choices()})")
    k_found, in_ch, w_found = _plain_dims(arch, state)
    k_classes = num_classes if num_classes is not None else k_found
    w = width if width is not None else w_found
    has_norm = "normalize.mean" in state
    model = _build(
        arch,
        k_classes,
        in_ch,
        w,
        mean if not has_norm else None,
        std if not has_norm else None,
        state,
        str(path),
        allow_missing_normalize=True,
        hint=f"check --arch (read off the tensors: {k_classes} classes, {in_ch} input channels, width {w:g})",
    )
    meta = model_metadata(model, arch, k_classes, (in_ch, 1, 1), w, source=str(path.name))
    meta["input_shape"] = [in_ch, input_size, input_size]
    meta["normalization_assumed"] = not has_norm
    ckpt = Checkpoint(model, meta, None, str(path))
    if input_size is not None:
        _probe(model, (in_ch, input_size, input_size), k_classes, str(path))
    return ckpt
