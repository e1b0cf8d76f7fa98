"""Safe checkpoints: safetensors plus JSON metadata; plain PyTorch files only with weights_only=True.

A ban checkpoint is one `.safetensors` file. Its tensors are the model's state dict under
`model.` and the attack's state (trigger, warp grid, generator weights) under `attack.`; its
header metadata key `ban` holds JSON: architecture and arguments, classes, input shape,
normalisation, dataset, seed, BA, versions, and optionally attack name, parameters, target, ASR.

Nothing here ever unpickles arbitrary objects: a file that needs full unpickling is refused.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from ban.errors import BanError
from ban.models.base import SplitModel
from ban.models.registry import MODELS, canonical_arch, create_model
from ban.utils import atomic_path, versions

if TYPE_CHECKING:
    from ban.attacks.base import Attack

FORMAT = "ban-checkpoint/1"
PAPER_KEYS = ("netC", "model_state_dict", "model", "state_dict", "net")
_BASE_FIRST_CONV = {
    "resnet18": 64,
    "preact_resnet18": 64,
    "vgg16": 64,
    "densenet121": 64,
    "mobilenetv2": 32,
    "small_cnn": 32,
}


@dataclass
class Checkpoint:
    """A loaded model with its metadata and (when it carries one) its attack."""

    model: SplitModel
    meta: dict[str, Any] = field(default_factory=dict)
    attack: Attack | None = None

    @property
    def num_classes(self) -> int:
        return int(self.meta["num_classes"])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.meta["input_shape"])  # type: ignore[return-value]


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


def save_model(path: str | Path, model: SplitModel, meta: dict[str, Any], attack: Attack | None = None) -> Path:
    """Write `model` (and `attack`'s state) with `meta` to a `.safetensors` file, atomically."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    meta = dict(meta)
    if attack is not None:
        tensors.update({f"attack.{k}": v.detach().cpu().contiguous().clone() for k, v in attack.state_dict().items()})
        meta["attack"] = attack.describe()
    _check_finite(tensors, str(path))
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"ban": json.dumps(meta)})
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The JSON metadata of a ban `.safetensors` checkpoint, without loading tensors."""
    path = Path(path)
    _require_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("ban")
    except (SafetensorError, OSError, ValueError) as exc:
        raise BanError(
            f"{path} is not a readable safetensors file ({exc}); the file is corrupt or another format"
        ) from exc
    if raw is None:
        raise BanError(f"{path} is a safetensors file without ban metadata; load it with --arch and --num-classes")
    return json.loads(raw)


def _require_file(path: Path) -> None:
    if not path.exists():
        raise BanError(f"checkpoint {path} not found; check the path")
    if path.is_dir():
        raise BanError(f"{path} is a folder, not a checkpoint file")


def _is_safetensors(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 0 < n < 100_000_000


def _read_safetensors(path: Path) -> tuple[dict[str, Tensor], dict[str, Any] | None]:
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise BanError(f"{path} is a corrupt safetensors file ({exc}); re-export it") from exc
    return tensors, (json.loads(meta["ban"]) if "ban" in meta else None)


def _read_torch(path: Path) -> dict[str, Tensor]:
    """A plain PyTorch file through torch.load(weights_only=True) only."""
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise BanError(
            f"{path} needs full unpickling (it stores Python objects, not only tensors), which could run code; "
            "ban refuses it: re-save it as a state dict (torch.save(model.state_dict(), f)) or as safetensors"
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, KeyError) as exc:
        raise BanError(
            f"cannot read {path} as a PyTorch checkpoint ({exc}); the file is corrupt or another format"
        ) from exc
    if isinstance(obj, dict):
        for key in PAPER_KEYS:
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not any(isinstance(v, Tensor) for v in obj.values()):
        raise BanError(f"{path} holds no state dict (looked at the top level and under {', '.join(PAPER_KEYS)})")
    state = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _load_state(model: nn.Module, state: dict[str, Tensor], source: str, allow_missing_normalize: bool) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in state and not (allow_missing_normalize and k.startswith("normalize."))]
    unexpected = [k for k in state if k not in own]
    misshaped = [k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or misshaped:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if misshaped:
            k = misshaped[0]
            parts.append(
                f"{len(misshaped)} mis-shaped (e.g. {k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)})"
            )
        raise BanError(
            f"{source}: tensors do not fit the architecture: {'; '.join(parts)}; check --arch, --width, --num-classes"
        )
    model.load_state_dict(state, strict=False)


def _infer_width(arch: str, state: dict[str, Tensor], in_channels: int) -> float:
    """Width multiplier from the first convolution's output channels."""
    conv = next((v for k, v in state.items() if v.ndim == 4 and v.shape[1] == in_channels), None)
    if conv is None:
        return 1.0
    base = _BASE_FIRST_CONV.get(arch, 64)
    return float(conv.shape[0]) / base


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
    given; the normalisation (`mean`, `std`) must be given when the file lacks it.
    """
    from ban.attacks import create_attack

    path = Path(path)
    _require_file(path)
    if _is_safetensors(path):
        tensors, meta = _read_safetensors(path)
    else:
        tensors, meta = _read_torch(path), None
    _check_finite(tensors, str(path))
    if meta is not None:
        model_state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
        norm = meta.get("normalization", {})
        try:
            model = create_model(
                meta["arch"],
                meta["num_classes"],
                meta["in_channels"],
                meta.get("width", 1.0),
                norm.get("mean"),
                norm.get("std"),
            )
        except KeyError as exc:
            raise BanError(f"{path}: metadata lacks {exc}; the checkpoint was not written by ban") from exc
        _load_state(model, model_state, str(path), allow_missing_normalize=False)
        attack = None
        if meta.get("attack"):
            info = meta["attack"]
            attack = create_attack(info["name"], **info.get("params", {}))
            attack.setup(
                tuple(info.get("image_shape") or meta["input_shape"]),
                int(info.get("num_classes") or meta["num_classes"]),
            )
            attack_state = {k[len("attack.") :]: v for k, v in tensors.items() if k.startswith("attack.")}
            try:
                attack.load_state_dict(attack_state, strict=True)
            except RuntimeError as exc:
                raise BanError(
                    f"{path}: the attack's saved state does not fit '{info['name']}': {str(exc).splitlines()[0]}"
                ) from exc
        model.eval()
        return Checkpoint(model, meta, attack)
    # a plain state dict: the user names the architecture
    state = {
        k[len("model.") :] if k.startswith("model.") else k: v
        for k, v in tensors.items()
        if not k.startswith("attack.")
    }
    if arch is None:
        raise BanError(f"{path} carries no ban metadata; pass --arch (one of {', '.join(sorted(MODELS))})")
    arch = canonical_arch(arch)
    linear = [v for k, v in state.items() if v.ndim == 2]
    k_classes = num_classes if num_classes is not None else (int(linear[-1].shape[0]) if linear else 10)
    first_conv = next((v for v in state.values() if v.ndim == 4), None)
    in_ch = int(first_conv.shape[1]) if first_conv is not None else 3
    w = width if width is not None else _infer_width(arch, state, in_ch)
    has_norm = "normalize.mean" in state
    model = create_model(arch, k_classes, in_ch, w, mean if not has_norm else None, std if not has_norm else None)
    _load_state(model, state, str(path), allow_missing_normalize=True)
    size = input_size or 32
    meta = model_metadata(model, arch, k_classes, (in_ch, size, size), w, source=str(path.name))
    meta["normalization_assumed"] = not has_norm
    model.eval()
    return Checkpoint(model, meta, None)
