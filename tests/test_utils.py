"""Explicit randomness: library code that reads torch's global RNG draws from a generator instead."""

from __future__ import annotations

import torch

from ban.blocks.unet import UNet
from ban.utils import global_rng_from, make_generator


def test_global_rng_from_draws_from_the_generator_and_leaves_the_global_state() -> None:
    before = torch.random.get_rng_state()
    g = make_generator(5)
    with global_rng_from(g):
        inside = torch.rand(4)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.equal(inside, torch.rand(4, generator=make_generator(5)))
    assert torch.equal(torch.rand(3, generator=g), torch.rand(7, generator=make_generator(5))[4:])  # g advanced


def test_unet_weights_follow_the_seed_and_replicas_copy_them() -> None:
    before = torch.random.get_rng_state()
    with global_rng_from(make_generator(0)):
        a = UNet(1, 1, 4, 2)
    with global_rng_from(make_generator(0)):
        b = UNet(1, 1, 4, 2)
    grouped = a.replicate(3)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    x = torch.rand(2, 1, 8, 8)
    a.eval()
    grouped.eval()
    assert torch.allclose(grouped(x.repeat(1, 3, 1, 1))[:, 2:3], a(x), atol=1e-6)
