"""FT: plain fine-tuning of all weights on the defender's clean images (the baseline every repair must beat).

FT is the fine-tuning template with its defaults: BackdoorBench ``config/defense/ft/config.yaml``
(see docs/mitigations.md): 5% of the training set (2500 CIFAR-10 images), 100 epochs, batch 256,
SGD lr 0.01, momentum 0.9, weight decay 5e-4, cosine annealing, random crop (+ flip where the data
allows).
"""

from __future__ import annotations

from typing import ClassVar

from ban.mitigations.base import FineTuneMitigation


class FineTune(FineTuneMitigation):
    """Fine-tune on `clean_samples` clean images for `epochs` × `budget` epochs."""

    name: ClassVar[str] = "ft"
    label: ClassVar[str] = "FT"
