"""The small reference zoo: tiny Fashion-MNIST models shared by the tests, the demo and the benchmarks.

Every recipe is a small CNN trained for a few CPU minutes on a class-balanced 8000-image subset
of the attacker's 90% of Fashion-MNIST (2000 balanced test images, lr 0.05, no augmentation).
`Zoo(cache_dir)` trains each recipe once and caches it by recipe key (`ban.trainer.cache_path`);
`cache_folder(root)` is the folder the tests and benchmarks share.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import torch

from ban.checkpoint import Checkpoint
from ban.data import ImageData
from ban.recipe import Recipe, recipe_data
from ban.trainer import cache_path, train_checkpoint

TRAIN_SIZE = 8000
TEST_SIZE = 2000
BASE = Recipe(arch="small_cnn", epochs=4, lr=0.05, augment=False, subset=TRAIN_SIZE, test_subset=TEST_SIZE)
RECIPES: dict[str, Recipe] = {
    "clean": BASE,
    "clean-seed1": dataclasses.replace(BASE, seed=1),
    "badnets": dataclasses.replace(BASE, attack="badnets", attack_params={"target": 3, "poison_rate": 0.1}),
    # per-batch attack (warp trigger, noise mode): 6 epochs reach ASR >= 0.9 with BA near the clean recipe's
    "wanet": dataclasses.replace(BASE, epochs=6, attack="wanet", attack_params={"target": 0}),
}


def cache_folder(root: str | Path) -> Path:
    """$BAN_TEST_CACHE, else `root`/.cache/test-models: where the tests and benchmarks keep the zoo."""
    return Path(os.environ.get("BAN_TEST_CACHE", Path(root) / ".cache" / "test-models"))


class Zoo:
    """Loads (or trains, once) named recipes; holds the shared training, test and defender images.

    `recipes` defaults to RECIPES; `add` registers another recipe for this zoo only.
    """

    def __init__(self, cache_dir: str | Path, recipes: dict[str, Recipe] | None = None) -> None:
        self.cache_dir = Path(cache_dir)
        self.recipes: dict[str, Recipe] = dict(RECIPES if recipes is None else recipes)
        self.train: ImageData
        self.test: ImageData
        self.defender: ImageData
        self.train, self.test, self.defender = recipe_data(BASE)
        self._loaded: dict[str, Checkpoint] = {}

    def add(self, name: str, recipe: Recipe) -> None:
        """Register `recipe` under `name` (a name already registered keeps its recipe)."""
        self.recipes.setdefault(name, recipe)

    def path(self, name: str) -> Path:
        return cache_path(self.recipes[name], self.cache_dir, name)

    def get(self, name: str) -> Checkpoint:
        """The checkpoint of recipe `name`, trained on the CPU (at most 2 threads) when not cached yet.

        Training always takes min(2, cores) threads, so a recipe gives the same model whatever the caller set;
        the caller's thread count is restored afterwards (a benchmark timing one thread stays at one).
        """
        if name not in self._loaded:
            recipe = self.recipes[name]
            data = (self.train, self.test) if _same_data(recipe, BASE) else None
            with _training_threads(train=not self.path(name).exists()):
                self._loaded[name] = train_checkpoint(
                    recipe, cache_dir=self.cache_dir, name=name, data=data, device="cpu", record_training=False
                )
        return self._loaded[name]


@contextlib.contextmanager
def _training_threads(train: bool) -> Iterator[None]:
    """Train with min(2, cores) threads, whatever the caller set; restore the caller's count afterwards."""
    before = torch.get_num_threads()
    if train:
        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _same_data(a: Recipe, b: Recipe) -> bool:
    keys = ("dataset", "split_seed", "defender_fraction", "subset", "subset_seed", "test_subset", "test_subset_seed")
    return all(getattr(a, k) == getattr(b, k) for k in keys)
