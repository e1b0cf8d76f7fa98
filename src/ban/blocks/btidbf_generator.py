"""BTI-DBF's trigger inversion by decoupling benign features, shared by the detector and BTI-DBF(U).

The pieces (Xu et al., ICLR 2024; official code's ``pretrain.py`` and ``btidbf.py``):

- the benign-feature mask (`InversionSettings.mask_config`: tanh mask without a sparsity term, or
  BAN's clamped mask + λ·L1 for BTI-DBF*), learned by ``ban.blocks.mask``;
- the UNet generator G (`build_generator`; by default the code's linear UNet from normalised image
  to normalised image, `NormalisedGenerator`);
- G's pre-training to an identity that keeps predictions and features (`pretrain_generator`) and
  its training to keep the benign features and push the backdoor features away under an input
  budget (`train_generator`), both driven by `GeneratorTraining`.

`InversionSettings` is the typed, frozen recipe of all of it, its epoch counts already scaled by
the caller's budget; ``ban.detectors.btidbf`` derives it from the detector's settings and
``ban.mitigations.btidbf_unlearn`` runs it round after round.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ban.blocks.feature_inversion import input_mean, input_std
from ban.blocks.mask import MaskConfig
from ban.blocks.unet import UNet
from ban.data.augment import Augment, identity
from ban.errors import BanError
from ban.models import get_split
from ban.progress import Bar
from ban.utils import batches, global_rng_from

MASK_OBJECTIVES = ("btidbf", "ban")
GENERATOR_OUTPUTS = ("normalised", "sigmoid", "residual")


class NormalisedGenerator(nn.Module):
    """BTI-DBF's generator: a UNet with a linear output that maps normalised images to normalised images.

    The official code feeds the UNet the normalised image and hands its raw output to the classifier
    (no sigmoid, no clamp). ban's models normalise internally, so this wrapper takes and returns pixel
    images: G(x) = std·U((x − mean)/std) + mean, unbounded like the original.
    """

    def __init__(self, unet: UNet, mean: Tensor, std: Tensor) -> None:
        super().__init__()
        if unet.residual or not unet.linear:
            raise BanError("NormalisedGenerator needs a UNet built with linear=True")
        self.unet = unet
        self.register_buffer("mean", mean.detach().clone())
        self.register_buffer("std", std.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        return self.unet((x - self.mean) / self.std) * self.std + self.mean


def check_generator_output(output: str) -> str:
    """`output` if it names a generator form, else a BanError listing the choices."""
    if output not in GENERATOR_OUTPUTS:
        raise BanError(f"unknown generator output '{output}'; choose one of {', '.join(GENERATOR_OUTPUTS)}")
    return output


def check_mask_objective(objective: str) -> str:
    """`objective` if it names a mask objective, else a BanError listing the choices."""
    if objective not in MASK_OBJECTIVES:
        raise BanError(f"unknown mask objective '{objective}'; choose one of {', '.join(MASK_OBJECTIVES)}")
    return objective


def build_generator(
    model: nn.Module,
    channels: int,
    filters: int,
    blocks: int,
    output: str,
    device: torch.device,
    weights: torch.Generator,
) -> nn.Module:
    """BTI-DBF's UNet generator in train mode, its initial weights drawn from `weights`. `output`:
    "normalised" (the official code: linear UNet in the model's normalised input space), "sigmoid"
    (UNet with a sigmoid, pixels in [0, 1]) or "residual" (clamp(x + UNet(x)), the identity at the start)."""
    kind = check_generator_output(output)
    with global_rng_from(weights):
        unet = UNet(channels, channels, filters, blocks, linear=kind == "normalised", residual=kind == "residual")
    if kind == "normalised":
        gen: nn.Module = NormalisedGenerator(
            unet, input_mean(model, channels, device), input_std(model, channels, device)
        )
    else:
        gen = unet
    return gen.to(device).train()


@dataclass(frozen=True)
class GeneratorTraining:
    """What G's pre-training and training steps read: the model's input std (1×C×1×1; input MSEs are
    measured in normalised space), the batch augmentation, Adam's lr, the batch size and the two bounds
    (input MSE `norm_bound`, benign-feature MSE `feat_bound`) above which training only pulls G back."""

    std: Tensor
    augment: Callable[[Tensor, torch.Generator | None], Tensor]
    lr: float
    batch_size: int
    norm_bound: float
    feat_bound: float


@dataclass(frozen=True)
class InversionSettings:
    """BTI-DBF's trigger inversion: the benign-feature mask, the generator and its training.

    Epoch counts (`mask_epochs`, `pretrain_epochs`, `epochs`) are the ones run: scaled by the budget
    of whoever built these settings. Defaults are the official code's (cfg.py).
    """

    batch_size: int = 128
    mask_epochs: int = 20
    mask_lr: float = 0.01
    mask_objective: str = "btidbf"
    mask_lambda: float = 0.75
    mask_train_mode: bool = True
    pretrain_epochs: int = 50
    epochs: int = 30
    lr: float = 1e-3
    norm_bound: float = 0.3
    feat_bound: float = 3.0
    filters: int = 32
    blocks: int = 4
    augment: bool = True
    generator: str = "normalised"

    def __post_init__(self) -> None:
        check_mask_objective(self.mask_objective)
        check_generator_output(self.generator)

    def mask_config(self) -> MaskConfig:
        """BTI-DBF: tanh mask, no L1 term; BAN's objective (BTI-DBF*): clamped mask + λ·L1."""
        ban = self.mask_objective == "ban"
        return MaskConfig(
            parametrization="clamp" if ban else "tanh",
            lam=self.mask_lambda if ban else 0.0,
            lr=self.mask_lr,
            epochs=self.mask_epochs,
            batch_size=self.batch_size,
            cache_features=not self.mask_train_mode,
            train_mode=self.mask_train_mode,
        )

    def build_generator(
        self, model: nn.Module, channels: int, device: torch.device, weights: torch.Generator
    ) -> nn.Module:
        """The UNet generator these settings describe, its initial weights drawn from `weights`."""
        return build_generator(model, channels, self.filters, self.blocks, self.generator, device, weights)

    def training(self, model: nn.Module, channels: int, device: torch.device, flip: bool) -> GeneratorTraining:
        """The generator's training recipe for `model`: crop+flip augmentation when `augment` (flip when `flip`)."""
        return GeneratorTraining(
            std=input_std(model, channels, device),
            augment=Augment(4, flip) if self.augment else identity,
            lr=self.lr,
            batch_size=self.batch_size,
            norm_bound=self.norm_bound,
            feat_bound=self.feat_bound,
        )


def _mse(a: Tensor, b: Tensor) -> Tensor:
    return (a - b).pow(2).mean()


def _augmented_batches(x: Tensor, cfg: GeneratorTraining, g: torch.Generator) -> Iterator[Tensor]:
    """One epoch of shuffled, augmented batches of `x`."""
    perm = torch.randperm(len(x), generator=g).to(x.device)
    for sl in batches(len(x), cfg.batch_size):
        yield cfg.augment(x[perm[sl]], g)


def _epochs(title: str, epochs: int, quiet: bool, stop: Callable[[], bool] | None) -> Iterator[Bar]:
    """The progress bar, once per epoch, for `epochs` epochs or until `stop()` (checked before each)."""
    with Bar(title, epochs, quiet=quiet) as bar:
        for _ in range(epochs):
            if stop is not None and stop():
                return
            yield bar


def pretrain_generator(
    model: nn.Module,
    gen: nn.Module,
    x: Tensor,
    epochs: int,
    cfg: GeneratorTraining,
    g: torch.Generator,
    quiet: bool,
    stop: Callable[[], bool] | None = None,
) -> None:
    """Make G an identity that keeps the model's predictions and features (BTI-DBF's pretrain.py).

    loss = CE(softmax f(x), softmax f(G(x))) + MSE(g(x), g(G(x))) + w·MSE(x, G(x)), w = 100 while the input
    MSE exceeds 0.1, else 0.01 (input MSE in normalised space). The CE term is the code's literal
    `CrossEntropyLoss()(softmax(clean_out), softmax(gen_out))`: the clean softmax is read as logits and
    G's softmax is the soft target (the gradient reaches G through the target).
    """
    split, std = get_split(model), cfg.std
    opt = torch.optim.Adam(gen.parameters(), lr=cfg.lr)
    for bar in _epochs("btidbf generator pretrain", epochs, quiet, stop):
        for xb in _augmented_batches(x, cfg, g):
            with torch.no_grad():
                f_x = split.features(xb)
                p_x = F.softmax(split.head(f_x), 1)
            xg = gen(xb)
            f_g = split.features(xg)
            near = _mse(xb / std, xg / std)
            weight = 100.0 if float(near.detach()) > 0.1 else 0.01
            loss = F.cross_entropy(p_x, F.softmax(split.head(f_g), 1)) + _mse(f_x, f_g) + weight * near
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        bar.advance()


def train_generator(
    model: nn.Module,
    gen: nn.Module,
    mask: Tensor,
    x: Tensor,
    epochs: int,
    cfg: GeneratorTraining,
    g: torch.Generator,
    quiet: bool,
    stop: Callable[[], bool] | None = None,
) -> dict[str, float]:
    """Train G to keep benign features (m⊙g) and push backdoor features ((1−m)⊙g) away; returns last losses.

    loss = MSE(x, G(x)) while MSE(x, G(x)) > `norm_bound` or the benign-feature MSE > `feat_bound`,
    else −MSE_backdoor + 0.01·MSE_benign (means over all elements; input MSE in normalised space).
    """
    split, std = get_split(model), cfg.std
    opt = torch.optim.Adam(gen.parameters(), lr=cfg.lr)
    last: dict[str, float] = {}
    for bar in _epochs("btidbf generator", epochs, quiet, stop):
        for xb in _augmented_batches(x, cfg, g):
            with torch.no_grad():
                f_x = split.features(xb)
            xg = gen(xb)
            f_g = split.features(xg)
            benign = _mse(mask * f_x, mask * f_g)
            backdoor = _mse((1 - mask) * f_x, (1 - mask) * f_g)
            near = _mse(xb / std, xg / std)
            if float(near.detach()) > cfg.norm_bound or float(benign.detach()) > cfg.feat_bound:
                loss = near
            else:
                loss = -backdoor + 0.01 * benign
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            last = {
                "input_mse": float(near.detach()),
                "benign_mse": float(benign.detach()),
                "backdoor_mse": float(backdoor.detach()),
            }
        bar.advance(info=f"backdoor mse {last['backdoor_mse']:.3f}")
    return last
