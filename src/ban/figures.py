"""BAN figures (PNG, matplotlib Agg): the prediction histograms under noise, the learned feature
mask, and the paper's Figure 1 (t-SNE of features under growing adversarial neuron noise)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ban.clean_data import CleanData
from ban.detectors.base import Detector, Verdict
from ban.models import get_split
from ban.noise import NeuronNoise, PGDConfig, adversarial_neuron_noise
from ban.utils import atomic_path, eval_mode, make_generator, resolve_device

TSNE_EPS = (0.0, 0.1, 0.2, 0.3)


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return path


def histogram_figure(verdict: Verdict, path: Path) -> Path:
    """Bar charts of the held-out predictions under noise: no mask and (1 − m)."""
    plt = _plt()
    keys = [
        (k, t)
        for k, t in (("histogram_no_mask", "no mask, noise on"), ("histogram_negative_mask", "(1 - m) mask, noise on"))
        if k in verdict.details
    ] or [("histogram", "predictions")]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.2), squeeze=False)
    for ax, (key, title) in zip(axes[0], keys, strict=True):
        counts = verdict.details[key]
        colours = ["tab:red" if c == max(counts) else "tab:gray" for c in counts]
        ax.bar(range(len(counts)), counts, color=colours)
        ax.axhline(
            verdict.threshold * sum(counts), color="k", ls="--", lw=1, label=f"threshold {verdict.threshold:.2f}"
        )
        ax.set_xticks(range(len(counts)))
        ax.set_xlabel("predicted class")
        ax.set_ylabel("held-out images")
        ax.set_title(title)
        ax.legend(fontsize=7)
    state = f"backdoored, target {verdict.target}" if verdict.backdoored else "clean"
    fig.suptitle(f"{verdict.detector}: {state} (score {verdict.score:.3f})", y=1.04)
    return _save(fig, path)


def mask_figure(mask: Tensor, path: Path) -> Path:
    """The feature mask m (C×H×W): mean over channels as a map, and each channel's mean."""
    plt = _plt()
    m = mask.detach().float().cpu()
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    im = a.imshow(m.mean(0) if m.ndim == 3 else m.reshape(1, -1), vmin=0, vmax=1, cmap="viridis")
    a.set_title("mask m, mean over channels")
    fig.colorbar(im, ax=a)
    b.bar(range(m.shape[0]), m.reshape(m.shape[0], -1).mean(1))
    b.set_ylim(0, 1)
    b.set_xlabel("feature channel")
    b.set_title("mean of m per channel")
    return _save(fig, path)


def noisy_features(
    model: nn.Module, clean: CleanData, eps: float, n: int, seed: int, device: torch.device
) -> tuple[Tensor, Tensor]:
    """Pooled features (n×C) and predictions (n,) of clean images under adversarial noise of bound `eps`."""
    g = make_generator(seed)
    data = clean.sample(n, seed)
    x, y = data.x.to(device), data.y.to(device)
    split = get_split(model)
    noise = NeuronNoise(model, eps)
    with eval_mode(model):
        if eps > 0:
            adversarial_neuron_noise(model, noise, x[:256], y[:256], PGDConfig(steps=10), g)
        with torch.no_grad(), noise.applied():
            f = split.features(x)
            pred = split.head(f).argmax(1)
    pooled = F.adaptive_avg_pool2d(f, 1).flatten(1) if f.ndim == 4 else f.flatten(1)
    return pooled.cpu(), pred.cpu()


def tsne_figure(
    models: list[nn.Module],
    names: list[str],
    clean: CleanData,
    path: Path,
    n: int = 200,
    seed: int = 0,
    device: str = "auto",
) -> Path:
    """The paper's Figure 1: t-SNE of features at ε = 0, 0.1, 0.2, 0.3, coloured by prediction, a row per model."""
    from sklearn.manifold import TSNE

    plt = _plt()
    dev = resolve_device(device)
    fig, axes = plt.subplots(
        len(models), len(TSNE_EPS), figsize=(3.2 * len(TSNE_EPS), 3.2 * len(models)), squeeze=False
    )
    for row, (model, name) in enumerate(zip(models, names, strict=True)):
        model.to(dev)
        for col, eps in enumerate(TSNE_EPS):
            f, pred = noisy_features(model, clean, eps, n, seed, dev)
            emb = TSNE(2, init="pca", random_state=seed, perplexity=30, max_iter=500).fit_transform(f.numpy())
            ax = axes[row][col]
            ax.scatter(emb[:, 0], emb[:, 1], c=pred.numpy(), cmap="tab10", vmin=0, vmax=9, s=5)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{name}\neps {eps}", fontsize=8)
    return _save(fig, path)


def detection_figures(
    detector: Detector, verdict: Verdict, model: nn.Module, clean: CleanData, directory: Path, seed: int = 0
) -> list[Path]:
    """Histogram, mask (BAN) and t-SNE PNGs for one scanned model; baselines write their own figures."""
    directory = Path(directory)
    out = [histogram_figure(verdict, directory / "histogram.png")]
    mask = getattr(detector, "mask", None)
    if isinstance(mask, Tensor):
        out.append(mask_figure(mask, directory / "mask.png"))
        out.append(tsne_figure([model], [detector.name], clean, directory / "tsne.png", seed=seed))
    elif hasattr(detector, "save_figures"):
        out.extend(detector.save_figures(directory))
    return out
