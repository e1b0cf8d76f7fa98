"""The feature mask: one implementation for BAN, BTI-DBF and BTI-DBF*.

A feature mask ``m`` has the shape of ONE sample's feature map (C×H×W, the output of
``ban.models.get_split(model).features``) and is shared over the batch. It is learned so that
``m ⊙ f`` keeps what the benign task needs and ``(1 − m) ⊙ f`` keeps the rest:

    loss = CE(head(m ⊙ f), y) − CE(head((1 − m) ⊙ f), y) + λ · ‖m‖₁ / stopgrad(‖m‖₁)

API
---
``FeatureMask(shape, parametrization="clamp" | "tanh", generator=None)``
    ``mask()`` returns m ∈ [0, 1]^shape. ``"clamp"`` (BAN): m is the parameter itself, init
    U(0, 1), clamped to [0, 1] after every optimiser step. ``"tanh"`` (BTI-DBF): m =
    tanh(w)/(2 + 1e-7) + 0.5 with w ~ N(0, 1), so m is always inside (0, 1).
``mask_objective(head, f, y, m, lam)``
    the loss above for a batch of features ``f`` (B×C×H×W) with labels ``y`` (B,); ``lam = 0``
    drops the L1 term (BTI-DBF's objective).
``learn_feature_mask(model, x, y, MaskConfig(...), generator=..., device=..., quiet=...)``
    Adam over the mask only (model weights are never updated, and no gradient lands on them).
    ``MaskConfig.cache_features=True`` computes ``features(x)`` once, without gradient, and then
    trains the mask on those cached features (same objective, far less work): in eval mode, or
    with ``train_mode=True`` in train mode over consecutive batches (batch statistics; the
    running statistics stay as they were).
    ``cache_features=False`` recomputes features per batch; with ``train_mode=True`` BatchNorm
    runs in train mode as the official BAN / BTI-DBF code does (batch statistics, running
    statistics updated — the model's buffers change; the caller decides whether to restore them).
    ``batches_per_epoch`` set → each epoch draws that many batches with replacement (official
    BAN loader); None → one shuffled pass over the data per epoch.
    Returns a ``MaskResult`` with the ``FeatureMask`` and the final loss terms.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ban.errors import BanError
from ban.models import get_split
from ban.progress import track
from ban.utils import batches, eval_mode, resolve_device

PARAMETRIZATIONS = ("clamp", "tanh")


class FeatureMask(nn.Module):
    """A mask m ∈ [0, 1]^{C×H×W} over one sample's feature map, shared across the batch."""

    def __init__(
        self, shape: tuple[int, ...], parametrization: str = "clamp", generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        if parametrization not in PARAMETRIZATIONS:
            raise BanError(
                f"unknown mask parametrization '{parametrization}'; choose one of {', '.join(PARAMETRIZATIONS)}"
            )
        self.parametrization = parametrization
        self.shape = tuple(int(s) for s in shape)
        if parametrization == "clamp":
            init = torch.rand(self.shape, generator=generator)
        else:
            init = torch.randn(self.shape, generator=generator)
        self.weight = nn.Parameter(init)

    def mask(self) -> Tensor:
        """m, shape `self.shape`, values in [0, 1]."""
        if self.parametrization == "tanh":
            return torch.tanh(self.weight) / (2 + 1e-7) + 0.5
        return self.weight

    def forward(self) -> Tensor:
        return self.mask()

    @torch.no_grad()
    def project_(self) -> None:
        """Keep the clamp parametrisation inside [0, 1] (a no-op for tanh)."""
        if self.parametrization == "clamp":
            self.weight.clamp_(0.0, 1.0)


def mask_objective(
    head: Callable[[Tensor], Tensor], f: Tensor, y: Tensor, m: Tensor, lam: float
) -> tuple[Tensor, dict[str, float]]:
    """BAN's mask loss on features `f` (B×C×H×W), labels `y` (B,), mask `m` (C×H×W); lam=0 → BTI-DBF's."""
    ce_pos = F.cross_entropy(head(m * f), y)
    ce_neg = F.cross_entropy(head((1 - m) * f), y)
    loss = ce_pos - ce_neg
    if lam:
        l1 = m.abs().sum()
        loss = loss + lam * l1 / l1.detach().clamp_min(1e-12)
    return loss, {"ce_benign": float(ce_pos.detach()), "ce_negative": float(ce_neg.detach())}


@dataclass
class MaskConfig:
    """Settings of mask learning. BAN (README): clamp, λ 0.75, Adam lr 0.01, 20 epochs, batch 128."""

    parametrization: str = "clamp"
    lam: float = 0.75
    lr: float = 0.01
    epochs: int = 20
    batch_size: int = 128
    batches_per_epoch: int | None = None
    cache_features: bool = True
    train_mode: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class MaskResult:
    """The learned mask and each epoch's mean loss terms."""

    mask: FeatureMask
    history: list[dict[str, float]] = field(default_factory=list)

    def value(self) -> Tensor:
        """m (C×H×W), detached, on the mask's device."""
        return self.mask.mask().detach()


@torch.no_grad()
def compute_features(
    model: nn.Module, x: Tensor, batch_size: int, device: torch.device, train_mode: bool = False
) -> Tensor:
    """features(x) for all of `x` (N×C×H×W on `device`), without gradient; in eval mode, or with
    `train_mode` in train mode: BatchNorm normalises each consecutive batch of `batch_size` images by
    its own statistics, and the running statistics are left as they were."""
    split = get_split(model)
    out = []
    if not train_mode:
        with eval_mode(model):
            for sl in batches(len(x), batch_size):
                out.append(split.features(x[sl].to(device)))
        return torch.cat(out)
    saved = {n: b.detach().clone() for n, b in model.named_buffers()}
    was_training = model.training
    model.train()
    try:
        for sl in batches(len(x), batch_size):
            out.append(split.features(x[sl].to(device)))
    finally:
        model.train(was_training)
        for n, b in model.named_buffers():
            b.copy_(saved[n])
    return torch.cat(out)


def _batch_indices(n: int, cfg: MaskConfig, generator: torch.Generator) -> list[Tensor]:
    if cfg.batches_per_epoch:
        return [
            torch.randint(0, n, (min(cfg.batch_size, n),), generator=generator) for _ in range(cfg.batches_per_epoch)
        ]
    perm = torch.randperm(n, generator=generator)
    return [perm[sl] for sl in batches(n, cfg.batch_size)]


def learn_feature_mask(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    cfg: MaskConfig | None = None,
    generator: torch.Generator | None = None,
    device: str | torch.device = "auto",
    quiet: bool = True,
    stop: Callable[[], bool] | None = None,
) -> MaskResult:
    """Learn a feature mask on clean images `x` (N×C×H×W in [0,1]) with labels `y` (N,); `stop()`,
    checked before every epoch, ends the learning early (a time allowance)."""
    cfg = cfg or MaskConfig()
    if len(x) == 0:
        raise BanError("mask learning needs at least one clean image")
    if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.lr <= 0:
        raise BanError("mask learning needs epochs >= 1, batch size >= 1 and a positive learning rate")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    dev = resolve_device(device)
    model.to(dev)
    split = get_split(model)
    cached = compute_features(model, x, cfg.batch_size, dev, cfg.train_mode) if cfg.cache_features else None
    shape = tuple(cached.shape[1:]) if cached is not None else tuple(compute_features(model, x[:1], 1, dev).shape[1:])
    fmask = FeatureMask(shape, cfg.parametrization, g).to(dev)
    opt = torch.optim.Adam([fmask.weight], lr=cfg.lr)
    y = y.to(dev)
    was_training = model.training
    model.train(cfg.train_mode and not cfg.cache_features)
    history: list[dict[str, float]] = []
    try:
        for _epoch in track(range(cfg.epochs), "feature mask", quiet=quiet):
            if stop is not None and stop():
                break
            sums = {"loss": 0.0, "ce_benign": 0.0, "ce_negative": 0.0}
            idxs = _batch_indices(len(x), cfg, g)
            for idx in idxs:
                if cached is not None:
                    f = cached[idx.to(dev)]
                else:
                    with torch.no_grad():
                        f = split.features(x[idx].to(dev))
                loss, terms = mask_objective(split.head, f, y[idx.to(dev)], fmask.mask(), cfg.lam)
                (grad,) = torch.autograd.grad(loss, [fmask.weight])
                fmask.weight.grad = grad
                opt.step()
                fmask.project_()
                sums["loss"] += float(loss.detach())
                sums["ce_benign"] += terms["ce_benign"]
                sums["ce_negative"] += terms["ce_negative"]
            history.append({k: v / len(idxs) for k, v in sums.items()})
    finally:
        model.train(was_training)
    fmask.requires_grad_(False)
    return MaskResult(fmask, history)
