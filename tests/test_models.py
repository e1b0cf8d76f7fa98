"""Every architecture: forward shapes at 28 and 32 px, the features | head split, unknown modules."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ban.errors import BanError
from ban.models import create_model, get_split, list_models


@pytest.mark.parametrize("arch", list_models())
@pytest.mark.parametrize("size,channels", [(28, 1), (32, 3)])
def test_forward_and_split(arch: str, size: int, channels: int) -> None:
    torch.manual_seed(0)
    model = create_model(
        arch, num_classes=7, in_channels=channels, width=0.25, mean=[0.5] * channels, std=[0.25] * channels
    )
    model.eval()
    x = torch.rand(3, channels, size, size)
    out = model(x)
    assert out.shape == (3, 7)
    f = model.features(x)
    assert f.ndim == 4 and f.shape[0] == 3  # the split is a convolutional feature map
    assert torch.allclose(model.head(f), out, atol=1e-6)
    split = get_split(model)
    assert torch.allclose(split.head(split.features(x)), out, atol=1e-6)


def test_normalisation_is_the_first_layer_and_is_saved() -> None:
    model = create_model("small_cnn", 10, 1, 0.5, mean=[0.3], std=[0.2])
    state = model.state_dict()
    assert torch.allclose(state["normalize.mean"].flatten(), torch.tensor([0.3]))
    assert torch.allclose(state["normalize.std"].flatten(), torch.tensor([0.2]))
    x = torch.rand(2, 1, 28, 28)
    assert torch.allclose(model.normalize(x), (x - 0.3) / 0.2)


def test_width_scales_channels() -> None:
    small = create_model("resnet18", 10, 3, 0.25)
    full = create_model("resnet18", 10, 3, 1.0)
    assert small.linear.in_features == 128 and full.linear.in_features == 512


def test_unknown_module_is_split_at_its_last_linear() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5)).eval()
    split = get_split(net)
    x = torch.rand(2, 1, 28, 28)
    f = split.features(x)
    assert f.shape == (2, 4)
    assert torch.allclose(split.head(f), net(x))


def test_unknown_architecture_and_unsplittable_module() -> None:
    with pytest.raises(BanError, match="unknown architecture 'resnet1000'"):
        create_model("resnet1000")
    with pytest.raises(BanError, match="no nn.Linear"):
        get_split(nn.Sequential(nn.Conv2d(1, 2, 3)))
