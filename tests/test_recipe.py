"""Recipe keys: the cached test models keep their files; a changed field changes the key."""

from __future__ import annotations

from dataclasses import replace

from ban.attacks import resolve_params
from ban.recipe import Recipe
from ban.zoo import BASE, RECIPES


def test_the_reference_zoo_keeps_its_cache_keys() -> None:
    # the keys the test zoo's files have carried since before ban.recipe (.cache/test-models)
    assert RECIPES["clean"].key == "0f33797270d7"
    assert RECIPES["badnets"].key == "08b41aa8e81c"


def test_every_field_enters_the_key_and_defaults_are_implicit() -> None:
    assert replace(BASE, batch_size=64).key != BASE.key
    assert replace(BASE, subset_seed=1).key != BASE.key
    assert replace(BASE, attack="badnets").key != BASE.key
    assert replace(BASE, batch_size=128).key == BASE.key  # the default, written out
    assert Recipe(width=1, milestones=[2]).key == Recipe(width=1.0, milestones=(2,)).key
    assert "batch_size" not in BASE.describe() and BASE.describe()["arch"] == "small_cnn"


def test_a_preset_counts_by_its_values() -> None:
    """`{preset: cpu}` and the preset's values written out are one recipe; another value is another model
    (a cached model of a preset whose values changed since is not reused)."""
    named = replace(BASE, attack="bpp", attack_params={"target": 4, "preset": "cpu"})
    expanded = replace(named, attack_params=resolve_params("bpp", {"target": 4, "preset": "cpu"}))
    assert named.key == expanded.key
    older = dict(expanded.attack_params, squeeze_num=expanded.attack_params["squeeze_num"] + 1)
    assert replace(named, attack_params=older).key != named.key
    plain = replace(BASE, attack="badnets", attack_params={"target": 3, "poison_rate": 0.1})
    assert plain.key == RECIPES["badnets"].key  # no preset: the parameters as given, as before
