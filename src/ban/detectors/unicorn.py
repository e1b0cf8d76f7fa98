"""Unicorn (Wang et al., ICLR 2023): per-class trigger inversion in a learned transformed space.

For every target t: x' = Q((1 − m_in)⊙P̂(x) + m_in⊙p_in), P and Q two UNets (encoder, decoder),
P̂ = P(x) min-max normalised to [0, 1] (de-normalised after the blend), m_in, p_in ∈ [0,1]^{C×H×W};
plus a feature mask m: out = h(m⊙g(x') + (1−m)⊙F_benign). P, Q first learn the identity
(MSE(Q(P(x)), x), once, shared by all targets). Then per batch: one step on P, Q (cosine to t's
benign features, hyperplane std, 1 − SSIM(x', x) bound 0.15, CE to t, 200·invertibility MSE);
`inner_steps` steps on (m_in, p_in) (the same loss, cosine counted only ≥ 0.5, plus an L1 bound of
15% on m_in); `inner_steps` steps on m (CE + L1 bound 15% of the features).

Decision: the released code has none (it inverts a given target). ban uses FeatureRE's rule, as
method.md directs (same authors, same loss skeleton): per target the minimum over epochs of the
mixed value dist − ASR + over(1 − SSIM) + over(‖m‖₁) + over(std); backdoored iff the minimum over
targets < `threshold` (−0.75); target = argmin; score = −min. All K targets train together
(grouped UNets, K×… masks), each on its own batch of images of the other classes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ban.blocks.feature_inversion import (
    Lowest,
    TargetData,
    cosine_to_target,
    hyperplane_std,
    invert_every_target,
    mix_features,
    mixed_value,
    per_target_ce,
    tanh_parameter,
    violation_weights,
)
from ban.blocks.snapshot import Resumable
from ban.blocks.ssim import ssim
from ban.blocks.trigger_search import unit_tanh
from ban.blocks.unet import UNet, grouped_input, grouped_output
from ban.detectors.feature_space import FeatureSpaceDetector, FeatureSpaceSettings, Inversion
from ban.models import get_split
from ban.progress import Bar
from ban.utils import batches, global_rng_from, make_generator


def pretrain_identity(
    p: UNet,
    q: UNet,
    x: Tensor,
    epochs: int,
    batch_size: int,
    lr: float,
    g: torch.Generator,
    stop: Callable[[], bool] | None = None,
    loop: Resumable | None = None,
) -> float:
    """Train Q∘P to reproduce x (MSE), until `stop()` (checked per epoch); returns the last epoch's mean loss.

    loop: keeps the state (P, Q, Adam, `g`, the epochs' losses) between sittings after whole epochs, and once
    more when the training ends, so that a run stopped in a later stage finds the trained P and Q."""
    opt = torch.optim.Adam([*p.parameters(), *q.parameters()], lr=lr, betas=(0.5, 0.9))
    losses: list[float] = []  # the mean loss of every epoch
    loop = loop if loop is not None else Resumable("identity_pretraining", None, "")
    first = loop.resume({"p": p, "q": q, "optimizer": opt, "g": g, "losses": losses})
    for epoch in range(first, epochs):
        if stop is not None and stop():
            break
        perm = torch.randperm(len(x), generator=g).to(x.device)
        loss_sum, n = 0.0, 0
        for sl in batches(len(x), batch_size):
            xb = x[perm[sl]]
            loss = F.mse_loss(q(p(xb)), xb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum, n = loss_sum + float(loss.detach()), n + 1
        losses.append(loss_sum / max(n, 1))
        loop.save(epoch + 1)
    loop.save(len(losses), force=True)
    return losses[-1] if losses else 0.0


@dataclass(frozen=True)
class UnicornSettings(FeatureSpaceSettings):
    """Unicorn's settings (official config.py, README); the budget scales pre-training and training epochs."""

    budgeted: ClassVar[tuple[str, ...]] = ("pretrain_epochs", "epochs")

    batch_size: int = 64
    pretrain_epochs: int = 500
    epochs: int = 1000
    inner_steps: int = 10
    mask_size: float = 0.15
    input_mask_size: float = 0.15
    ssim_bound: float = 0.15
    dist_weight: float = 1.0
    invert_weight: float = 200.0


class Unicorn(FeatureSpaceDetector):
    """Unicorn with the official defaults (config.py, README): 100 class-balanced clean images,
    batch 64, UNets (32 filters, 4 blocks) Adam 1e-3 pre-trained 500 epochs, 1000 epochs,
    masks/pattern Adam 0.1 with 10 inner steps each, mask bounds 15%, SSIM bound 0.15.

    The verdict's artifacts carry the figures' images, `triggers`: `transformed` (x' of one clean
    image per target), `input_masks`, `input_patterns`.
    """

    name: ClassVar[str] = "unicorn"

    Settings: ClassVar[type[FeatureSpaceSettings]] = UnicornSettings
    #: cpu: smaller samples and networks for CPU runs (benchmarks/detectors.py; the budget scales epochs on top)
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        "cpu": {"filters": 8, "blocks": 3, "inner_steps": 2, "pretrain_epochs": 100, "epochs": 200},
    }
    config: UnicornSettings

    def invert(self, model: nn.Module, data: TargetData, num_classes: int) -> Inversion:
        g = make_generator(self.seed)
        c = data.x.shape[1]
        dev = data.x.device
        with global_rng_from(make_generator(self.seed)):  # the UNets' initial weights, a stream of their own
            p_net = UNet(c, c, self.config.filters, self.config.blocks).to(dev).train()
            q_net = UNet(c, c, self.config.filters, self.config.blocks).to(dev).train()
        identity_mse = pretrain_identity(
            p_net,
            q_net,
            data.x,
            self.scaled(self.config.pretrain_epochs),
            self.config.batch_size,
            self.config.lr,
            g,
            self.deadline.expired,
            self.loop("identity_pretraining", model, data, []),
        )
        values, stats, triggers = invert_every_target(
            num_classes, self.config.batched, lambda targets: self._invert(model, data, targets, p_net, q_net, g)
        )
        details = {
            "identity_mse": identity_mse,
            "decision_rule": "FeatureRE mixed value (Unicorn's code has no decision step)",
        }
        return values, stats, triggers, details

    def _invert(
        self,
        model: nn.Module,
        data: TargetData,
        targets: list[int],
        p_single: UNet,
        q_single: UNet,
        g: torch.Generator,
    ) -> tuple[list[float], list[dict[str, float]], dict[str, Tensor]]:
        dev = data.x.device
        split = get_split(model)
        k, (c, h, w) = len(targets), data.x.shape[1:]
        fshape = tuple(data.features.shape[1:])
        t = torch.tensor(targets, device=dev)
        p_net, q_net = p_single.replicate(k), q_single.replicate(k)
        opt_pq = torch.optim.Adam([*p_net.parameters(), *q_net.parameters()], lr=self.config.lr, betas=(0.5, 0.9))
        m_in_w = tanh_parameter((k, c, h, w), 1.0, dev)
        p_in_w = tanh_parameter((k, c, h, w), 0.0, dev)
        opt_in = torch.optim.Adam([m_in_w, p_in_w], lr=self.config.mask_lr, betas=(0.5, 0.9))
        mask_w = tanh_parameter((k, *fshape), 1.0, dev)
        opt_mask = torch.optim.Adam([mask_w], lr=self.config.mask_lr, betas=(0.5, 0.9))
        mask_bound = self.config.mask_size * data.features[0].numel()
        in_bound = self.config.input_mask_size * c * h * w
        lowest = Lowest(k, dev)
        loop = self.loop("inversion", model, data, targets, keep=self.config.batched)
        first = loop.resume(
            dict(
                p_net=p_net,
                q_net=q_net,
                opt_pq=opt_pq,
                m_in_w=m_in_w,
                p_in_w=p_in_w,
                opt_in=opt_in,
                mask_w=mask_w,
                opt_mask=opt_mask,
                lowest=lowest,
                g=g,
            )
        )

        def decode(z: Tensor) -> Tensor:
            """x' from P-space codes z (k×b×C×H×W): normalise, blend mask/pattern, de-normalise, Q."""
            lo = z.amin(dim=(2, 3, 4), keepdim=True)
            span = z.amax(dim=(2, 3, 4), keepdim=True) - lo + 1e-7
            m_in, p_in = unit_tanh(m_in_w)[:, None], unit_tanh(p_in_w)[:, None]
            blended = (1 - m_in) * (z - lo) / span + m_in * p_in
            return grouped_output(q_net(grouped_input(blended * span + lo)), k)

        def terms(xb: Tensor, xt: Tensor, masks: Tensor, benign: Tensor) -> dict[str, Tensor]:
            b = xb.shape[1]
            feats = split.features(xt.flatten(0, 1)).view(k, b, *fshape)
            logits = split.head(mix_features(masks, feats, benign).flatten(0, 1)).view(k, b, -1)
            ce, asr = per_target_ce(logits, t)
            ssim_loss = 1 - ssim(xt.flatten(0, 1), xb.flatten(0, 1)).view(k, b).mean(1)
            return {
                "feats": feats,
                "ce": ce,
                "asr": asr,
                "ssim_loss": ssim_loss,
                "dist": cosine_to_target(feats, data.class_means, t),
                "std": hyperplane_std(feats, masks),
            }

        def shared_loss(r: dict[str, Tensor]) -> Tensor:
            return (
                10 * (1 + lowest.w_std) * r["std"] * (r["std"] > self.config.std_bound)
                + 10 * (1 + lowest.w_p) * r["ssim_loss"] * (r["ssim_loss"] > self.config.ssim_bound)
                + (1 + lowest.w_acc) * r["ce"] * (r["asr"] < self.config.asr_bound)
            )

        epochs = self.scaled(self.config.epochs)
        with Bar(f"{self.name} {targets[0]}..{targets[-1]}", epochs, quiet=self.quiet) as bar:
            bar.advance(first)
            for epoch in range(first, epochs):
                if self.deadline.expired():
                    break
                sums = torch.zeros(5, k, device=dev)
                batches_ = data.epoch_batches(targets, self.config.batch_size, g)
                for idx in batches_:
                    xb = data.x[idx]
                    benign = data.benign_features(tuple(idx.shape), g)
                    masks = unit_tanh(mask_w).detach()
                    # (a) the transforms P, Q
                    z = grouped_output(p_net(grouped_input(xb)), k)
                    r = terms(xb, decode(z), masks, benign)
                    invert = (grouped_output(q_net(grouped_input(z)), k) - xb).pow(2).flatten(2).mean(2).mean(1)
                    loss = (
                        self.config.dist_weight * r["dist"].clamp_min(0)
                        + shared_loss(r)
                        + self.config.invert_weight * invert
                    )
                    opt_pq.zero_grad(set_to_none=True)
                    loss.sum().backward()
                    opt_pq.step()
                    sums += torch.stack(
                        [r["dist"], r["asr"], r["ssim_loss"], r["std"], masks.flatten(1).sum(1)]
                    ).detach()
                    # (b) the input-space mask and pattern (transforms frozen)
                    z = z.detach()
                    q_net.requires_grad_(False)
                    for _step in range(self.config.inner_steps):
                        r = terms(xb, decode(z), masks, benign)
                        l1_in = unit_tanh(m_in_w).flatten(1).sum(1)
                        loss = (
                            self.config.dist_weight * r["dist"] * (r["dist"] >= 0.5)
                            + shared_loss(r)
                            + 10 * l1_in * (l1_in > in_bound)
                        )
                        opt_in.zero_grad(set_to_none=True)
                        loss.sum().backward()
                        opt_in.step()
                    q_net.requires_grad_(True)
                    # (c) the feature mask
                    feats = r["feats"].detach()
                    for _step in range(self.config.inner_steps):
                        m = unit_tanh(mask_w)
                        logits = split.head(mix_features(m, feats, benign).flatten(0, 1)).view(k, idx.shape[1], -1)
                        ce, _ = per_target_ce(logits, t)
                        l1 = m.flatten(1).sum(1)
                        opt_mask.zero_grad(set_to_none=True)
                        (ce + l1 * (l1 > mask_bound)).sum().backward()
                        opt_mask.step()
                dist, asr, s_loss, std, l1 = sums / len(batches_)
                value = mixed_value(
                    dist, asr, s_loss, self.config.ssim_bound, l1, mask_bound, std, self.config.std_bound
                )
                stats = {"dist": dist, "asr": asr, "ssim_loss": s_loss, "std": std, "mask_l1": l1}
                next_weights = violation_weights(
                    s_loss, self.config.ssim_bound, asr, self.config.asr_bound, std, self.config.std_bound
                )
                lowest.update(value, stats, next_weights)
                bar.advance(info=f"min mixed value {float(lowest.value.min()):.3f}")
                loop.save(epoch + 1)
        with torch.no_grad():
            p_net.eval()
            q_net.eval()
            x0 = data.x[:1].expand(k, 1, c, h, w)
            shown = decode(grouped_output(p_net(grouped_input(x0)), k))[:, 0]
        images = {
            "transformed": shown,
            "input_masks": unit_tanh(m_in_w).detach(),
            "input_patterns": unit_tanh(p_in_w).detach(),
        }
        return [float(v) for v in lowest.value], lowest.stats, images
