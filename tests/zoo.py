"""Tiny real models shared by every test: trained once per recipe, cached on disk by recipe hash.

Add a recipe here (one line) when a test needs another model; tests get models through the
`zoo` fixture (`zoo.get("badnets")`). The cache lives in .cache/test-models (ignored by git);
a fresh clone trains each recipe once.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from ban.attacks import create_attack
from ban.checkpoint import Checkpoint, load_model, model_metadata, save_model
from ban.data import ImageData, balanced_sample, defender_split, load_dataset, normalization_for
from ban.models import create_model
from ban.train import TrainConfig, train_model

CACHE = Path(os.environ.get("BAN_TEST_CACHE", Path(__file__).resolve().parents[1] / ".cache" / "test-models"))
TRAIN_SIZE = 8000
TEST_SIZE = 2000

# name -> recipe. Shared recipe: small CNN, 8000 Fashion-MNIST images, 4 epochs, no augmentation.
BASE: dict[str, Any] = {"arch": "small_cnn", "width": 1.0, "epochs": 4, "lr": 0.05, "augment": False, "seed": 0}
RECIPES: dict[str, dict[str, Any]] = {
    "clean": {**BASE},
    "clean-seed1": {**BASE, "seed": 1},
    "badnets": {**BASE, "attack": "badnets", "attack_params": {"target": 3, "poison_rate": 0.1}},
    # per-batch attack (warp trigger, noise mode): 6 epochs reach ASR >= 0.9 with BA near the clean recipe's
    "wanet": {**BASE, "epochs": 6, "attack": "wanet", "attack_params": {"target": 0}},
}


class Zoo:
    """Loads or trains the recipes above on the attacker's part of Fashion-MNIST."""

    def __init__(self) -> None:
        train = load_dataset("fashion-mnist", "train")
        attacker, defender = defender_split(train, 0.1, seed=0)
        self.train: ImageData = balanced_sample(attacker, TRAIN_SIZE, seed=0)
        self.defender: ImageData = defender
        self.test: ImageData = balanced_sample(load_dataset("fashion-mnist", "test"), TEST_SIZE, seed=0)
        self._cache: dict[str, Checkpoint] = {}

    def path(self, name: str) -> Path:
        recipe = RECIPES[name]
        key = hashlib.sha256(json.dumps([recipe, TRAIN_SIZE, TEST_SIZE, 2], sort_keys=True).encode()).hexdigest()[:12]
        return CACHE / f"{name}-{key}.safetensors"

    def get(self, name: str) -> Checkpoint:
        if name in self._cache:
            return self._cache[name]
        path = self.path(name)
        if not path.exists():
            self._train(name, path)
        ckpt = load_model(path)
        self._cache[name] = ckpt
        return ckpt

    def _train(self, name: str, path: Path) -> None:
        r = RECIPES[name]
        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
        attack = create_attack(r["attack"], **r.get("attack_params", {})) if r.get("attack") else None
        mean, std = normalization_for(self.train)
        model = create_model(r["arch"], 10, 1, r["width"], mean, std, seed=r["seed"])
        cfg = TrainConfig(
            epochs=r["epochs"], lr=r["lr"], augment=r["augment"], seed=r["seed"], device="cpu", quiet=True
        )
        report = train_model(model, self.train, cfg, attack, self.test)
        assert report.test is not None
        meta = model_metadata(
            model,
            r["arch"],
            10,
            self.train.image_shape,
            r["width"],
            "fashion-mnist",
            r["seed"],
            ba=report.test.ba,
            asr=report.test.asr,
            target=attack.target if attack else None,
        )
        CACHE.mkdir(parents=True, exist_ok=True)
        save_model(path, model, meta, attack)
