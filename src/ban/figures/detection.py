"""BAN figures (PNG, matplotlib Agg): the prediction histograms under noise, the learned feature
mask, and the paper's Figure 1 (t-SNE of features under growing adversarial neuron noise)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ban.blocks.noise import NeuronNoise
from ban.clean_data import CleanData
from ban.detectors.ban_detector import averaged_scores
from ban.detectors.base import Detector, Verdict
from ban.errors import BanError
from ban.figures.plotting import pyplot, save_figure
from ban.figures.triggers import save_trigger_figures
from ban.models import get_split
from ban.utils import eval_mode, resolve_device

TSNE_SCALES = (0.0, 1 / 3, 2 / 3, 1.0)  # of the verdict's own final noise


def _chosen_run(verdict: Verdict) -> str:
    """Which run a figure of the run's own tensors shows, when the verdict is a mean over several."""
    runs = verdict.details.get("restarts") or []
    if averaged_scores(verdict) is None:
        return ""
    i = int(verdict.details.get("restart_chosen", 0))
    return f"run {i + 1} of {len(runs)} (seed {runs[i]['seed']}): "


def histogram_figure(verdict: Verdict, path: Path) -> Path:
    """Bar charts of the held-out predictions under noise: no mask and (1 − m). A verdict averaged over
    restarts gets a first panel with what it decided on: every class's mean score, each run's as a mark,
    and the threshold; the histograms beside it are the run that scored highest on the verdict's class."""
    plt = pyplot()
    keys = [
        (k, t)
        for k, t in (("histogram_no_mask", "no mask, noise on"), ("histogram_negative_mask", "(1 - m) mask, noise on"))
        if k in verdict.details
    ] or [("histogram", "predictions")]
    mean = averaged_scores(verdict)
    n_panels = len(keys) + (mean is not None)
    fig, axes = plt.subplots(1, n_panels, figsize=(4.5 * n_panels, 3.2), squeeze=False)
    panels = list(axes[0])
    if mean is not None:
        scores, per_run, seeds = mean
        ax = panels.pop(0)
        top = max(range(len(scores)), key=scores.__getitem__)
        ax.bar(range(len(scores)), scores, color=["tab:red" if c == top else "tab:gray" for c in range(len(scores))])
        for run, seed, marker in zip(per_run, seeds, "ovs^D<>", strict=False):
            ax.plot(range(len(run)), run, ls="", marker=marker, mfc="none", mec="k", ms=5, label=f"run seed {seed}")
        ax.axhline(verdict.threshold, color="k", ls="--", lw=1, label=f"threshold {verdict.threshold:.2f}")
        ax.set_ylim(0, 1)
        ax.set_xticks(range(len(scores)))
        ax.set_xlabel("class")
        ax.set_ylabel(f"score ({verdict.settings.get('rule', 'pooled')} rule)")
        ax.set_title(f"the verdict: mean of {len(per_run)} runs")
        ax.legend(fontsize=7)
    prefix = _chosen_run(verdict)
    for ax, (key, title) in zip(panels, keys, strict=True):
        counts = verdict.details[key]
        colours = ["tab:red" if c == max(counts) else "tab:gray" for c in counts]
        ax.bar(range(len(counts)), counts, color=colours)
        ax.axhline(
            verdict.threshold * sum(counts), color="k", ls="--", lw=1, label=f"threshold {verdict.threshold:.2f}"
        )
        ax.set_xticks(range(len(counts)))
        ax.set_xlabel("predicted class")
        ax.set_ylabel("held-out images")
        ax.set_title(prefix + title, fontsize=9 if prefix else None)
        ax.legend(fontsize=7)
    state = f"backdoored, target {verdict.target}" if verdict.backdoored else "clean"
    fig.suptitle(f"{verdict.detector}: {state} (score {verdict.score:.3f})", y=1.04)
    fig.subplots_adjust(wspace=0.3)
    return save_figure(fig, path, bbox_inches="tight")


def mask_figure(mask: Tensor, path: Path) -> Path:
    """The feature mask m (C×H×W): mean over channels as a map, and each channel's mean."""
    plt = pyplot()
    m = mask.detach().float().cpu()
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    im = a.imshow(m.mean(0) if m.ndim == 3 else m.reshape(1, -1), vmin=0, vmax=1, cmap="viridis")
    a.set_title("mask m, mean over channels")
    fig.colorbar(im, ax=a)
    b.bar(range(m.shape[0]), m.reshape(m.shape[0], -1).mean(1))
    b.set_ylim(0, 1)
    b.set_xlabel("feature channel")
    b.set_title("mean of m per channel")
    return save_figure(fig, path, bbox_inches="tight")


def verdict_features(
    model: nn.Module, verdict: Verdict, clean: CleanData, scale: float, n: int, seed: int, device: torch.device
) -> tuple[Tensor, Tensor]:
    """Pooled features (n×C) and predictions (n,) of clean images as BAN's verdict computed them.

    The verdict's own final noise is applied, multiplied by `scale` (1 = exactly the verdict's), with the
    BatchNorm statistics it predicted with (the model's own at scale 0), and the features its statistic
    reads: (1 − m) ⊙ features for `negative-mask`, the plain features for `no-mask`.
    """
    art = verdict.artifacts
    if not carries_noise(verdict):
        raise BanError("this verdict carries no BAN noise and mask (a baseline's, or read back from JSON); rescan")
    data = clean.sample(n, seed)
    x = data.x.to(device)
    split = get_split(model)
    noise = NeuronNoise(model, float(verdict.settings.get("eps", 0.3)))
    saved = {k: b.detach().clone() for k, b in model.named_buffers()}
    with torch.no_grad():
        for t, v in zip(noise.noise_tensors(), art["noise"], strict=True):
            t.copy_(v.to(t.device) * scale)
        if scale > 0:
            for k, b in model.named_buffers():
                b.copy_(art["buffers"][k].to(b.device))
    keep = (1 - art["mask"].to(device)) if verdict.settings.get("statistic") == "negative-mask" else 1.0
    try:
        with torch.no_grad(), eval_mode(model), noise.applied():
            f = split.features(x) * keep
            pred = split.head(f).argmax(1)
    finally:
        with torch.no_grad():
            for k, b in model.named_buffers():
                b.copy_(saved[k])
    pooled = F.adaptive_avg_pool2d(f, 1).flatten(1) if f.ndim == 4 else f.flatten(1)
    return pooled.cpu(), pred.cpu()


def tsne_figure(
    models: list[nn.Module],
    verdicts: list[Verdict],
    names: list[str],
    clean: CleanData,
    path: Path,
    n: int = 200,
    seed: int = 0,
    device: str = "auto",
) -> Path:
    """The paper's Figure 1 from the detector's own run: t-SNE of the features its statistic reads under
    its final noise scaled by 0, 1/3, 2/3 and 1, coloured by prediction, one row per model; the
    verdict's target (or the argmax class of a clean verdict) is ringed."""
    from sklearn.manifold import TSNE

    plt = pyplot()
    dev = resolve_device(device)
    k = clean.num_classes
    labels = list(clean.images.class_names) or [str(c) for c in range(k)]
    cmap = plt.get_cmap("tab10" if k <= 10 else "tab20")
    fig, axes = plt.subplots(
        len(models), len(TSNE_SCALES), figsize=(3.2 * len(TSNE_SCALES), 3.2 * len(models) + 0.6), squeeze=False
    )
    for row, (model, verdict, name) in enumerate(zip(models, verdicts, names, strict=True)):
        model.to(dev)
        marked = verdict.target if verdict.target is not None else verdict.details.get("argmax_class")
        eps = float(verdict.settings.get("eps", 0.3))
        for col, scale in enumerate(TSNE_SCALES):
            f, pred = verdict_features(model, verdict, clean, scale, n, seed, dev)
            emb = TSNE(2, init="pca", random_state=seed, perplexity=min(30, n - 1), max_iter=500).fit_transform(
                f.numpy()
            )
            ax = axes[row][col]
            p = pred.numpy()
            ax.scatter(emb[:, 0], emb[:, 1], c=[cmap(int(c) % cmap.N) for c in p], s=5)
            if marked is not None and (p == marked).any():
                sel = p == marked
                ax.scatter(emb[sel, 0], emb[sel, 1], facecolors="none", edgecolors="k", s=22, lw=0.5)
            share = float((p == marked).mean()) if marked is not None else 0.0
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{name}\nnoise x{scale:.2f} (eps {eps * scale:.2f}): {share:.0%} -> {marked}", fontsize=8)
        state = f"flagged, target {verdict.target}" if verdict.backdoored else "clean"
        shown = _chosen_run(verdict)
        label = f"{state} (score {verdict.score:.2f})" + (f"\nshown: {shown.rstrip(': ')}" if shown else "")
        axes[row][0].set_ylabel(label, fontsize=8)
    handles = [
        plt.Line2D([], [], ls="", marker="o", color=cmap(c % cmap.N), label=f"{c} {labels[c]}"[:18]) for c in range(k)
    ]
    handles.append(plt.Line2D([], [], ls="", marker="o", mfc="none", mec="k", label="target / argmax class"))
    fig.legend(handles=handles, loc="lower center", ncol=min(6, len(handles)), fontsize=7, frameon=False)
    fig.subplots_adjust(bottom=0.18)
    return save_figure(fig, path, bbox_inches="tight")


def carries_noise(verdict: Verdict) -> bool:
    """True when the verdict carries the mask, noise and BatchNorm buffers BAN predicted with (for t-SNE)."""
    return {"noise", "buffers", "mask"} <= set(verdict.artifacts)


def detection_figures(
    detector: Detector, verdict: Verdict, model: nn.Module, clean: CleanData, directory: Path, seed: int = 0
) -> list[Path]:
    """Histogram PNG for one scanned model, plus what its verdict carries: BAN's mask and t-SNE, or a
    baseline's recovered triggers."""
    directory = Path(directory)
    out = [histogram_figure(verdict, directory / "histogram.png")]
    mask = verdict.artifacts.get("mask")
    if isinstance(mask, Tensor):
        out.append(mask_figure(mask, directory / "mask.png"))
    if carries_noise(verdict):
        out.append(tsne_figure([model], [verdict], [detector.name], clean, directory / "tsne.png", seed=seed))
    if verdict.artifacts.get("triggers"):
        out.extend(save_trigger_figures(verdict, directory))
    return out
