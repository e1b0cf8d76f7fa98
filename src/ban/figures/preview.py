"""A picture of what each attack does to images: clean images above their triggered versions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ban.attacks.base import Attack
from ban.attacks.iad import IAD
from ban.data.dataset import ImageData
from ban.errors import BanError
from ban.figures.plotting import pyplot, save_figure
from ban.utils import eval_mode, make_generator


@dataclass
class PreviewRow:
    """One attack's triggered images and the caption that says how they were made."""

    label: str
    images: Tensor
    note: str = ""


def pick_images(data: ImageData, n: int, seed: int = 0) -> ImageData:
    """`n` images cycling through the classes (class 0, 1, 2, ...), a random one of each, drawn with `seed`."""
    if n < 1:
        raise BanError(f"asked to preview {n} images; pass at least 1")
    g = make_generator(seed)
    index = []
    for i in range(n):
        pool = torch.nonzero(data.y == i % data.num_classes).flatten()
        if len(pool) == 0:
            pool = torch.arange(len(data))
        index.append(int(pool[torch.randint(len(pool), (1,), generator=g)]))
    return data.subset(index)


def prepare_preview(attack: Attack, pool: ImageData, seed: int = 0, mask_epochs: int = 10) -> str:
    """Set `attack` up for `pool`'s images; for IAD/SSDT pre-train the mask network briefly on `pool`.

    Returns a note for the caption (what the generators are: trained, untrained, seeded).
    """
    attack.setup(pool.image_shape, pool.num_classes)
    if isinstance(attack, IAD):
        attack.pretrain_mask(pool.x, mask_epochs, make_generator(seed))
        return (
            f"mask net pre-trained {mask_epochs} epochs on {len(pool)} images, "
            f"pattern net untrained (seed {attack.trigger_seed})"
        )
    return ""


@torch.no_grad()
def trigger_row(attack: Attack, x: Tensor, seed: int = 0, label: str | None = None, note: str = "") -> PreviewRow:
    """The attack's test-time trigger applied to `x`, deterministically for `seed`."""
    attack.to("cpu")
    with eval_mode(attack):
        images = attack.apply_trigger(x.clone(), make_generator(seed)).clamp(0, 1)
    return PreviewRow(label or attack.name, images, note)


def _show(ax, img: Tensor, cmap: str | None = None) -> None:  # type: ignore[no-untyped-def]
    if img.shape[0] == 1:
        ax.imshow(img[0].numpy(), cmap=cmap or "gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(img[:3].permute(1, 2, 0).numpy(), vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def save_preview(
    clean: Tensor, rows: list[PreviewRow], out: str | Path, residual: bool = True, title: str | None = None
) -> Path:
    """Draw the grid (clean row, then per attack a triggered row and, with `residual`, |x' − x| amplified)."""
    n = len(clean)
    n_rows = 1 + len(rows) * (2 if residual else 1)
    fig = pyplot().figure(figsize=(1.25 * n + 2.6, 1.25 * n_rows + 0.6), layout="constrained")
    axes = fig.subplots(n_rows, n, squeeze=False)
    lines: list[tuple[str, Tensor, bool]] = [("clean", clean, False)]
    for row in rows:
        lines.append((row.label, row.images, False))
        if residual:
            diff = (row.images - clean).abs().amax(dim=1, keepdim=True)
            peak = float(diff.max())
            gain = 1.0 / peak if peak > 0 else 1.0
            lines.append((f"|Δ| ×{gain:.0f}", (diff * gain).clamp(0, 1), True))
    for r, (label, images, is_residual) in enumerate(lines):
        for c in range(n):
            _show(axes[r][c], images[c], "magma" if is_residual else None)
        axes[r][0].set_ylabel(label, fontsize=9, rotation=0, ha="right", va="center")
    notes = [f"{row.label}: {row.note}" for row in rows if row.note]
    heading = title or "clean images above their triggered versions"
    if notes:
        heading += "\n" + "\n".join(notes)
    fig.suptitle(heading, fontsize=9)
    return save_figure(fig, out)
