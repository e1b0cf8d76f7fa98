"""The defender's held-out clean pool and class-balanced sampling from it."""

from __future__ import annotations

import torch

from ban.data.dataset import ImageData
from ban.errors import BanError
from ban.utils import make_generator


def defender_split(data: ImageData, defender_fraction: float = 0.1, seed: int = 0) -> tuple[ImageData, ImageData]:
    """Split a training set into (attacker's part, defender's held-out clean pool), disjoint and seeded.

    The paper trains attacked models on 90% and gives the defender the other 10%.
    """
    if not 0.0 < defender_fraction < 1.0:
        raise BanError(f"defender fraction must lie in (0, 1), got {defender_fraction}")
    perm = torch.randperm(len(data), generator=make_generator(seed))
    n_def = int(round(len(data) * defender_fraction))
    if n_def == 0 or n_def == len(data):
        raise BanError(f"{len(data)} images are too few to split off a {defender_fraction:.0%} defender pool")
    return data.subset(perm[n_def:].sort().values), data.subset(perm[:n_def].sort().values)


def balanced_sample(data: ImageData, n: int, seed: int = 0, min_per_class: int = 1) -> ImageData:
    """`n` images with (as near as possible) equal counts per class, drawn with `seed`.

    Raises when some class has fewer than `min_per_class` images or `n` exceeds the pool.
    """
    k = data.num_classes
    if n <= 0:
        raise BanError(f"asked for {n} clean samples; need a positive number")
    if n > len(data):
        raise BanError(f"asked for {n} clean samples but the pool holds only {len(data)}; pass fewer or more data")
    g = make_generator(seed)
    per_class = [torch.nonzero(data.y == c).flatten() for c in range(k)]
    per_class = [idx[torch.randperm(len(idx), generator=g)] for idx in per_class]
    counts = [len(idx) for idx in per_class]
    short = [c for c in range(k) if counts[c] < min_per_class]
    if short:
        raise BanError(
            f"classes {short} have fewer than {min_per_class} clean samples (counts {counts}); "
            f"provide at least {min_per_class} images of every class"
        )
    quota = [0] * k
    remaining = n
    order = sorted(range(k), key=lambda c: counts[c])
    for i, c in enumerate(order):
        share = remaining // (k - i)
        quota[c] = min(counts[c], share)
        remaining -= quota[c]
    # hand out what is left one by one to classes that still have images
    while remaining > 0:
        for c in range(k):
            if remaining and quota[c] < counts[c]:
                quota[c] += 1
                remaining -= 1
    index = torch.cat([per_class[c][: quota[c]] for c in range(k)])
    return data.subset(index[torch.randperm(len(index), generator=g)])
