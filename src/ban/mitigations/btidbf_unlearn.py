"""BTI-DBF(U) (Xu et al., ICLR 2024): unlearn the backdoor with poisons from BTI-DBF's trigger generator.

Rounds of {reverse → unlearn} (official ``btidbfu.py``):

- reverse: on a copy of the current model, learn BTI-DBF's benign-feature mask, then train the UNet
  generator G to keep benign and push backdoor features away (``ban.blocks.btidbf_generator``: the
  same mask, generator, pre-training and training code as the BTI-DBF detector; G is pre-trained once
  to be an identity and then carried across rounds);
- unlearn: fine-tune the model (Adam lr 1e-4, BatchNorm in train mode) on clean batches in which
  ``int(0.1·B + 1)`` random images are replaced by G(x) with their TRUE labels;
  ``loss = CE(f(x_mix), y) + MSE(g(x), g(x_mix))`` (g = ``features``).

Defaults (official README/``cfg.py``): 2500 clean images with crop+flip augmentation, batch 128,
5 rounds, mask 20 epochs, generator pre-training 50 and training 30 epochs, unlearning 30 epochs.
Differences from the official code, stated: in rounds after the first it adds CE(f(G(x)), detected
target) to the generator loss and keeps one generator optimiser across rounds; ban reuses the
detector's generator training as it is (no target term; a fresh Adam per round) and reports the
target BTI-DBF detects after the first round. ``budget`` scales rounds and every epoch count.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ban.blocks.btidbf_generator import pretrain_generator, train_generator
from ban.blocks.mask import learn_feature_mask
from ban.clean_data import CleanData
from ban.detectors.btidbf import BTIDBF
from ban.evaluate import predict
from ban.mitigations.base import Mitigation
from ban.mitigations.finetune_loop import FineTuneConfig, fine_tune
from ban.mitigations.settings import MitigationSettings
from ban.models import get_split
from ban.utils import batches, make_generator


class GeneratedPoisons:
    """Replaces `int(fraction·B + 1)` random images of a batch by G(x) (labels unchanged)."""

    def __init__(self, generator_net: nn.Module, fraction: float, rng: torch.Generator) -> None:
        self.net = generator_net
        self.fraction = fraction
        self.rng = rng

    @torch.no_grad()
    def __call__(self, x: Tensor) -> Tensor:
        n = min(len(x), int(self.fraction * len(x) + 1))
        idx = torch.randperm(len(x), generator=self.rng)[:n].to(x.device)
        mixed = x.clone()
        mixed[idx] = self.net(x[idx]).clamp(0, 1)
        return mixed


def unlearning_objective(poisons: GeneratedPoisons) -> Any:
    """CE on the poisoned batch with true labels + MSE between clean and poisoned-batch features."""

    def objective(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        split = get_split(model)
        mixed = poisons(x)
        f_clean, f_mixed = split.features(x), split.features(mixed)
        return F.cross_entropy(split.head(f_mixed), y) + F.mse_loss(f_mixed, f_clean)

    return objective


@dataclass(frozen=True, kw_only=True)
class BTIDBFUnlearnSettings(MitigationSettings):
    """The official BTI-DBF(U): 5 rounds of 30 unlearning epochs, Adam lr 1e-4, batch 128, 10% of each
    batch replaced by generated poisons, crop + flip augmentation. The settings of the trigger
    inversion (``filters``, ``blocks``, ``mask_epochs``, ...) are the BTI-DBF detector's."""

    augment: bool = True
    rounds: int = 5
    unlearn_epochs: int = 30
    lr: float = 1e-4
    batch_size: int = 128
    poison_fraction: float = 0.1

    scaled_fields: ClassVar[tuple[str, ...]] = ("rounds", "unlearn_epochs")
    positive: ClassVar[tuple[str, ...]] = ("clean_samples", "rounds", "unlearn_epochs", "lr", "batch_size")


class BTIDBFUnlearn(Mitigation):
    """BTI-DBF(U): `rounds` × {invert the trigger with BTI-DBF's generator; unlearn its poisons}."""

    name: ClassVar[str] = "btidbf-u"
    Settings: ClassVar[type[MitigationSettings]] = BTIDBFUnlearnSettings
    params: BTIDBFUnlearnSettings

    def __init__(self, **settings: Any) -> None:
        """Its own settings (`BTIDBFUnlearnSettings`, `preset`); every other one goes to the BTI-DBF inverter."""
        own = {*self.Settings.names(), "preset"}
        super().__init__(**{k: v for k, v in settings.items() if k in own})
        p = self.params
        self.inverter = BTIDBF(
            seed=p.seed,
            device=p.device,
            quiet=p.quiet,
            budget=p.budget,
            n_samples=p.clean_samples,
            batch_size=p.batch_size,
            augment=p.augment,
            **{k: v for k, v in settings.items() if k not in own},
        )

    def unlearn_config(self) -> FineTuneConfig:
        """One round's unlearning: Adam (the repair's), constant lr, BatchNorm in train mode."""
        p = self.params
        return FineTuneConfig(
            epochs=p.scaled(p.unlearn_epochs),
            batch_size=p.batch_size,
            lr=p.lr,
            weight_decay=0.0,
            schedule="constant",
            augment=p.augment,
        )

    def settings(self) -> dict[str, Any]:
        p = self.params
        inverter = {k: v for k, v in self.inverter.settings().items() if k not in ("threshold",)}
        return {
            "budget": p.budget,
            "clean_samples": p.clean_samples,
            "paper_rounds": p.rounds,
            "rounds": p.scaled(p.rounds),
            "poison_fraction": p.poison_fraction,
            "optimizer": "adam",
            "unlearn": self.unlearn_config().to_dict(),
            "inverter": inverter,
        }

    def repair(self, model: nn.Module, clean: CleanData) -> tuple[nn.Module, dict[str, Any]]:
        data, dev = self.prepare(model, clean)
        x, y = data.x.to(dev), data.y.to(dev)
        g = make_generator(self.seed)
        inv = self.inverter.inversion()  # the typed recipe, epoch counts scaled by the budget
        weights = make_generator(self.seed)  # the UNet's initial weights, a stream of their own
        gen = inv.build_generator(model, x.shape[1], dev, weights)
        cfg = inv.training(model, x.shape[1], dev, data.flip)
        model.eval()
        pretrain_generator(model, gen, x, inv.pretrain_epochs, cfg, g, self.quiet)
        p = self.params
        rounds, config = p.scaled(p.rounds), self.unlearn_config()
        opt = torch.optim.Adam(model.parameters(), lr=p.lr)
        log: list[dict[str, Any]] = []
        detected: int | None = None
        for r in range(rounds):
            work = copy.deepcopy(model)
            mask = learn_feature_mask(work, x, y, inv.mask_config(), generator=g, device=dev, quiet=self.quiet)
            work.eval()
            gen.train()
            losses = train_generator(work, gen, mask.value(), x, inv.epochs, cfg, g, self.quiet)
            gen.eval()
            if r == 0:
                with torch.no_grad():
                    inverted = torch.cat([gen(x[sl]) for sl in batches(len(x), 256)])
                counts = torch.bincount(predict(work, inverted, device=dev), minlength=data.num_classes)
                detected = int(counts.argmax())
            poisons = GeneratedPoisons(gen, p.poison_fraction, g)
            history = fine_tune(
                model,
                data,
                config,
                objective=unlearning_objective(poisons),
                optimizer=opt,
                generator=g,
                device=dev,
                quiet=self.quiet,
                description=f"BTI-DBF(U) round {r + 1}/{rounds}",
            )
            log.append({"round": r + 1, "generator": losses, "unlearn": history})
        return model, {"detected_target": detected, "rounds": log, "clean_used": len(data)}
