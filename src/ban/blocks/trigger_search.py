"""Per-class trigger search in input space (Neural Cleanse; Tabor adds regularisers to the loss).

For every candidate target t a mask m_t ∈ [0,1]^{1×H×W} and a pattern p_t ∈ [0,1]^{C×H×W}
(both tanh-parameterised) are learned so that x' = (1 − m_t)⊙x + m_t⊙p_t is classified as t:

    loss_t = CE(f(x'), t) + cost_t·‖m_t‖₁ + extra_t        (extra: Tabor's regularisers, else 0)

All K targets are optimised in ONE batched tensor: masks are K×1×H×W, patterns K×C×H×W, and
every batch of clean images is evaluated for all K targets in one forward pass (K·B images).
Adam works element-wise, so this equals K independent runs (the model is frozen in eval mode).
The cost schedule and early stopping of the official NC code run per target, vectorised.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ban.blocks.snapshot import Resumable, fingerprint
from ban.progress import Bar
from ban.utils import batches

EPS = 1e-7


def unit_tanh(w: Tensor) -> Tensor:
    """Map an unconstrained parameter to (0, 1): tanh(w)/(2 + ε) + 0.5."""
    return torch.tanh(w) / (2 + EPS) + 0.5


def inverse_unit_tanh(v: Tensor) -> Tensor:
    """The parameter w with unit_tanh(w) ≈ v, for v in [0, 1]."""
    return torch.atanh(((v - 0.5) * (2 + EPS)).clamp(-0.9999, 0.9999))


def stamp(x: Tensor, masks: Tensor, patterns: Tensor) -> Tensor:
    """x' = (1 − m)⊙x + m⊙p for every target: x (B×C×H×W), masks (k×1×H×W), patterns (k×C×H×W) → (k×B×C×H×W)."""
    return (1 - masks[:, None]) * x[None] + masks[:, None] * patterns[:, None]


#: extra loss per target: (model, x (B×C×H×W), y (B,), masks, patterns, targets (k,)) -> (k,)
ExtraLoss = Callable[[nn.Module, Tensor, Tensor, Tensor, Tensor, Tensor], Tensor]


@dataclass
class SearchConfig:
    """Official NC defaults (bolunwang/backdoor, gtsrb_visualize_example.py): Adam lr 0.1, betas (0.5, 0.9),
    batch 32, up to 1000 epochs over the clean sample, cost 1e-3 (starting at 0), success threshold 0.99,
    patience 5, cost ×2 up / ÷2^1.5 down, early stop after 25 epochs without a 1.0× improvement."""

    epochs: int = 1000
    batch_size: int = 32
    lr: float = 0.1
    betas: tuple[float, float] = (0.5, 0.9)
    init_cost: float = 1e-3
    cost_starts_at_zero: bool = True
    success_threshold: float = 0.99
    patience: int = 5
    cost_up: float = 2.0
    cost_down: float = 2.0**1.5
    early_stop_threshold: float = 1.0
    early_stop_patience: int = 25

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SearchResult:
    """Per target (k = len(targets)): best masks (k×1×H×W), patterns (k×C×H×W), their L1 norms,
    whether the success threshold was ever reached, the epochs run and the last epoch's attack success;
    a search continued from a snapshot: the epoch it continued at and the seconds of its earlier sittings."""

    targets: list[int]
    masks: Tensor
    patterns: Tensor
    norms: list[float]
    found: list[bool]
    epochs: list[int]
    success: list[float]
    resumed_from_epoch: int = 0
    seconds_before: float = 0.0


class _CostSchedule:
    """NC's adaptive cost and early stopping, one state per target (numpy vectors of length k)."""

    def __init__(self, k: int, cfg: SearchConfig) -> None:
        self.cfg = cfg
        self.cost = np.full(k, 0.0 if cfg.cost_starts_at_zero else cfg.init_cost)
        self.set_counter = np.zeros(k, int)
        self.up = np.zeros(k, int)
        self.down = np.zeros(k, int)
        self.up_flag = np.zeros(k, bool)
        self.down_flag = np.zeros(k, bool)
        self.reg_best = np.full(k, np.inf)
        self.es_best = np.full(k, np.inf)
        self.es_counter = np.zeros(k, int)

    STATE = ("cost", "set_counter", "up", "down", "up_flag", "down_flag", "reg_best", "es_best", "es_counter")

    def state_dict(self) -> dict[str, Tensor]:
        return {name: torch.from_numpy(getattr(self, name).copy()) for name in self.STATE}

    def load_state_dict(self, state: dict[str, Tensor], /) -> None:
        for name in self.STATE:
            setattr(self, name, state[name].numpy().copy())

    def update(self, acc: np.ndarray, reg: np.ndarray, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """After one epoch: returns (improved: save these as best, stop: these targets are done)."""
        c = self.cfg
        ok = acc >= c.success_threshold
        improved = active & ok & (reg < self.reg_best)
        self.reg_best = np.where(improved, reg, self.reg_best)
        # early stopping bookkeeping
        seen = active & np.isfinite(self.reg_best)
        stalled = self.reg_best >= c.early_stop_threshold * self.es_best
        self.es_counter = np.where(seen, np.where(stalled, self.es_counter + 1, 0), self.es_counter)
        self.es_best = np.where(seen, np.minimum(self.reg_best, self.es_best), self.es_best)
        stop = active & self.up_flag & self.down_flag & (self.es_counter >= c.early_stop_patience)
        # cost starts at 0 and is set to init_cost after `patience` successful epochs
        zero = (self.cost == 0) & ok
        self.set_counter = np.where(zero, self.set_counter + 1, 0)
        start = zero & (self.set_counter >= c.patience)
        self.cost = np.where(start, c.init_cost, self.cost)
        for arr in (self.up, self.down):
            arr[start] = 0
        self.up_flag[start] = False
        self.down_flag[start] = False
        # adaptive cost
        self.up = np.where(ok, self.up + 1, 0)
        self.down = np.where(ok, 0, self.down + 1)
        go_up = self.up >= c.patience
        go_down = ~go_up & (self.down >= c.patience)
        self.cost = np.where(go_up, self.cost * c.cost_up, np.where(go_down, self.cost / c.cost_down, self.cost))
        self.up_flag |= go_up
        self.down_flag |= go_down
        self.up[go_up] = 0
        self.down[go_down] = 0
        return improved, stop


def search_triggers(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    targets: list[int],
    cfg: SearchConfig,
    generator: torch.Generator,
    extra_loss: ExtraLoss | None = None,
    quiet: bool = True,
    description: str = "trigger search",
    out_of_time: Callable[[], bool] | None = None,
    snapshot: str | Path | None = None,
    snapshot_every: float = 60.0,
) -> SearchResult:
    """Optimise a mask and pattern for every target in `targets` at once (until `out_of_time()`, checked per batch:
    an epoch that runs out of time ends with the batches it has done, which then count as its epoch).

    model: frozen classifier in eval mode; x: clean images (N×C×H×W in [0, 1], on the model's device);
    y: their labels (N,), used only by loss terms that need them (Tabor's blocking term).
    snapshot: a file for the search's state after whole epochs (at most every `snapshot_every` seconds); a
    search that finds its own snapshot there continues from it, exactly as if it had not stopped, and
    removes it when it finishes.
    """
    dev = x.device
    k, (c, h, w) = len(targets), x.shape[1:]
    t = torch.tensor(targets, device=dev)
    init_m = torch.rand(k, 1, h, w, generator=generator)
    init_p = torch.rand(k, c, h, w, generator=generator)
    mask_w = nn.Parameter(inverse_unit_tanh(init_m).to(dev))
    pattern_w = nn.Parameter(inverse_unit_tanh(init_p).to(dev))
    opt = torch.optim.Adam([mask_w, pattern_w], lr=cfg.lr, betas=cfg.betas)
    schedule = _CostSchedule(k, cfg)
    best_m = unit_tanh(mask_w.detach()).clone()
    best_p = unit_tanh(pattern_w.detach()).clone()
    active = np.ones(k, bool)
    epochs_run = np.zeros(k, int)
    last_acc = np.zeros(k)
    extra = getattr(extra_loss, "__qualname__", None)  # Tabor's terms or none
    key = (
        ""
        if snapshot is None
        else fingerprint(  # the generator's state stands for the detector's seed
            cfg.to_dict(), targets, extra, x, y, generator.get_state(), *model.state_dict().values()
        )
    )
    loop = Resumable("trigger_search", snapshot, key, snapshot_every)
    first = loop.resume(
        dict(
            mask_w=mask_w, pattern_w=pattern_w, optimizer=opt, schedule=schedule, best_m=best_m, best_p=best_p,
            active=active, epochs_run=epochs_run, last_acc=last_acc, generator=generator,
        )
    )  # fmt: skip
    with Bar(description, cfg.epochs, quiet=quiet) as bar:
        bar.advance(first)
        for epoch in range(first, cfg.epochs):
            if out_of_time is not None and out_of_time():
                break
            live = torch.from_numpy(np.nonzero(active)[0]).to(dev)
            cost = torch.from_numpy(schedule.cost).float().to(dev)[live]
            perm = torch.randperm(len(x), generator=generator).to(dev)
            acc_sum, reg_sum, n_batches = torch.zeros(len(live), device=dev), torch.zeros(len(live), device=dev), 0
            timed_out = False
            for sl in batches(len(x), cfg.batch_size):
                if n_batches and out_of_time is not None and out_of_time():
                    timed_out = True
                    break
                xb, yb = x[perm[sl]], y[perm[sl]]
                masks, patterns = unit_tanh(mask_w[live]), unit_tanh(pattern_w[live])
                logits = model(stamp(xb, masks, patterns).flatten(0, 1)).view(len(live), len(xb), -1)
                tb = t[live][:, None].expand(-1, len(xb))
                ce = F.cross_entropy(logits.flatten(0, 1), tb.flatten(), reduction="none").view(len(live), -1).mean(1)
                reg = masks.abs().sum(dim=(1, 2, 3))
                loss = ce + cost * reg
                if extra_loss is not None:
                    loss = loss + extra_loss(model, xb, yb, masks, patterns, t[live])
                opt.zero_grad(set_to_none=True)
                loss.sum().backward()
                opt.step()
                acc_sum += (logits.argmax(-1) == tb).float().mean(1).detach()
                reg_sum += reg.detach()
                n_batches += 1
            acc = np.zeros(k)
            reg_np = np.full(k, np.inf)
            live_np = live.cpu().numpy()
            acc[live_np] = (acc_sum / n_batches).cpu().numpy()
            reg_np[live_np] = (reg_sum / n_batches).cpu().numpy()
            improved, stop = schedule.update(acc, reg_np, active)
            if improved.any():
                idx = torch.from_numpy(np.nonzero(improved)[0]).to(dev)
                best_m[idx] = unit_tanh(mask_w.detach()[idx])
                best_p[idx] = unit_tanh(pattern_w.detach()[idx])
            epochs_run[active] += 1
            last_acc[active] = acc[active]
            active &= ~stop
            bar.advance(info=f"{int(active.sum())}/{k} targets left")
            if not active.any() or timed_out:
                break
            loop.save(epoch + 1)
    loop.clear()
    found = np.isfinite(schedule.reg_best)
    # a target that never reached the success threshold keeps its last mask (as the official code does)
    if (~found).any():
        idx = torch.from_numpy(np.nonzero(~found)[0]).to(dev)
        best_m[idx] = unit_tanh(mask_w.detach()[idx])
        best_p[idx] = unit_tanh(pattern_w.detach()[idx])
    norms = best_m.abs().sum(dim=(1, 2, 3)).cpu().tolist()
    return SearchResult(
        targets=list(targets),
        masks=best_m.cpu(),
        patterns=best_p.cpu(),
        norms=[float(v) for v in norms],
        found=[bool(v) for v in found],
        epochs=[int(v) for v in epochs_run],
        success=[float(v) for v in last_acc],
        resumed_from_epoch=first,
        seconds_before=loop.snapshot.before,
    )


def search_each(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    num_classes: int,
    cfg: SearchConfig,
    generator: torch.Generator,
    extra_loss: ExtraLoss | None = None,
    batched: bool = True,
    quiet: bool = True,
    description: str = "trigger search",
    out_of_time: Callable[[], bool] | None = None,
    snapshot: str | Path | None = None,
) -> SearchResult:
    """Search every class 0..K−1: in one batched run (`batched`), or one run per class (a Python loop).
    `snapshot` (see `search_triggers`) is kept for the batched run only; the loop starts again."""
    classes = list(range(num_classes))
    if batched:
        return search_triggers(
            model, x, y, classes, cfg, generator, extra_loss, quiet, description, out_of_time, snapshot
        )
    parts = [
        search_triggers(model, x, y, [t], cfg, generator, extra_loss, quiet, f"{description} class {t}", out_of_time)
        for t in classes
    ]
    return SearchResult(
        targets=classes,
        masks=torch.cat([p.masks for p in parts]),
        patterns=torch.cat([p.patterns for p in parts]),
        norms=[p.norms[0] for p in parts],
        found=[p.found[0] for p in parts],
        epochs=[p.epochs[0] for p in parts],
        success=[p.success[0] for p in parts],
    )
