"""Adversarial neuron noise: one implementation for BAN detection, BAN fine-tuning and ANP.

Noise is per-channel and multiplicative on the affine parameters of every normalisation layer
(BatchNorm, GroupNorm, LayerNorm with affine parameters):

    γ' = γ · (m + δ),   β' = β · (1 + ξ),      δ, ξ ∈ [−ε, ε]^C,  m = 1 unless a mask is used

For a network without normalisation layers it falls back to per-output-channel multiplicative
noise on the weights of every Conv/Linear layer except the classifier (the model's last
``nn.Linear``): W'[c] = W[c] · (m_c + δ_c) (no ξ).

Nothing is copied and no parameter is touched: a forward hook rewrites each layer's output with
the exact identity (for a normalisation layer whose clean output is o):

    γ(m + δ)·x̂ + β(1 + ξ)  =  (m + δ)·(o − β) + β + ξ·β

so removing the hooks gives outputs bit-identical to before, in train or eval mode alike.

API
---
``noise = NeuronNoise(model, eps=0.3, layers="auto" | "norm" | "weights", use_mask=False, groups=1, depth=None)``
    finds the layers (``noise.kind`` says which) and holds δ, ξ (and m when ``use_mask``) as
    plain tensors, one per layer, on the model's device. Raises BanError when there is nothing
    to perturb. ``depth=n`` keeps only the first n layers in module order (the input side), ``depth=-n``
    the last n (the output side).
    ``groups=G`` holds G independent noises (δ, ξ of shape G×C): a batch of G·n images is read as
    G consecutive groups of n, and group g gets noise g — G searches (one per target class, say)
    in one forward pass. It needs eval-mode BatchNorm (train mode would mix the groups' statistics).
``with noise.applied(): model(x)``
    hooks on for the block, off afterwards (``attach()`` / ``detach()`` do the same by hand).
    ``noise.noise_on = False`` keeps the hooks (and the mask m) but uses δ = ξ = 0 — ANP's
    "natural" forward pass.
``noise.reset(random=True, generator=g)``  δ, ξ ~ U(−ε, ε) (random) or 0.
``noise.project()``  clamp δ, ξ to [−ε, ε].
``noise.ascend(loss, step_size, project)``  one sign-gradient ascent step on δ, ξ for ``loss``
    (computed with the hooks on); no gradient reaches the model's weights.
``noise.noise_tensors()`` / ``noise.mask_tensors()``  the leaf tensors, e.g. for an optimiser (ANP).
``recalibrate_running_stats(model, x)``  BatchNorm running statistics re-estimated on `x` as the
    model is now (with the noise applied: the noisy network's own statistics).
``adversarial_neuron_noise(model, noise, x, y, PGDConfig(...), generator=g)``
    PGD on clean images: random start U(−ε, ε) (or zero), ``steps`` sign steps of size
    ``step_size`` (default ε/steps) maximising CE(model_noisy(x), y), each followed by a
    projection to the ε-ball when ``project``. Leaves δ, ξ in ``noise``; returns the steps taken
    and their size.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ban.errors import BanError

NORM_TYPES: tuple[type[nn.Module], ...] = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)
WEIGHT_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
LAYER_CHOICES = ("auto", "norm", "weights")


def norm_layers(model: nn.Module) -> list[nn.Module]:
    """Normalisation layers with affine parameters (γ and β), in module order."""
    return [
        m
        for m in model.modules()
        if isinstance(m, NORM_TYPES) and getattr(m, "weight", None) is not None and getattr(m, "bias", None) is not None
    ]


def weight_layers(model: nn.Module) -> list[nn.Module]:
    """Conv/Linear layers except the classifier (the last nn.Linear), in module order."""
    layers = [m for m in model.modules() if isinstance(m, WEIGHT_TYPES)]
    linears = [m for m in layers if isinstance(m, nn.Linear)]
    if linears:
        layers = [m for m in layers if m is not linears[-1]]
    return layers


def _shape_for(module: nn.Module, t: Tensor, out: Tensor) -> Tensor:
    """Broadcast per-channel `t` against `out`: channels on dim 1, or trailing dims (LayerNorm, Linear)."""
    if isinstance(module, (nn.LayerNorm, nn.Linear)):
        return t
    return t.view(1, -1, *([1] * (out.dim() - 2)))


class NeuronNoise:
    """Per-neuron multiplicative noise on a model, applied by forward hooks (see the module docstring)."""

    def __init__(
        self,
        model: nn.Module,
        eps: float = 0.3,
        layers: str = "auto",
        use_mask: bool = False,
        groups: int = 1,
        depth: int | None = None,
    ) -> None:
        if layers not in LAYER_CHOICES:
            raise BanError(f"unknown noise layers '{layers}'; choose one of {', '.join(LAYER_CHOICES)}")
        if eps < 0:
            raise BanError(f"noise bound eps must be >= 0, got {eps}")
        if groups < 1 or depth == 0:
            raise BanError(f"noise groups must be >= 1 and depth nonzero, got groups={groups}, depth={depth}")
        if groups > 1 and use_mask:
            raise BanError("a neuron mask (ANP) is one per network; it cannot be combined with noise groups")
        self.model = model
        self.eps = float(eps)
        self.groups = int(groups)
        norms = norm_layers(model) if layers in ("auto", "norm") else []
        if norms:
            self.kind, self.layers = "norm", norms
        else:
            self.kind, self.layers = "weights", (weight_layers(model) if layers in ("auto", "weights") else [])
        if depth is not None:
            self.layers = self.layers[:depth] if depth > 0 else self.layers[depth:]
        if not self.layers:
            raise BanError(
                f"model {type(model).__name__} has no normalisation layer with affine parameters and no conv/linear "
                "weights besides its classifier, so there are no neurons to perturb; BAN cannot scan it"
            )
        self.delta: list[Tensor] = []
        self.xi: list[Tensor | None] = []
        self.mask: list[Tensor] | None = [] if use_mask else None
        lead = (self.groups,) if self.groups > 1 else ()
        for layer in self.layers:
            w = layer.weight
            channels = lead + tuple(w.shape if self.kind == "norm" else w.shape[:1])
            self.delta.append(torch.zeros(channels, device=w.device, dtype=w.dtype, requires_grad=True))
            self.xi.append(
                torch.zeros(channels, device=w.device, dtype=w.dtype, requires_grad=True)
                if self.kind == "norm"
                else None
            )
            if self.mask is not None:
                self.mask.append(torch.ones(channels, device=w.device, dtype=w.dtype, requires_grad=True))
        self.noise_on = True
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    # ---- the tensors -------------------------------------------------------------------------
    def noise_tensors(self) -> list[Tensor]:
        """δ and ξ leaf tensors (requires_grad), layer by layer."""
        return [*self.delta, *(x for x in self.xi if x is not None)]

    def mask_tensors(self) -> list[Tensor]:
        """The per-neuron mask coefficients m (only with use_mask=True)."""
        if self.mask is None:
            raise BanError("this NeuronNoise was made without a mask; pass use_mask=True")
        return list(self.mask)

    @property
    def num_neurons(self) -> int:
        return sum(int(d.numel()) for d in self.delta)

    @torch.no_grad()
    def reset(self, random: bool = True, generator: torch.Generator | None = None) -> None:
        """δ, ξ ~ U(−ε, ε) when `random`, else 0."""
        for t in self.noise_tensors():
            if random and self.eps > 0:
                r = torch.rand(t.shape, generator=generator, dtype=t.dtype)
                t.copy_((r * 2 - 1).mul_(self.eps).to(t.device))
            else:
                t.zero_()

    @torch.no_grad()
    def project(self) -> None:
        """Clamp δ, ξ to the ε-ball [−ε, ε]."""
        for t in self.noise_tensors():
            t.clamp_(-self.eps, self.eps)

    def ascend(self, loss: Tensor, step_size: float, project: bool = True) -> None:
        """One sign-gradient ascent step of size `step_size` on δ, ξ for `loss`."""
        tensors = self.noise_tensors()
        grads = torch.autograd.grad(loss, tensors, allow_unused=True)
        with torch.no_grad():
            for t, g in zip(tensors, grads, strict=True):
                if g is not None:
                    t.add_(g.sign(), alpha=step_size)
        if project:
            self.project()

    def magnitude(self) -> float:
        """max |δ|, |ξ| over all neurons."""
        return max(float(t.detach().abs().max()) for t in self.noise_tensors())

    # ---- the hooks ---------------------------------------------------------------------------
    def _hook(self, i: int) -> Any:
        def hook(module: nn.Module, _inputs: tuple[Tensor, ...], out: Tensor) -> Tensor:
            if self.groups > 1:
                return self._grouped(i, module, out)
            coef = self.mask[i] - 1 if self.mask is not None else None
            if self.noise_on:
                coef = self.delta[i] if coef is None else coef + self.delta[i]
            if coef is None:
                return out
            bias = module.bias
            if self.kind == "norm":
                b = _shape_for(module, bias, out)
                new = out + _shape_for(module, coef, out) * (out - b)
                if self.noise_on and self.xi[i] is not None:
                    new = new + _shape_for(module, self.xi[i] * bias, out)
                return new
            base = out if bias is None else out - _shape_for(module, bias, out)
            return out + _shape_for(module, coef, out) * base

        return hook

    def _grouped(self, i: int, module: nn.Module, out: Tensor) -> Tensor:
        """The hook for G noise groups: output viewed as G×n×..., the same identity per group."""
        if not self.noise_on:
            return out
        if out.shape[0] % self.groups:
            raise BanError(f"a batch of {out.shape[0]} images does not split into {self.groups} noise groups")
        grouped = out.view(self.groups, out.shape[0] // self.groups, *out.shape[1:])

        def per_group(t: Tensor) -> Tensor:  # G×C (or 1×C) -> G×1×C(×1…) against the grouped output
            if isinstance(module, (nn.LayerNorm, nn.Linear)):
                return t.view(t.shape[0], 1, *t.shape[1:])
            return t.view(t.shape[0], 1, -1, *([1] * (out.dim() - 2)))

        bias = module.bias
        b = 0.0 if bias is None else per_group(bias.unsqueeze(0))
        new = grouped + per_group(self.delta[i]) * (grouped - b)
        xi = self.xi[i]
        if self.kind == "norm" and xi is not None and bias is not None:
            new = new + per_group(xi * bias)
        return new.reshape(out.shape)

    def attach(self) -> None:
        """Switch the noise on (register the hooks); idempotent."""
        if not self._handles:
            self._handles = [layer.register_forward_hook(self._hook(i)) for i, layer in enumerate(self.layers)]

    def detach(self) -> None:
        """Switch the noise off (remove the hooks); the model is exactly as before."""
        for h in self._handles:
            h.remove()
        self._handles = []

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    @contextlib.contextmanager
    def applied(self) -> Iterator[NeuronNoise]:
        """Hooks on inside the block, off afterwards (even on error)."""
        already = self.attached
        self.attach()
        try:
            yield self
        finally:
            if not already:
                self.detach()


@dataclass
class PGDConfig:
    """PGD on neuron noise. BAN: ε 0.3, 30 steps of ε/30, random start, projected (paper) or not (official code)."""

    steps: int = 30
    step_size: float | None = None
    random_start: bool = True
    project: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextlib.contextmanager
def frozen_running_stats(model: nn.Module, enabled: bool = True) -> Iterator[None]:
    """Forward passes inside the block leave BatchNorm running statistics where they were.

    Train-mode BatchNorm still normalises with the batch's statistics; only the running
    averages (used in eval mode) stop moving, so noisy forward passes cannot corrupt them.
    """
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)] if enabled else []
    saved = [(m, m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None)
             for m in layers]  # fmt: skip
    for m in layers:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum, tracked in saved:
            m.momentum = momentum
            if tracked is not None and m.num_batches_tracked is not None:
                m.num_batches_tracked.copy_(tracked)


@torch.no_grad()
def recalibrate_running_stats(model: nn.Module, x: Tensor, batch_size: int = 128) -> int:
    """Re-estimate every BatchNorm layer's running statistics on images `x` with the model as it is now.

    Called with neuron noise applied, this gives the noisy network its own statistics: the exact
    average of its batch statistics over `x` (momentum None), which is what the official BAN code's
    train-mode noise search approaches after its hundreds of noisy forward passes. Without it the
    eval-mode network mixes clean and noisy statistics in a proportion set by the number of noise
    steps (docs/ban-defaults.md). The caller restores the buffers afterwards; the train/eval mode is
    restored here. Returns the number of BatchNorm layers recalibrated (0: nothing to do).
    """
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not layers or len(x) < 2:
        return 0
    dev = next(iter(model.parameters())).device
    saved = [m.momentum for m in layers]
    was_training = model.training
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    try:
        model.train()
        for start in range(0, len(x), batch_size):
            xb = x[start : start + batch_size]
            if len(xb) > 1:  # train-mode BatchNorm needs two images per batch
                model(xb.to(dev))
    finally:
        for m, momentum in zip(layers, saved, strict=True):
            m.momentum = momentum
        model.train(was_training)
    return len(layers)


def adversarial_neuron_noise(
    model: nn.Module,
    noise: NeuronNoise,
    x: Tensor,
    y: Tensor,
    cfg: PGDConfig | None = None,
    generator: torch.Generator | None = None,
    reset: bool = True,
) -> dict[str, float]:
    """Maximise CE(model_noisy(x), y) over δ, ξ on one batch `x` (B×C×H×W, on the model's device).

    The model's train/eval mode is the caller's choice. The noise found stays in `noise` (δ, ξ);
    returns {"steps": the number of sign steps, "step_size": their size}.
    """
    cfg = cfg or PGDConfig()
    step = cfg.step_size if cfg.step_size is not None else noise.eps / max(1, cfg.steps)
    if reset:
        noise.reset(random=cfg.random_start, generator=generator)
    with noise.applied():
        for _ in range(cfg.steps):
            loss = F.cross_entropy(model(x), y)
            noise.ascend(loss, step, cfg.project)
    return {"steps": float(cfg.steps), "step_size": float(step)}
