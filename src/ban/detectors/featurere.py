"""FeatureRE (Wang et al., NeurIPS 2022): per-class feature-space trigger inversion.

For every target t: a UNet input transform A and a feature mask m (tanh-parameterised, init 1):
F = g(A(x)), out = h(m⊙F + (1−m)⊙F_benign). A's loss keeps the masked features on a hyperplane
(small std), away from t's benign features (cosine), close to x in input space (MSE ≤ 0.15 in
normalised space), and sends out to t; the mask's loss is CE + an L1 bound (3% of the features).
Per epoch the mixed value (dist − ASR + bound violations) is recorded; its minimum over epochs is
the target's value. Decision (official `detection.py`): backdoored iff min over targets < −0.75;
target = argmin. Score = −min (higher = more suspicious), threshold 0.75.

All K targets train together: the K UNets are one grouped UNet and the K masks one K×Cf×Hf×Wf
tensor; each target sees its own batch of images of the other classes (exactly K independent runs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ban.blocks.feature_inversion import (
    Lowest,
    TargetData,
    cosine_to_target,
    hyperplane_std,
    input_std,
    invert_every_target,
    mix_features,
    mixed_value,
    per_target_ce,
    tanh_parameter,
    violation_weights,
)
from ban.blocks.trigger_search import unit_tanh
from ban.blocks.unet import UNet, grouped_input, grouped_output
from ban.detectors.feature_space import FeatureSpaceDetector, FeatureSpaceSettings, Inversion
from ban.models import get_split
from ban.progress import Bar
from ban.utils import global_rng_from, make_generator


@dataclass(frozen=True)
class FeatureRESettings(FeatureSpaceSettings):
    """FeatureRE's settings (official config.py, README); the budget scales warm-up and training epochs."""

    budgeted: ClassVar[tuple[str, ...]] = ("warmup_epochs", "epochs")

    batch_size: int = 256
    warmup_epochs: int = 100
    epochs: int = 400
    mask_size: float = 0.03
    p_bound: float = 0.15


class FeatureRE(FeatureSpaceDetector):
    """FeatureRE with the official defaults (config.py, README): 100 class-balanced clean images,
    batch 256, UNet (32 filters, 4 blocks) Adam 1e-3, mask Adam 0.1, 100 warm-up + 400 epochs,
    mask bound 3% of the features, input MSE bound 0.15, std bound 1, threshold −0.75.

    The verdict's artifacts carry the figures' images, `triggers`: `inputs` (one clean image per
    target) and `transformed` (A_t of it, one per target).
    """

    name: ClassVar[str] = "featurere"

    Settings: ClassVar[type[FeatureSpaceSettings]] = FeatureRESettings
    #: cpu: smaller samples and networks for CPU runs (benchmarks/detectors.py; the budget scales epochs on top)
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"paper": {}, "cpu": {"filters": 8, "blocks": 3}}
    config: FeatureRESettings

    def invert(self, model: nn.Module, data: TargetData, num_classes: int) -> Inversion:
        g = make_generator(self.seed)
        weights = make_generator(self.seed)  # the UNets' initial weights, a stream of their own
        values, stats, images = invert_every_target(
            num_classes, self.config.batched, lambda targets: self._invert(model, data, targets, g, weights)
        )
        triggers = {"inputs": data.x[:1].expand(num_classes, -1, -1, -1).cpu(), **images}
        return values, stats, triggers, {}

    def _invert(
        self, model: nn.Module, data: TargetData, targets: list[int], g: torch.Generator, weights: torch.Generator
    ) -> tuple[list[float], list[dict[str, float]], dict[str, Tensor]]:
        """Train the transforms and masks for `targets` (the UNet's initial weights drawn from `weights`);
        returns min mixed value, its stats, A_t of one clean image per target (`transformed`, k×C×H×W).

        The warm-up and training epochs count as one loop (`inversion`, warm-up epochs first) whose
        whole state a snapshot keeps between sittings; only the batched run (all targets in one call) keeps
        one: one target at a time (`batched=False`) starts again."""
        dev = data.x.device
        split = get_split(model)
        k, c = len(targets), data.x.shape[1]
        t = torch.tensor(targets, device=dev)
        std_in = input_std(model, c, dev)
        with global_rng_from(weights):
            net = UNet(c, c, self.config.filters, self.config.blocks, groups=k)
        net = net.to(dev).train()
        opt_net = torch.optim.Adam(net.parameters(), lr=self.config.lr, betas=(0.5, 0.9))
        mask_w = tanh_parameter((k, *data.features.shape[1:]), 1.0, dev)
        opt_mask = torch.optim.Adam([mask_w], lr=self.config.mask_lr, betas=(0.5, 0.9))
        mask_bound = self.config.mask_size * data.features[0].numel()
        lowest = Lowest(k, dev)
        loop = self.loop("inversion", model, data, targets, keep=self.config.batched)
        first = loop.resume(
            dict(net=net, opt_net=opt_net, mask_w=mask_w, opt_mask=opt_mask, lowest=lowest, g=g, weights=weights)
        )

        def transform(idx: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            xb = data.x[idx]  # k×b×C×H×W
            xa = grouped_output(net(grouped_input(xb)), k)
            p = ((xa - xb) / std_in).pow(2).flatten(2).mean(2).mean(1)
            return xb, xa, p

        def warm_up() -> None:
            """One epoch of the transforms alone: CE to t, the input-distance bound."""
            for idx in data.epoch_batches(targets, self.config.batch_size, g):
                _, xa, p = transform(idx)
                logits = model(xa.flatten(0, 1)).view(k, idx.shape[1], -1)
                ce, _ = per_target_ce(logits, t)
                loss = ce + 100 * p * (p > self.config.p_bound)
                opt_net.zero_grad(set_to_none=True)
                loss.sum().backward()
                opt_net.step()

        def train() -> None:
            """One epoch of the transforms and the masks, then the epoch's mixed value."""
            sums = torch.zeros(5, k, device=dev)
            batches_ = data.epoch_batches(targets, self.config.batch_size, g)
            for idx in batches_:
                _, xa, p = transform(idx)
                feats = split.features(xa.flatten(0, 1)).view(k, idx.shape[1], *data.features.shape[1:])
                benign = data.benign_features(tuple(idx.shape), g)
                masks = unit_tanh(mask_w).detach()
                logits = split.head(mix_features(masks, feats, benign).flatten(0, 1)).view(k, idx.shape[1], -1)
                ce, asr = per_target_ce(logits, t)
                dist = cosine_to_target(feats, data.class_means, t)
                std = hyperplane_std(feats, masks)
                loss = (
                    5 * dist.clamp_min(0)
                    + 10 * (1 + lowest.w_std) * std * (std > self.config.std_bound)
                    + 10 * (1 + lowest.w_p) * p * (p > self.config.p_bound)
                    + (1 + lowest.w_acc) * ce * (asr < self.config.asr_bound)
                )
                opt_net.zero_grad(set_to_none=True)
                loss.sum().backward()
                opt_net.step()
                # mask step, transform frozen
                masks = unit_tanh(mask_w)
                logits_m = split.head(mix_features(masks, feats.detach(), benign).flatten(0, 1))
                ce_m, _ = per_target_ce(logits_m.view(k, idx.shape[1], -1), t)
                l1 = masks.flatten(1).sum(1)
                opt_mask.zero_grad(set_to_none=True)
                (ce_m + l1 * (l1 > mask_bound)).sum().backward()
                opt_mask.step()
                sums += torch.stack([dist, asr, p, std, l1]).detach()
            dist, asr, p, std, l1 = sums / len(batches_)
            value = mixed_value(dist, asr, p, self.config.p_bound, l1, mask_bound, std, self.config.std_bound)
            stats = {"dist": dist, "asr": asr, "mse": p, "std": std, "mask_l1": l1}
            next_weights = violation_weights(
                p, self.config.p_bound, asr, self.config.asr_bound, std, self.config.std_bound
            )
            lowest.update(value, stats, next_weights)

        warmup, epochs = self.scaled(self.config.warmup_epochs), self.scaled(self.config.epochs)
        with Bar(f"{self.name} {targets[0]}..{targets[-1]}", warmup + epochs, quiet=self.quiet) as bar:
            bar.advance(first)
            for epoch in range(first, warmup + epochs):
                if self.deadline.expired():
                    break
                if epoch < warmup:
                    warm_up()
                    bar.advance()
                else:
                    train()
                    bar.advance(info=f"min mixed value {float(lowest.value.min()):.3f}")
                loop.save(epoch + 1)
        with torch.no_grad():
            net.eval()
            shown = grouped_output(net(grouped_input(data.x[:1].expand(k, 1, *data.x.shape[1:]))), k)
        return [float(v) for v in lowest.value], lowest.stats, {"transformed": shown[:, 0]}
