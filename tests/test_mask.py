"""The feature mask (ban.blocks.mask) on a real small model: range, shape, caching, no side effects."""

from __future__ import annotations

import pytest
import torch

from ban.blocks.mask import FeatureMask, MaskConfig, learn_feature_mask, mask_objective
from ban.errors import BanError
from ban.models import get_split


@pytest.fixture(scope="module")
def setup(zoo):  # type: ignore[no-untyped-def]
    ckpt = zoo.get("badnets")
    return ckpt.model, zoo.defender.x[:256], zoo.defender.y[:256]


def test_clamp_mask_lies_in_unit_box_and_lowers_the_objective(setup) -> None:  # type: ignore[no-untyped-def]
    model, x, y = setup
    params = {k: v.clone() for k, v in model.state_dict().items()}
    split = get_split(model)
    with torch.no_grad():
        f = split.features(x)
    init = FeatureMask(tuple(f.shape[1:]), "clamp", torch.Generator().manual_seed(0)).mask()
    result = learn_feature_mask(model, x, y, MaskConfig(epochs=3), torch.Generator().manual_seed(0), "cpu")
    m = result.value()
    assert m.shape == f.shape[1:]
    assert float(m.min()) >= 0.0 and float(m.max()) <= 1.0
    with torch.no_grad():
        before, _ = mask_objective(split.head, f, y, init, 0.75)
        after, _ = mask_objective(split.head, f, y, m, 0.75)
    assert float(after) < float(before)
    assert all(torch.equal(params[k], v) for k, v in model.state_dict().items())  # model untouched
    assert all(p.grad is None for p in model.parameters())


def test_cached_features_give_the_same_mask(setup) -> None:  # type: ignore[no-untyped-def]
    model, x, y = setup
    a = learn_feature_mask(
        model, x, y, MaskConfig(epochs=2, cache_features=True), torch.Generator().manual_seed(1), "cpu"
    )
    b = learn_feature_mask(
        model, x, y, MaskConfig(epochs=2, cache_features=False), torch.Generator().manual_seed(1), "cpu"
    )
    assert torch.allclose(a.value(), b.value(), atol=1e-5)


def test_tanh_parametrisation_without_l1(setup) -> None:  # type: ignore[no-untyped-def]
    model, x, y = setup
    cfg = MaskConfig(parametrization="tanh", lam=0.0, epochs=2)
    m = learn_feature_mask(model, x, y, cfg, torch.Generator().manual_seed(0), "cpu").value()
    assert float(m.min()) > 0.0 and float(m.max()) < 1.0
    with pytest.raises(BanError, match="parametrization"):
        FeatureMask((2, 2), "sigmoid")
