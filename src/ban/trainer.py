"""Train a `Recipe` into a checkpoint: build the model (and attack), train, attach metadata, save atomically.

The one path from a recipe to a `.safetensors` file, for `ban train`, `ban bench`, the test and
benchmark zoo, the demo and the attack benchmark. With `cache_dir` a model is trained once per
recipe and reused (file `<name>-<recipe key>.safetensors`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from ban.attacks import IMPLANT_ASR, create_attack, implant_warning
from ban.checkpoint import Checkpoint, load_model, model_metadata, save_model
from ban.data import ImageData, normalization_for
from ban.errors import BanError
from ban.models import create_model
from ban.recipe import Recipe, recipe_data
from ban.train import train_model


def cache_path(recipe: Recipe, cache_dir: str | Path, name: str) -> Path:
    """Where `recipe` is cached in `cache_dir` under `name`."""
    return Path(cache_dir) / f"{name}-{recipe.key}.safetensors"


def train_checkpoint(
    recipe: Recipe,
    path: str | Path | None = None,
    *,
    cache_dir: str | Path | None = None,
    name: str = "model",
    data: tuple[ImageData, ImageData] | None = None,
    data_dir: str | Path | None = None,
    device: str = "auto",
    quiet: bool = True,
    record_training: bool = True,
    meta: Mapping[str, Any] | None = None,
) -> Checkpoint:
    """Train `recipe` and return its checkpoint, written to `path` (or cached in `cache_dir`) when given.

    `data`: the (training, test) images when the caller holds them already (they must be the
    ones the recipe describes); otherwise they are loaded from `data_dir`. The metadata is
    `model_metadata`'s with BA, ASR (None for a clean model) and target; with `record_training`
    also the training report (`train`: settings, time, per-epoch loss, test metrics) and the
    split seed; `meta` adds further entries (e.g. a benchmark's ids). With `cache_dir` an existing
    file for the recipe is loaded instead of training; with `path` the file is always (over)written.
    The write is atomic (write, then rename). A returned checkpoint that was not written holds the
    trained model on the CPU and the metadata a saved one would carry.
    """
    if path is not None and cache_dir is not None:
        raise BanError("pass a checkpoint path or a cache folder, not both")
    if cache_dir is not None:
        path = cache_path(recipe, cache_dir, name)
        if path.exists():
            return load_model(path)
    train, test = data if data is not None else recipe_data(recipe, data_dir)[:2]
    attack = create_attack(recipe.attack, **recipe.attack_params) if recipe.attack else None
    mean, std = normalization_for(train)
    model = create_model(recipe.arch, train.num_classes, train.image_shape[0], recipe.width, mean, std, recipe.seed)
    report = train_model(model, train, recipe.train_config(device, quiet), attack, test)
    assert report.test is not None
    recorded = {"train": report.to_dict(), "split_seed": recipe.split_seed} if record_training else {}
    info = model_metadata(
        model,
        recipe.arch,
        train.num_classes,
        train.image_shape,
        recipe.width,
        dataset=train.name,
        seed=recipe.seed,
        ba=report.test.ba,
        asr=report.test.asr,
        target=attack.target if attack is not None else None,
        **recorded,
        **(meta or {}),
    )
    model.cpu()
    if attack is not None:
        attack.cpu()
    if path is None:
        if attack is not None:
            info["attack"] = attack.describe()
        return Checkpoint(model, info, attack, source="the trained model")
    save_model(path, model, info, attack)
    return load_model(path)


def asr_warning(
    ckpt: Checkpoint, where: Literal["train", "bench"] = "train", min_asr: float = IMPLANT_ASR
) -> str | None:
    """The warning for a backdoored checkpoint whose ASR ended below `min_asr`, what counts as implanted (else None)."""
    if ckpt.attack is None:
        return None
    return implant_warning(ckpt.attack, ckpt.meta.get("asr"), where, min_asr)
