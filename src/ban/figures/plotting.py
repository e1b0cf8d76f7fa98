"""The one matplotlib helper: a headless pyplot, and a figure written atomically (write, then rename)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ban.utils import atomic_path


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no display needed), imported only when a figure is drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path, dpi: int = 110, **savefig: Any) -> Path:
    """Write `fig` to `path` (format from its suffix, PNG when it has none) atomically; close it; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=dpi, **savefig)
    pyplot().close(fig)
    return path
