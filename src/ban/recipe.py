"""A checkpoint's recipe: architecture, data, training schedule, attack and seed, with a content key.

A `Recipe` says everything that decides a trained model (the device and progress bars do not
belong to it). `Recipe.key` hashes it: the core fields (architecture, width, epochs, lr,
augmentation, seed, attack and its parameters, train/test subset sizes) always, every other
field only when it differs from its default, so a field added later with a default keeps every
existing key (and every model cached under it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ban.attacks import resolve_params, version_fields
from ban.data import ImageData, balanced_sample, defender_split, load_dataset
from ban.train import TrainConfig

CORE = ("arch", "width", "epochs", "lr", "augment", "seed")
KEY_VERSION = 2  # bump to retrain every cached model (a change of the training code that alters results)


@dataclass(frozen=True)
class Recipe:
    """How one checkpoint is made: model, data (attacker's part of a 90/10 split), schedule, attack, seed.

    `subset`/`test_subset`: class-balanced subsets of the attacker's part and of the test set
    (None: all of it), drawn with `subset_seed`/`test_subset_seed`. Training fields are
    `ban.train.TrainConfig`'s; `attack_params` go to `create_attack` with `attack`.
    """

    arch: str = "resnet18"
    width: float = 1.0
    dataset: str = "fashion-mnist"
    split_seed: int = 0
    defender_fraction: float = 0.1
    subset: int | None = None
    subset_seed: int = 0
    test_subset: int | None = None
    test_subset_seed: int = 0
    epochs: int = 5
    lr: float = 0.01
    batch_size: int = 128
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    augment: bool = True
    crop_pad: int = 4
    attack: str | None = None
    attack_params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "width", float(self.width))
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))
        object.__setattr__(self, "attack_params", dict(self.attack_params))

    def train_config(self, device: str = "auto", quiet: bool = True) -> TrainConfig:
        """The training loop's configuration for this recipe."""
        return TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            schedule=self.schedule,
            milestones=self.milestones,
            gamma=self.gamma,
            augment=self.augment,
            crop_pad=self.crop_pad,
            seed=self.seed,
            device=device,
            quiet=quiet,
        )

    def describe(self) -> dict[str, Any]:
        """What `key` hashes: the core fields, the attack when there is one, every other field off its default."""
        out: dict[str, Any] = {name: getattr(self, name) for name in CORE}
        if self.attack is not None:
            out["attack"] = self.attack
            # a preset counts by its values (a preset whose values change does not reuse old models);
            # params already expanded (as a bench spec's) resolve to themselves, so their keys stay
            out["attack_params"] = resolve_params(self.attack, dict(self.attack_params))
            out |= version_fields(self.attack)  # a model of older training code is not reused
        skip = {*CORE, "attack", "attack_params", "subset", "test_subset"}
        for f in fields(self):
            if f.name in skip:
                continue
            default = f.default_factory() if callable(f.default_factory) else f.default
            if getattr(self, f.name) != default:
                out[f.name] = getattr(self, f.name)
        return out

    @property
    def key(self) -> str:
        """12 hex digits of the recipe's hash (same recipe, same key; see the module's docstring)."""
        text = json.dumps([self.describe(), self.subset, self.test_subset, KEY_VERSION], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _sample(data: ImageData, n: int | None, seed: int) -> ImageData:
    return data if n is None or n >= len(data) else balanced_sample(data, n, seed=seed)


def recipe_data(recipe: Recipe, data_dir: str | Path | None = None) -> tuple[ImageData, ImageData, ImageData]:
    """(training images, test images, defender's held-out pool) as the recipe describes them."""
    attacker, defender = defender_split(
        load_dataset(recipe.dataset, "train", data_dir), recipe.defender_fraction, recipe.split_seed
    )
    train = _sample(attacker, recipe.subset, recipe.subset_seed)
    test = _sample(load_dataset(recipe.dataset, "test", data_dir), recipe.test_subset, recipe.test_subset_seed)
    return train, test, defender
