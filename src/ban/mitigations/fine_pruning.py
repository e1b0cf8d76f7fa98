"""Fine-Pruning (Liu, Dolan-Gavitt, Garg, RAID 2018): prune dormant feature channels, then fine-tune.

1. Run the defender's clean images through ``features`` (the output of the last convolutional
   stage, N×C×H×W; for a model split at its last ``nn.Linear``, the N×D input of that layer) and
   take each channel's mean activation.
2. Prune channels in increasing order of mean activation — backdoor neurons tend to be dormant on
   clean inputs — as long as the clean accuracy stays within ``max_accuracy_drop`` of the unpruned
   model's (the paper stops at a 4% drop), or prune a fixed ``prune_ratio`` of the channels.
3. Fine-tune the pruned network on the clean images (the fine-tuning template with BackdoorBench's
   FT recipe), keeping the pruned channels pruned (the after-step hook).

Pruned channels are zeroed weights, so the state dict keeps its shapes and the repaired checkpoint
loads with the same architecture: the first parametrised layer of the head that reads the features
(the final ``nn.Linear``: column k; a normalisation layer such as DenseNet's last BatchNorm: its
weight and bias at k) gets zeros for every pruned channel k, and is re-zeroed after each
fine-tuning step. The clean accuracy that stops the pruning is measured on the defender's clean
images (never on test data).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from ban.errors import BanError
from ban.mitigations.base import FineTuneHooks, FineTuneMitigation, FineTuneRun, FineTuneSettings
from ban.mitigations.settings import MitigationSettings
from ban.models import get_split
from ban.utils import batches, eval_mode

_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


@torch.no_grad()
def clean_features(model: nn.Module, x: Tensor, device: torch.device, batch_size: int = 256) -> Tensor:
    """`features(x)` of the clean images in eval mode (N×C×H×W or N×D), on `device`."""
    split = get_split(model)
    with eval_mode(model):
        return torch.cat([split.features(x[sl].to(device)) for sl in batches(len(x), batch_size)])


def mean_channel_activation(f: Tensor) -> Tensor:
    """Mean activation per channel (dim 1) over images and positions: shape (C,)."""
    dims = [d for d in range(f.ndim) if d != 1]
    return f.mean(dim=dims)


def head_consumer(model: nn.Module, f: Tensor) -> nn.Module:
    """The first layer with parameters that the head runs on features `f` (where channels are pruned)."""
    split = get_split(model)
    called: list[nn.Module] = []
    hooks = [
        m.register_forward_pre_hook(lambda mod, _inp: called.append(mod))
        for m in model.modules()
        if any(True for _ in m.parameters(recurse=False))
    ]
    try:
        with torch.no_grad(), eval_mode(model):
            split.head(f[:1])
    finally:
        for h in hooks:
            h.remove()
    if not called:
        raise BanError(f"the head of {type(model).__name__} has no layer with weights; Fine-Pruning cannot prune it")
    return called[0]


class ChannelPruning:
    """Zeroes feature channels in the head's input layer and keeps them zero (`apply()` after each step)."""

    def __init__(self, layer: nn.Module, channels: int) -> None:
        if isinstance(layer, nn.Linear):
            ok = layer.in_features == channels
        elif isinstance(layer, nn.Conv2d):
            ok = layer.in_channels == channels and layer.groups == 1
        elif isinstance(layer, _NORMS):
            ok = getattr(layer, "weight", None) is not None and layer.weight.shape[0] == channels
        else:
            ok = False
        if not ok:
            raise BanError(
                f"Fine-Pruning found {type(layer).__name__} as the first layer of the head, which does not read the "
                f"{channels} feature channels one to one; use another method (ft, nad, ftsam)"
            )
        self.layer = layer
        self.channels = channels
        self.pruned = torch.zeros(channels, dtype=torch.bool)

    def set(self, index: Tensor) -> None:
        """Prune exactly the channels in `index` (earlier settings are replaced; weights already zeroed stay zero)."""
        self.pruned = torch.zeros(self.channels, dtype=torch.bool)
        self.pruned[index.cpu()] = True
        self.apply()

    @torch.no_grad()
    def apply(self) -> None:
        k = self.pruned.to(self.layer.weight.device)
        if not k.any():
            return
        if isinstance(self.layer, (nn.Linear, nn.Conv2d)):
            self.layer.weight[:, k] = 0
        else:
            self.layer.weight[k] = 0
            if self.layer.bias is not None:
                self.layer.bias[k] = 0


@torch.no_grad()
def accuracy_from_features(model: nn.Module, f: Tensor, y: Tensor, batch_size: int = 512) -> float:
    """Accuracy of `head(f)` against labels `y` in eval mode."""
    split = get_split(model)
    with eval_mode(model):
        pred = torch.cat([split.head(f[sl]).argmax(1).cpu() for sl in batches(len(f), batch_size)])
    return float((pred == y).float().mean())


@dataclass(frozen=True, kw_only=True)
class FinePruningSettings(FineTuneSettings):
    """FT's recipe after pruning: stop at a 4% clean-accuracy drop, or prune a fixed `prune_ratio`."""

    max_accuracy_drop: float = 0.04
    prune_ratio: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.prune_ratio is not None and not 0.0 <= self.prune_ratio < 1.0:
            raise BanError(f"pruning ratio must lie in [0, 1), got {self.prune_ratio}")
        if not 0.0 <= self.max_accuracy_drop <= 1.0:
            raise BanError(
                f"max_accuracy_drop must lie in [0, 1] (a fraction of accuracy), got {self.max_accuracy_drop}"
            )


class FinePruning(FineTuneMitigation):
    """Prune the least active feature channels (clean accuracy drop ≤ `max_accuracy_drop`), then fine-tune."""

    name: ClassVar[str] = "fp"
    label: ClassVar[str] = "Fine-Pruning"
    Settings: ClassVar[type[MitigationSettings]] = FinePruningSettings
    params: FinePruningSettings

    def choose_count(
        self, model: nn.Module, pruning: ChannelPruning, order: Tensor, f: Tensor, y: Tensor
    ) -> tuple[int, list[float]]:
        """How many channels (in `order`) to prune, and the clean accuracy after pruning 0..n of them."""
        c = len(order)
        if self.params.prune_ratio is not None:
            n = int(self.params.prune_ratio * c)
            pruning.set(order[:n])
            return n, [accuracy_from_features(model, f, y)]
        saved = (
            pruning.layer.weight.detach().clone(),
            (pruning.layer.bias.detach().clone() if getattr(pruning.layer, "bias", None) is not None else None),
        )
        curve = [accuracy_from_features(model, f, y)]
        floor = curve[0] - self.params.max_accuracy_drop
        n = 0
        for k in range(1, c):  # never prune every channel
            pruning.set(order[:k])
            acc = accuracy_from_features(model, f, y)
            curve.append(acc)
            if acc < floor:
                break
            n = k
        with torch.no_grad():
            pruning.layer.weight.copy_(saved[0])
            if saved[1] is not None:
                pruning.layer.bias.copy_(saved[1])
        pruning.set(order[:n])
        return n, curve

    def hooks(self, run: FineTuneRun) -> FineTuneHooks:
        """Prune before fine-tuning; the pruned channels are zeroed again after every step."""
        f = clean_features(run.model, run.data.x, run.device)
        order = torch.argsort(mean_channel_activation(f).cpu())
        pruning = ChannelPruning(head_consumer(run.model, f), int(f.shape[1]))
        n, curve = self.choose_count(run.model, pruning, order, f, run.data.y)
        run.details.update(
            pruned_channels=order[:n].tolist(),
            num_pruned=n,
            num_channels=len(order),
            pruned_layer=type(pruning.layer).__name__,
            clean_accuracy_curve=curve,
        )
        return FineTuneHooks(after_step=pruning.apply)
