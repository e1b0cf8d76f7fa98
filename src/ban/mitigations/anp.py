"""ANP: Adversarial Neuron Pruning (Wu & Wang, NeurIPS 2021).

Neurons are the channels of every normalisation layer with affine parameters. Each gets a mask
coefficient m ∈ [0, 1] (init 1) and adversarial noise δ, ξ: the layer computes
γ·(m + δ)·x̂ + β·(1 + ξ). The noise, masks and hooks all come from ``ban.blocks.noise.NeuronNoise``
(``use_mask=True``); no model copy is made per architecture.

Per iteration, on a batch drawn with replacement from the clean images and augmented as the
official loader does (random crop with padding 4, horizontal flip where the data allows it;
``augment=False`` switches this off), BatchNorm in train mode (as the official code):

1. δ, ξ ~ U(−ε, ε), then ``noise_steps`` sign-ascent steps of size ε/steps on CE of the noisy
   model (no projection, as the official code);
2. one SGD step (lr 0.2, momentum 0.9) on the masks for
   ``α·CE(model_m(x), y) + (1 − α)·CE(model_{m,δ,ξ}(x), y)``, then clip m to [0, 1].

The model's weights never receive a gradient and its BatchNorm running statistics are restored
afterwards. Pruning: every neuron with m ≤ ``threshold`` gets γ = 0 (a zeroed weight, so the
state dict keeps its shapes; β stays, as in the official ``prune_neuron_cifar.py``), or, with
``prune_ratio``, that fraction of neurons with the smallest masks.

Defaults (github csdongxian/ANP_backdoor; BackdoorBench ``config/defense/anp``): ε 0.4, one noise
step, α 0.2, mask lr 0.2, 2000 iterations of batch 128, 1% of the training set (500 images),
crop (padding 4) + flip augmentation, pruning threshold 0.2 (the paper's fixed threshold).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ban.blocks.noise import NeuronNoise, norm_layers
from ban.clean_data import CleanData
from ban.data.augment import Augment
from ban.errors import BanError
from ban.mitigations.base import Mitigation
from ban.mitigations.settings import MitigationSettings
from ban.progress import Bar
from ban.utils import make_generator


def learn_neuron_masks(
    model: nn.Module,
    noise: NeuronNoise,
    x: Tensor,
    y: Tensor,
    iterations: int,
    batch_size: int,
    alpha: float,
    lr: float,
    noise_steps: int,
    generator: torch.Generator,
    quiet: bool = True,
    augment: Augment | None = None,
) -> list[dict[str, float]]:
    """ANP's mask optimisation on clean images `x` (N×C×H×W, on the model's device); returns a loss log.

    `augment`, when given, transforms every drawn batch (the official loader's crop + flip).
    """
    masks = noise.mask_tensors()
    opt = torch.optim.SGD(masks, lr=lr, momentum=0.9)
    step = noise.eps / max(1, noise_steps)
    log: list[dict[str, float]] = []
    model.train()
    bar = Bar("ANP masks", iterations, quiet=quiet)
    try:
        with noise.applied():
            for it in range(iterations):
                idx = torch.randint(len(x), (batch_size,), generator=generator).to(x.device)
                xb, yb = x[idx], y[idx]
                if augment is not None:
                    xb = augment(xb, generator)
                if noise.eps > 0:
                    noise.noise_on = True
                    noise.reset(random=True, generator=generator)
                    for _ in range(noise_steps):
                        noise.ascend(F.cross_entropy(model(xb), yb), step, project=False)
                noise.noise_on = False
                natural = F.cross_entropy(model(xb), yb)
                noise.noise_on = noise.eps > 0
                robust = F.cross_entropy(model(xb), yb) if noise.eps > 0 else natural
                loss = alpha * natural + (1 - alpha) * robust
                opt.zero_grad(set_to_none=True)
                grads = torch.autograd.grad(loss, masks)
                for m, g in zip(masks, grads, strict=True):
                    m.grad = g
                opt.step()
                with torch.no_grad():
                    for m in masks:
                        m.clamp_(0.0, 1.0)
                if (it + 1) % max(1, iterations // 10) == 0 or it + 1 == iterations:
                    log.append({"iteration": it + 1, "natural_loss": natural.item(), "robust_loss": robust.item()})
                bar.advance()
    finally:
        bar.close()
        noise.noise_on = True
    return log


@dataclass(frozen=True, kw_only=True)
class ANPSettings(MitigationSettings):
    """The official ANP code: 1% clean data (500 CIFAR-10 images), ε 0.4, one noise step, α 0.2,
    mask lr 0.2, 2000 iterations of batch 128, pruning threshold 0.2, crop (padding 4) + flip."""

    clean_samples: int = 500
    eps: float = 0.4
    noise_steps: int = 1
    alpha: float = 0.2
    lr: float = 0.2
    iterations: int = 2000
    batch_size: int = 128
    threshold: float = 0.2
    prune_ratio: float | None = None
    augment: bool = True
    crop_pad: int = 4

    scaled_fields: ClassVar[tuple[str, ...]] = ("iterations",)
    positive: ClassVar[tuple[str, ...]] = ("clean_samples", "iterations", "batch_size")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.threshold < 1.0:
            raise BanError(f"ANP's pruning threshold must lie in [0, 1), got {self.threshold}")
        if self.prune_ratio is not None and not 0.0 <= self.prune_ratio < 1.0:
            raise BanError(f"pruning ratio must lie in [0, 1), got {self.prune_ratio}")
        if not 0.0 <= self.alpha <= 1.0:
            raise BanError(f"ANP's alpha must lie in [0, 1], got {self.alpha}")
        if self.eps < 0:
            raise BanError(f"ANP's noise bound eps must be >= 0, got {self.eps}")
        if self.crop_pad < 0:
            raise BanError(f"crop padding must be >= 0, got {self.crop_pad}")


class ANP(Mitigation):
    """Learn per-neuron masks under adversarial neuron noise; prune the neurons whose mask falls low."""

    name: ClassVar[str] = "anp"
    Settings: ClassVar[type[MitigationSettings]] = ANPSettings
    params: ANPSettings

    def learn_masks(self, model: nn.Module, clean: CleanData) -> tuple[NeuronNoise, list[dict[str, float]], int]:
        """The learned masks (in a NeuronNoise over `model`), the loss log and the number of clean images used."""
        if not norm_layers(model):
            raise BanError(
                f"ANP prunes neurons of normalisation layers, but {type(model).__name__} has none with affine "
                "parameters; use another method (fp, ft, ftsam, nad, ibau or ban)"
            )
        data, dev = self.prepare(model, clean)
        saved = copy.deepcopy(model.state_dict())
        requires = [p.requires_grad for p in model.parameters()]
        for p in model.parameters():
            p.requires_grad_(False)
        p = self.params
        noise = NeuronNoise(model, eps=p.eps, layers="norm", use_mask=True)
        try:
            log = learn_neuron_masks(
                model,
                noise,
                data.x.to(dev),
                data.y.to(dev),
                p.scaled(p.iterations),
                p.batch_size,
                p.alpha,
                p.lr,
                p.noise_steps,
                make_generator(p.seed),
                p.quiet,
                Augment(p.crop_pad, data.flip) if p.augment else None,
            )
        finally:
            model.load_state_dict(saved)  # BatchNorm running statistics moved in train mode
            for p, r in zip(model.parameters(), requires, strict=True):
                p.requires_grad_(r)
            model.eval()
        return noise, log, len(data)

    def pruned_neurons(self, masks: list[Tensor]) -> list[Tensor]:
        """Per layer, a boolean vector of the neurons to prune."""
        ratio = self.params.prune_ratio
        if ratio is None:
            return [m.detach() <= self.params.threshold for m in masks]
        flat = torch.cat([m.detach().flatten() for m in masks])
        n = int(ratio * len(flat))
        chosen = torch.zeros(len(flat), dtype=torch.bool)
        chosen[torch.argsort(flat.cpu(), stable=True)[:n]] = True
        out, start = [], 0
        for m in masks:
            out.append(chosen[start : start + m.numel()].view_as(m).to(m.device))
            start += m.numel()
        return out

    def repair(self, model: nn.Module, clean: CleanData) -> tuple[nn.Module, dict[str, Any]]:
        noise, log, used = self.learn_masks(model, clean)
        masks = noise.mask_tensors()
        prune = self.pruned_neurons(masks)
        with torch.no_grad():
            for layer, k in zip(noise.layers, prune, strict=True):
                layer.weight[k] = 0
        total = sum(int(m.numel()) for m in masks)
        pruned = sum(int(k.sum()) for k in prune)
        flat = torch.cat([m.detach().flatten().cpu() for m in masks])
        return model, {
            "num_neurons": total,
            "num_pruned": pruned,
            "pruned_fraction": pruned / max(total, 1),
            "pruned_per_layer": [int(k.sum()) for k in prune],
            "mask_quantiles": {str(q): float(flat.quantile(q)) for q in (0.0, 0.01, 0.05, 0.1, 0.5)},
            "mask_below": {str(t): int((flat <= t).sum()) for t in (0.05, 0.1, 0.2, 0.5)},
            "log": log,
            "clean_used": used,
        }
