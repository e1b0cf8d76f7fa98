"""SSDT (Mo et al., TED, IEEE S&P 2024): IAD's dynamic triggers, but only the victim class flips."""

from __future__ import annotations

from typing import Any, ClassVar

from ban.attacks.iad import IAD
from ban.errors import BanError


class SSDT(IAD):
    """Source-specific dynamic triggers: victim images (class `victim`, default 1) with their
    trigger go to the target (default 0); other images with a trigger keep their label.

    Same networks, mask pre-training and losses as IAD (TED's train_SSDT.py). Per batch every
    victim image is added with its trigger and the target label; `cross_ratio` (1, TED) times as
    many following images carry another image's trigger and keep their label; the rest stay clean
    (TED's batch, whose victim images therefore appear both triggered and clean). `poison_rate` is unused, as in TED.
    SSDT is always source-specific: mode "all2one" (the `ban train` default) is read as
    source-specific; all2all is refused.

    Preset `cpu` (a few epochs, docs/attacks.md): mask_epochs=5; G's learning rate still drops at
    the paper's fractions of the epochs.
    """

    name: ClassVar[str] = "ssdt"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"cpu": {"mask_epochs": 5}}

    def __init__(
        self, victim: int | None = 1, mode: str = "source-specific", cross_ratio: float = 1.0, **kwargs: Any
    ) -> None:
        if mode not in ("source-specific", "all2one"):
            raise BanError(f"SSDT is source-specific; mode '{mode}' does not apply (set --victim and --target instead)")
        if float(cross_ratio) < 0:
            raise BanError(f"SSDT's cross_ratio (cross samples per victim) must be at least 0, got {cross_ratio}")
        super().__init__(victim=1 if victim is None else victim, mode="source-specific", **kwargs)
        self.cross_ratio = float(cross_ratio)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "cross_ratio": self.cross_ratio}

    def num_cross_source_specific(self, n_bd: int) -> int:
        """`cross_ratio` (TED: 1) cross samples per victim sample of the batch."""
        return int(n_bd * self.cross_ratio)
