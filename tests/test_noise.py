"""Adversarial neuron noise (ban.blocks.noise): exactness of the hooks, clean switch-off, PGD."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ban.blocks.noise import NeuronNoise, PGDConfig, adversarial_neuron_noise
from ban.errors import BanError


def _bn_net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.GroupNorm(2, 6),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6 * 8 * 8, 12),
        nn.LayerNorm(12),
        nn.Linear(12, 3),
    )
    for m in net.modules():  # non-trivial affine parameters and running statistics
        if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.5, 0.5)
    net[1].running_mean.uniform_(-0.2, 0.2)
    net[1].running_var.uniform_(0.5, 2.0)
    return net.eval()


def _plain_net() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5), nn.ReLU(), nn.Linear(5, 3)
    ).eval()


def test_noise_equals_perturbed_affine_parameters_and_switches_off_exactly() -> None:
    net, x = _bn_net(), torch.rand(5, 1, 8, 8)
    before = net(x).detach()
    noise = NeuronNoise(net, eps=0.3)
    assert noise.kind == "norm" and len(noise.layers) == 3
    noise.reset(random=True, generator=torch.Generator().manual_seed(0))
    ref = copy.deepcopy(net)  # the same noise written into the parameters: γ(1+δ), β(1+ξ)
    with torch.no_grad():
        ref_norms = [m for m in ref.modules() if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm))]
        for m, d, xi in zip(ref_norms, noise.delta, noise.xi, strict=True):
            m.weight.mul_(1 + d)
            m.bias.mul_(1 + xi)
    with noise.applied():
        noisy = net(x).detach()
    assert torch.allclose(noisy, ref(x), atol=1e-5)
    assert not torch.allclose(noisy, before, atol=1e-3)
    assert torch.equal(net(x), before)  # hooks gone: bit-identical
    assert not noise.attached


def test_mask_coefficient_scales_gamma_and_noise_can_be_off() -> None:
    net, x = _bn_net(), torch.rand(4, 1, 8, 8)
    noise = NeuronNoise(net, eps=0.4, use_mask=True)
    noise.reset(random=True, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        for m in noise.mask_tensors():
            m.fill_(0.5)
    ref = copy.deepcopy(net)
    with torch.no_grad():
        for m in [m for m in ref.modules() if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm))]:
            m.weight.mul_(0.5)
    noise.noise_on = False  # ANP's natural pass: mask only
    with noise.applied():
        assert torch.allclose(net(x), ref(x), atol=1e-5)


def test_weight_noise_for_networks_without_normalisation() -> None:
    net, x = _plain_net(), torch.rand(3, 1, 8, 8)
    noise = NeuronNoise(net, eps=0.2)
    assert noise.kind == "weights" and len(noise.layers) == 2  # the classifier is left alone
    noise.reset(random=True, generator=torch.Generator().manual_seed(0))
    ref = copy.deepcopy(net)
    with torch.no_grad():
        for m, d in zip([ref[0], ref[3]], noise.delta, strict=True):
            m.weight.mul_((1 + d).view(-1, *([1] * (m.weight.dim() - 1))))
    with noise.applied():
        assert torch.allclose(net(x), ref(x), atol=1e-5)


def test_nothing_to_perturb_is_a_clear_error() -> None:
    with pytest.raises(BanError, match="no neurons to perturb"):
        NeuronNoise(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))
    with pytest.raises(BanError, match="eps"):
        NeuronNoise(_bn_net(), eps=-1)


@pytest.mark.parametrize("project", [True, False])
def test_pgd_raises_the_loss_and_respects_the_ball(project: bool) -> None:
    net, x = _bn_net(), torch.rand(16, 1, 8, 8)
    y = net(x).argmax(1).detach()  # the net's own labels: low clean loss to push up
    clean_loss = F.cross_entropy(net(x), y).item()
    noise = NeuronNoise(net, eps=0.3)
    adversarial_neuron_noise(net, noise, x, y, PGDConfig(steps=10, project=project), torch.Generator().manual_seed(0))
    with noise.applied():
        noisy_loss = F.cross_entropy(net(x), y).item()
    assert noisy_loss > clean_loss
    assert noise.magnitude() <= (0.3 if project else 0.6) + 1e-6
    if not project:
        assert noise.magnitude() > 0.3  # 10 unprojected steps of 0.03 leave the ball somewhere
    assert all(p.grad is None for p in net.parameters())  # no gradient reaches the weights


def test_recalibrated_statistics_are_the_noisy_networks_own() -> None:
    """After recalibration the eval-mode BatchNorm statistics are the exact average of the batch statistics
    of the network as it is (noise on), the mode and momentum are restored, and a clean network's
    statistics differ from the noisy one's."""
    from ban.blocks.noise import recalibrate_running_stats

    torch.manual_seed(3)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)
    ).eval()
    x = torch.randn(48, 1, 8, 8)
    noise = NeuronNoise(net, eps=0.3)
    noise.reset(random=True, generator=torch.Generator().manual_seed(0))
    seen: list[torch.Tensor] = []
    handle = net[4].register_forward_hook(lambda m, inp, out: seen.append(inp[0].detach()))
    with noise.applied():
        assert recalibrate_running_stats(net, x, batch_size=16) == 2
    handle.remove()
    assert not net.training and net[1].momentum == 0.1 and net[4].momentum == 0.1
    assert len(seen) == 3  # three batches of 16
    batch_means = torch.stack([s.mean(dim=(0, 2, 3)) for s in seen])
    assert torch.allclose(net[4].running_mean, batch_means.mean(0), atol=1e-6)
    noisy_mean = net[4].running_mean.clone()
    recalibrate_running_stats(net, x, batch_size=16)  # the same images without noise
    assert not torch.allclose(net[4].running_mean, noisy_mean, atol=1e-3)
    assert recalibrate_running_stats(nn.Sequential(nn.Linear(3, 2)), torch.randn(4, 3)) == 0


@pytest.mark.parametrize("net_fn", [_bn_net, _plain_net])
def test_noise_groups_equal_one_noise_per_group_and_depth_keeps_the_first_layers(net_fn) -> None:
    net, x = net_fn(), torch.rand(6, 1, 8, 8)
    grouped = NeuronNoise(net, eps=0.3, groups=3, depth=2)
    single = NeuronNoise(net, eps=0.3, depth=2)
    assert grouped.layers == single.layers == NeuronNoise(net).layers[:2]
    assert NeuronNoise(net, depth=-1).layers == NeuronNoise(net).layers[-1:]  # the output side
    assert all(d.shape[0] == 3 for d in grouped.delta)
    grouped.reset(random=True, generator=torch.Generator().manual_seed(0))
    with grouped.applied():
        together = net(x).detach()
    parts = []
    for g in range(3):  # group g's noise on its own two images gives the same outputs
        with torch.no_grad():
            for mine, theirs in zip(single.noise_tensors(), grouped.noise_tensors(), strict=True):
                mine.copy_(theirs[g])
        with single.applied():
            parts.append(net(x[2 * g : 2 * g + 2]).detach())
    assert torch.allclose(together, torch.cat(parts), atol=1e-5)
    assert not torch.allclose(parts[0], parts[1], atol=1e-3)  # the groups' noises differ
    with pytest.raises(BanError, match="noise groups"), grouped.applied():
        net(x[:5])  # 5 images do not split into 3 groups
    for bad in ({"groups": 0}, {"depth": 0}):
        with pytest.raises(BanError, match="groups must be >= 1 and depth nonzero"):
            NeuronNoise(net, **bad)
