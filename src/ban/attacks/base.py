"""The one interface every attack implements, and the pieces static poisoning shares.

Three kinds of poisoning sit behind it:
- static dataset poisoning (`poison_dataset`): BadNets, Blend, Adap-Blend;
- per-batch poisoning inside the training loop (`poison_batch`): WaNet, Bpp;
- attacks that train their own trigger networks with the classifier (`training_loss`, `step`):
  IAD, SSDT.

An attack is an `nn.Module`: its state (trigger image, warp grid, generator weights) lives in
buffers and submodules, so it is saved inside the model's checkpoint and `evaluate()` can
re-measure ASR from the checkpoint alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ban.data.dataset import ImageData
from ban.errors import BanError

TARGET_MODES = ("all2one", "all2all", "source-specific")


@dataclass
class PoisonedData:
    """A training set after static poisoning, with the bookkeeping of what was changed.

    poison_index: indices whose image got the trigger and whose label became the target.
    cover_index: indices whose image got the trigger but kept its true label (Adap-Blend).
    """

    data: ImageData
    poison_index: Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))
    cover_index: Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))


class Attack(nn.Module):
    """A backdoor attack: how it poisons training, and how it triggers test images.

    Subclasses set `name`, implement `apply_trigger`, and override the hooks their kind needs.
    Constructor arguments must be JSON-serialisable and are returned by `params()`.
    """

    name: ClassVar[str] = "attack"
    #: bump when a change of this attack's training code alters the models it makes: cached models
    #: (recipe and bench keys carry the version when it is not 1) are then trained again
    training_version: ClassVar[int] = 1
    #: default fraction of training data (or of each batch) that is poisoned
    default_poison_rate: ClassVar[float] = 0.1
    #: named sets of constructor arguments (`create_attack(name, preset="cpu")`, `-p preset=cpu`);
    #: explicit arguments override a preset's values. The defaults stay the paper's.
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(
        self,
        target: int = 0,
        mode: str = "all2one",
        poison_rate: float | None = None,
        victim: int | None = None,
    ) -> None:
        super().__init__()
        if mode not in TARGET_MODES:
            raise BanError(f"unknown target mode '{mode}'; choose one of {', '.join(TARGET_MODES)}")
        rate = self.default_poison_rate if poison_rate is None else float(poison_rate)
        if not 0.0 < rate < 1.0:
            raise BanError(f"poison rate must lie in (0, 1), got {rate}")
        if mode == "source-specific":
            if victim is None:
                raise BanError("source-specific attacks need a victim class (--victim)")
            if victim == target:
                raise BanError(f"victim class {victim} equals the target; choose a different victim or target")
        self.target = int(target)
        self.mode = mode
        self.poison_rate = rate
        self.victim = None if victim is None else int(victim)
        self.num_classes: int | None = None
        self.image_shape: tuple[int, int, int] | None = None
        self.preset: str | None = None  # set by `create_attack` when the parameters came from a preset

    # ------------------------------------------------------------------ description
    def params(self) -> dict[str, Any]:
        """Constructor arguments (JSON-serialisable); `create_attack(name, **params())` rebuilds the attack."""
        return {"target": self.target, "mode": self.mode, "poison_rate": self.poison_rate, "victim": self.victim}

    def describe(self) -> dict[str, Any]:
        """Name, parameters (a preset's already expanded), the preset's name, image shape and classes."""
        return {
            "name": self.name,
            "params": self.params(),
            "preset": self.preset,
            "image_shape": self.image_shape,
            "num_classes": self.num_classes,
        }

    # ------------------------------------------------------------------ setup
    def setup(
        self, image_shape: tuple[int, int, int], num_classes: int, generator: torch.Generator | None = None
    ) -> None:
        """Build the trigger state for images of `image_shape` (C, H, W). Called before training and on load."""
        if not 0 <= self.target < num_classes:
            raise BanError(f"target class {self.target} is outside the class range 0..{num_classes - 1}")
        if self.victim is not None and not 0 <= self.victim < num_classes:
            raise BanError(f"victim class {self.victim} is outside the class range 0..{num_classes - 1}")
        self.num_classes = int(num_classes)
        self.image_shape = tuple(int(v) for v in image_shape)  # type: ignore[assignment]
        self.build(self.image_shape, generator)  # type: ignore[arg-type]

    def build(self, image_shape: tuple[int, int, int], generator: torch.Generator | None) -> None:
        """Create buffers/submodules for this image shape. Default: no state."""

    # ------------------------------------------------------------------ test time
    def apply_trigger(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Triggered copies of `x` (N, C, H, W) in [0, 1]."""
        raise NotImplementedError

    def target_labels(self, y: Tensor) -> Tensor:
        """The labels the attacker wants for triggered images of true class `y`."""
        if self.mode == "all2all":
            assert self.num_classes is not None
            return (y + 1) % self.num_classes
        return torch.full_like(y, self.target)

    def asr_mask(self, y: Tensor) -> Tensor:
        """Which test images count for ASR: non-target images (all2one), all (all2all), victims (source-specific)."""
        if self.mode == "all2all":
            return torch.ones_like(y, dtype=torch.bool)
        if self.mode == "source-specific":
            return y == self.victim
        return y != self.target

    def poisonable(self, y: Tensor) -> Tensor:
        """Which training images may be poisoned (the same rule as ASR's test set)."""
        return self.asr_mask(y)

    # ------------------------------------------------------------------ training hooks
    def poison_dataset(self, data: ImageData, generator: torch.Generator) -> PoisonedData:
        """Static poisoning of the whole training set. Default: nothing to do."""
        return PoisonedData(data)

    def prepare_training(self, model: nn.Module, data: ImageData, epochs: int, generator: torch.Generator) -> None:
        """Work before the first epoch (IAD's mask pre-training and trigger optimiser). Default: nothing."""

    def poison_batch(self, x: Tensor, y: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Per-batch poisoning of a clean batch (before augmentation). Default: the batch unchanged."""
        return x, y

    def training_loss(self, model: nn.Module, x: Tensor, y: Tensor, augment: Any, generator: torch.Generator) -> Tensor:
        """The classifier's loss on one batch: poison, augment, cross-entropy."""
        xb, yb = self.poison_batch(x, y, generator)
        return F.cross_entropy(model(augment(xb, generator)), yb)

    def step(self) -> None:
        """Step the attack's own optimiser after the classifier's (joint training). Default: nothing."""

    def end_epoch(self, epoch: int) -> None:
        """Per-epoch hook (the attack's own LR schedules). Default: nothing."""


def choose_poison_index(candidates: Tensor, rate: float, generator: torch.Generator) -> Tensor:
    """`int(rate * len(candidates))` of the candidate indices, drawn with `generator`, sorted."""
    n = int(rate * len(candidates))
    if n == 0:
        raise BanError(f"poison rate {rate} selects no image out of {len(candidates)}; raise the rate or use more data")
    pick = torch.randperm(len(candidates), generator=generator)[:n]
    return candidates[pick].sort().values


class StaticPoisonAttack(Attack):
    """Attacks that poison a fixed subset of the training set once (BadNets, Blend, Adap-Blend)."""

    def poison_images(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Triggered training images (may differ from the test trigger, e.g. Adap-Blend's partial one)."""
        return self.apply_trigger(x, generator)

    def choose_cover_index(self, data: ImageData, poison_index: Tensor, generator: torch.Generator) -> Tensor:
        """Indices that get the trigger but keep their label (Adap-Blend's cover samples). Default: none."""
        return torch.empty(0, dtype=torch.long)

    def poison_dataset(self, data: ImageData, generator: torch.Generator) -> PoisonedData:
        candidates = torch.nonzero(self.poisonable(data.y)).flatten()
        index = choose_poison_index(candidates, self.poison_rate, generator)
        cover = self.choose_cover_index(data, index, generator)
        x = data.x.clone()
        y = data.y.clone()
        x[index] = self.poison_images(x[index], generator).clamp(0, 1)
        y[index] = self.target_labels(y[index])
        if len(cover):
            x[cover] = self.poison_images(x[cover], generator).clamp(0, 1)
        out = ImageData(x, y, data.num_classes, data.name, data.flip, list(data.class_names))
        return PoisonedData(out, poison_index=index, cover_index=cover)


def partner_index(n: int, device: torch.device | str = "cpu") -> Tensor:
    """For each position of a batch of `n`, the position of another image: (i + n//2) mod n."""
    return (torch.arange(n, device=device) + n // 2) % n


class PerBatchAttack(Attack):
    """Attacks that poison part of every training batch (WaNet, Bpp; IAD and SSDT build on it).

    Each batch: `int(n·poison_rate)` images that `poisonable` allows get the trigger and the
    attacker's label; the next `num_extra` other images get the attack's label-keeping variant
    (WaNet's noise mode, Bpp's negative samples); the rest stay clean. Batches come shuffled,
    so "the first ones" are a random choice.
    """

    def num_extra(self, n: int, n_bd: int) -> int:
        """How many label-keeping samples a batch of `n` with `n_bd` backdoor samples gets."""
        return 0

    def extra_images(self, x: Tensor, partner: Tensor, generator: torch.Generator) -> Tensor:
        """The label-keeping variant of `x`; `partner` holds another image for each (Bpp's residual donor)."""
        return x

    def batch_roles(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """(backdoor positions, label-keeping positions) within a batch with labels `y`."""
        n = len(y)
        candidates = torch.nonzero(self.poisonable(y)).flatten()
        bd = candidates[: int(n * self.poison_rate)]
        rest = torch.ones(n, dtype=torch.bool, device=y.device)
        rest[bd] = False
        extra = torch.nonzero(rest).flatten()[: self.num_extra(n, len(bd))]
        return bd, extra

    def poison_batch(self, x: Tensor, y: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        bd, extra = self.batch_roles(y)
        xp, yp = x.clone(), y.clone()
        if len(extra):
            partner = x[partner_index(len(x), x.device)[extra]]
            xp[extra] = self.extra_images(x[extra], partner, generator).clamp(0, 1)
        if len(bd):
            xp[bd] = self.apply_trigger(x[bd], generator).clamp(0, 1)
            yp[bd] = self.target_labels(y[bd])
        return xp, yp
