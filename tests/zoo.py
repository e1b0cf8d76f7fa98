"""Tiny real models shared by every test: the library's reference zoo (`ban.zoo`), cached on disk by recipe key.

Tests get models through the `zoo` fixture (`zoo.get("badnets")`). A recipe only the tests need
goes in RECIPES below (one line, a `dataclasses.replace` of BASE); shared ones are in `ban.zoo`.
The cache lives in .cache/test-models (ignored by git; $BAN_TEST_CACHE overrides it); a fresh
clone trains each recipe once.
"""

from __future__ import annotations

from pathlib import Path

from ban import zoo as reference
from ban.recipe import Recipe
from ban.zoo import BASE, TEST_SIZE, TRAIN_SIZE

CACHE = reference.cache_folder(Path(__file__).resolve().parents[1])
RECIPES: dict[str, Recipe] = {**reference.RECIPES}

__all__ = ["BASE", "CACHE", "RECIPES", "TEST_SIZE", "TRAIN_SIZE", "Zoo"]


class Zoo(reference.Zoo):
    """The reference zoo over the tests' cache folder and recipes."""

    def __init__(self) -> None:
        super().__init__(CACHE, RECIPES)
