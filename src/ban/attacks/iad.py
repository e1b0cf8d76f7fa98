"""IAD, the input-aware dynamic backdoor (Nguyen & Tran, NeurIPS 2020): trigger networks trained with the classifier."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ban.attacks.base import PerBatchAttack, partner_index
from ban.data.dataset import ImageData
from ban.errors import BanError

EPSILON = 1e-7


def _block(c_in: int, c_out: int, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out, momentum=0.05)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class TriggerGenerator(nn.Module):
    """IAD's encoder–decoder generator, output in [0, 1] via tanh(z)/(2+ε) + 0.5.

    `steps` × (two conv-BN-ReLU blocks, 2×2 max-pool) with channels `channels`·2^step, a middle
    block, then `steps` × (bilinear upsampling, two blocks) halving the channels, the last block
    without ReLU giving `out_channels`. Upsampling goes back to the exact sizes seen on the way
    down, so any input size works (the original assumes sizes divisible by 2^steps).
    """

    def __init__(self, in_channels: int, out_channels: int, channels: int = 32, steps: int = 3) -> None:
        super().__init__()
        self.down = nn.ModuleList()
        c_cur, c_next = in_channels, channels
        for step in range(steps):
            self.down.append(nn.Sequential(_block(c_cur, c_next), _block(c_next, c_next)))
            if step < steps - 1:
                c_cur, c_next = c_next, c_next * 2
        self.middle = _block(c_next, c_next)
        c_cur = c_next
        self.up = nn.ModuleList()
        for step in range(steps):
            last = step == steps - 1
            c_out = out_channels if last else max(1, c_cur // 2)
            self.up.append(nn.Sequential(_block(c_cur, c_cur), _block(c_cur, c_out, relu=not last)))
            c_cur = c_out

    def forward(self, x: Tensor) -> Tensor:
        sizes = []
        for block in self.down:
            x = block(x)
            sizes.append(x.shape[-2:])
            x = F.max_pool2d(x, 2)
        x = self.middle(x)
        for block, size in zip(self.up, reversed(sizes), strict=True):
            x = block(F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False))
        return torch.tanh(x) / (2 + EPSILON) + 0.5


def diversity_loss(a: Tensor, b: Tensor, pa: Tensor, pb: Tensor) -> Tensor:
    """mean(‖a − b‖ / (‖pa − pb‖ + ε)) with RMS distances per sample: different inputs, different triggers."""
    da = ((a - b) ** 2).mean(dim=(1, 2, 3)).add(1e-12).sqrt()
    dp = ((pa - pb) ** 2).mean(dim=(1, 2, 3)).add(1e-12).sqrt()
    return (da / (dp + EPSILON)).mean()


def _milestones(fractions: Sequence[float], epochs: int) -> list[int]:
    return sorted({max(1, round(f * epochs)) for f in fractions})


class IAD(PerBatchAttack):
    """Input-aware dynamic triggers: x' = x + (G(x) − x)⊙M(x); label → target.

    G (pattern generator) and M (mask generator, thresholded to ≈ binary with
    tanh(20·M − 10)/(2+ε) + 0.5) are encoder–decoders saved with the attack. Before the
    classifier trains, M alone is pre-trained for `mask_epochs` (25) epochs: Adam lr `lr_m`
    (0.01, betas 0.5/0.9, ÷10 at 40% and 80% of them = [10, 20] of 25),
    loss λ_norm·mean(ReLU(M(x) − mask_density)) + λ_div·diversity; then M is frozen.
    Per batch: `poison_rate` (0.1) backdoor samples, `cross_rate` (0.1) cross samples carrying
    ANOTHER image's trigger with their true label, the rest clean; loss CE + λ_div·diversity(G).
    G draws the backdoor and the cross triggers in one pass, so its BatchNorm sees a mixed batch.
    G: Adam lr `lr_g` (0.01, betas 0.5/0.9), ÷10 at the `g_milestones` fractions of the epochs
    (the official [75, 100, 125, 150] of 200). Generator size: `gen_channels`/`gen_steps`
    default to the official MNIST net (16, 2) below 32 pixels, else the CIFAR net (32, 3).

    Source-specific mode (SSDT, see ssdt.py): every victim image of the batch is added with its
    trigger and the target label; as many of the following images get cross triggers.

    Preset `cpu` (a few epochs, docs/attacks.md): mask_epochs=5 (25 is five times a whole CPU
    schedule) and poison_rate=0.2; G's learning rate still drops at the paper's fractions of the
    epochs, so G settles before the classifier's last epochs.
    """

    name: ClassVar[str] = "iad"
    training_version: ClassVar[int] = 2  # 2: one generator pass over the backdoor and cross sources
    default_poison_rate: ClassVar[float] = 0.1
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"cpu": {"mask_epochs": 5, "poison_rate": 0.2}}

    def __init__(
        self,
        cross_rate: float = 0.1,
        mask_density: float = 0.032,
        lambda_div: float = 1.0,
        lambda_norm: float = 100.0,
        mask_epochs: int = 25,
        lr_g: float = 0.01,
        lr_m: float = 0.01,
        g_milestones: Sequence[float] = (0.375, 0.5, 0.625, 0.75),
        gen_channels: int | None = None,
        gen_steps: int | None = None,
        trigger_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= float(cross_rate) < 1.0 or float(cross_rate) + self.poison_rate > 1.0:
            raise BanError(f"cross_rate must lie in [0, 1) with poison_rate + cross_rate ≤ 1, got {cross_rate}")
        if not 0.0 < float(mask_density) < 1.0:
            raise BanError(f"mask_density must lie in (0, 1), got {mask_density}")
        if int(mask_epochs) < 0 or float(lr_g) <= 0 or float(lr_m) <= 0:
            raise BanError("mask_epochs must be at least 0 and lr_g, lr_m positive")
        if any(not 0.0 < float(f) <= 1.0 for f in g_milestones):
            raise BanError(f"g_milestones are fractions of the training epochs in (0, 1], got {list(g_milestones)}")
        if gen_channels is not None and int(gen_channels) < 1 or gen_steps is not None and int(gen_steps) < 1:
            raise BanError("gen_channels and gen_steps must be at least 1")
        self.cross_rate = float(cross_rate)
        self.mask_density = float(mask_density)
        self.lambda_div = float(lambda_div)
        self.lambda_norm = float(lambda_norm)
        self.mask_epochs = int(mask_epochs)
        self.lr_g = float(lr_g)
        self.lr_m = float(lr_m)
        self.g_milestones = [float(f) for f in g_milestones]
        self.gen_channels = None if gen_channels is None else int(gen_channels)
        self.gen_steps = None if gen_steps is None else int(gen_steps)
        self.trigger_seed = int(trigger_seed)
        self._mask_training = False
        self._opt_g: torch.optim.Optimizer | None = None
        self._sched_g: torch.optim.lr_scheduler.LRScheduler | None = None

    def params(self) -> dict[str, Any]:
        return {
            **super().params(),
            "cross_rate": self.cross_rate,
            "mask_density": self.mask_density,
            "lambda_div": self.lambda_div,
            "lambda_norm": self.lambda_norm,
            "mask_epochs": self.mask_epochs,
            "lr_g": self.lr_g,
            "lr_m": self.lr_m,
            "g_milestones": self.g_milestones,
            "gen_channels": self.gen_channels,
            "gen_steps": self.gen_steps,
            "trigger_seed": self.trigger_seed,
        }

    # ------------------------------------------------------------------ networks
    def build(self, image_shape: tuple[int, int, int], generator: torch.Generator | None) -> None:
        c, h, w = image_shape
        small = min(h, w) < 32
        steps = self.gen_steps or (2 if small else 3)
        channels = self.gen_channels or (16 if small else 32)
        if 2**steps > min(h, w):
            raise BanError(f"a generator with {steps} down-sampling steps does not fit {h}×{w} images; lower gen_steps")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.trigger_seed)
            self.pattern_net = TriggerGenerator(c, c, channels, steps)
            self.mask_net = TriggerGenerator(c, 1, channels, steps)
        self.train(self.training)

    def train(self, mode: bool = True) -> IAD:
        super().train(mode)
        if hasattr(self, "mask_net"):
            self.mask_net.train(mode and self._mask_training)  # M stays frozen outside its pre-training
        return self

    def mask(self, x: Tensor) -> Tensor:
        """M(x) thresholded to ≈ {0, 1}: tanh(20·M(x) − 10)/(2+ε) + 0.5, shape (N, 1, H, W)."""
        return torch.tanh(self.mask_net(x) * 20 - 10) / (2 + EPSILON) + 0.5

    def stamp(self, x: Tensor, source: Tensor) -> tuple[Tensor, Tensor]:
        """(x + (G(source) − x)⊙M(source), G(source)): the trigger of `source` put on `x`."""
        pattern = self.pattern_net(source)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self._mask_training):
            m = self.mask(source)
        return (x + (pattern - x) * m).clamp(0, 1), pattern

    def apply_trigger(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self.stamp(x, x)[0]

    def extra_images(self, x: Tensor, partner: Tensor, generator: torch.Generator) -> Tensor:
        """Cross samples: another image's trigger on x; the label stays."""
        return self.stamp(x, partner)[0]

    def num_extra(self, n: int, n_bd: int) -> int:
        return int(n * self.cross_rate)

    def num_cross_source_specific(self, n_bd: int) -> int:
        """Cross samples of a source-specific batch with `n_bd` victims: as many (TED)."""
        return n_bd

    # ------------------------------------------------------------------ training
    def pretrain_mask(self, x: Tensor, epochs: int, generator: torch.Generator, batch_size: int = 128) -> None:
        """Train M alone on images `x` (stage 1 of IAD), then freeze it."""
        dev = next(self.parameters()).device
        opt = torch.optim.Adam(self.mask_net.parameters(), lr=self.lr_m, betas=(0.5, 0.9))
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, _milestones((0.4, 0.8), max(epochs, 1)), 0.1)
        self.mask_net.requires_grad_(True)
        self._mask_training = True
        self.train(True)
        try:
            for _ in range(epochs):
                perm1 = torch.randperm(len(x), generator=generator)
                perm2 = torch.randperm(len(x), generator=generator)
                for start in range(0, len(x), batch_size):
                    x1 = x[perm1[start : start + batch_size]].to(dev)
                    x2 = x[perm2[start : start + batch_size]].to(dev)
                    m1, m2 = self.mask(x1), self.mask(x2)
                    loss = self.lambda_norm * F.relu(m1 - self.mask_density).mean()
                    loss = loss + self.lambda_div * diversity_loss(x1, x2, m1, m2)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                sched.step()
        finally:
            self._mask_training = False
            self.mask_net.requires_grad_(False)
            self.train(self.training)

    def prepare_training(self, model: nn.Module, data: ImageData, epochs: int, generator: torch.Generator) -> None:
        self.pretrain_mask(data.x, self.mask_epochs, generator)
        self._opt_g = torch.optim.Adam(self.pattern_net.parameters(), lr=self.lr_g, betas=(0.5, 0.9))
        self._sched_g = torch.optim.lr_scheduler.MultiStepLR(self._opt_g, _milestones(self.g_milestones, epochs), 0.1)
        self.train(True)

    def compose_batch(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(inputs, labels, diversity loss) of one training batch: backdoor, then cross, then clean samples."""
        n = len(x)
        partner = x[partner_index(n, x.device)]
        if self.mode == "source-specific":
            # TED's SSDT batch: all victims triggered (added), cross triggers on the next positions, rest clean
            bd_src = x[y == self.victim]
            nb = len(bd_src)
            end = min(nb + self.num_cross_source_specific(nb), n)
            cross = torch.arange(nb, end, device=x.device)
            clean = torch.arange(end, n, device=x.device)
            bd_y = torch.full((nb,), self.target, dtype=y.dtype, device=y.device)
        else:
            bd, cross = self.batch_roles(y)
            keep = torch.ones(n, dtype=torch.bool, device=x.device)
            keep[bd] = False
            keep[cross] = False
            clean = torch.nonzero(keep).flatten()
            bd_src, bd_y = x[bd], self.target_labels(y[bd])
        # One pass of G over the backdoor and cross sources together: its BatchNorm then normalises a
        # mixed batch, as its running statistics do at test time. Two passes gave an SSDT batch of
        # victims only its own statistics, and the trigger learnt did not survive eval mode
        # (ResNet18-1/4: ASR 0.98 with victim-batch statistics, 0.005 with running ones).
        nb, nc = len(bd_src), len(cross)
        sources = torch.cat([bd_src, partner[cross]])
        div = x.new_zeros(())
        if len(sources):
            triggered, pattern = self.stamp(torch.cat([bd_src, x[cross]]), sources)
            inputs, labels = [triggered, x[clean]], [torch.cat([bd_y, y[cross]]), y[clean]]
            m = min(nb, nc)
            if m:
                div = diversity_loss(bd_src[:m], partner[cross][:m], pattern[:m], pattern[nb : nb + m])
        else:
            inputs, labels = [x[clean]], [y[clean]]
        return torch.cat(inputs), torch.cat(labels), div

    def training_loss(self, model: nn.Module, x: Tensor, y: Tensor, augment: Any, generator: torch.Generator) -> Tensor:
        inputs, labels, div = self.compose_batch(x, y)
        return F.cross_entropy(model(augment(inputs, generator)), labels) + self.lambda_div * div

    def step(self) -> None:
        if self._opt_g is not None:
            self._opt_g.step()

    def end_epoch(self, epoch: int) -> None:
        if self._sched_g is not None:
            self._sched_g.step()
