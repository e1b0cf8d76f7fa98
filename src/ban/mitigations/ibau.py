"""I-BAU: adversarial unlearning of backdoors via implicit hypergradient (Zeng et al., ICLR 2022).

A minimax game on the clean images, repeated for ``rounds`` rounds:

- inner: a universal perturbation δ (1×C×H×W, pixel space) maximising
  ``CE(f(x + δ), f(x)'s prediction) − 0.001·‖δ‖²``: one pass over the clean images, SGD lr 10,
  δ starting at 0, no projection (``UniversalPerturbation``);
- outer: for every batch, update θ to minimise ``CE(f(x + δ·1[portion of the batch]), y)`` with the
  implicit hypergradient: K fixed-point iterations ``v ← (∂Φ/∂δ)ᵀ v + ∂L_outer/∂δ`` of the inner
  map Φ(δ, θ) = δ − 0.1 ∇_δ L_inner(δ, θ) (L_inner on the first clean batch with true labels),
  then ``∇θ L_outer + (∂Φ/∂θ)ᵀ v``. The loop's objective returns the surrogate
  ``L_outer + ⟨Φ(δ, θ), stopgrad(v)⟩`` whose θ-gradient is exactly that hypergradient.

Defaults from BackdoorBench ``defense/i-bau.py`` and ``config/defense/i-bau/config.yaml``: 5% clean
data, 5 rounds, K = 5, Adam lr 1e-4 (weight decay 0), batch 256, the perturbation on 1% of each
batch (at least one image here), model in eval mode throughout (BatchNorm statistics frozen).
Difference: ban perturbs pixels in [0, 1] (models normalise inside), BackdoorBench perturbs
normalised inputs, so the same δ step size acts about 1/std times larger here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ban.clean_data import CleanData
from ban.data.dataset import ImageData
from ban.mitigations.base import Mitigation
from ban.mitigations.finetune_loop import FineTuneConfig, fine_tune
from ban.mitigations.settings import MitigationSettings
from ban.utils import batches, eval_mode, make_generator


class UniversalPerturbation(nn.Module):
    """One additive perturbation δ (1×C×H×W, pixel units) shared by every image: the inner player."""

    def __init__(self, image_shape: tuple[int, int, int], lr: float = 10.0, weight: float = 0.001) -> None:
        super().__init__()
        self.delta = nn.Parameter(torch.zeros(1, *image_shape))
        self.lr = lr
        self.weight = weight

    def forward(self, x: Tensor) -> Tensor:
        return x + self.delta

    def fit(
        self, model: nn.Module, data: ImageData, batch_size: int, generator: torch.Generator, device: torch.device
    ) -> float:
        """One shuffled pass: ascend CE against the model's own predictions, minus the L2 penalty; last loss."""
        self.to(device)
        opt = torch.optim.SGD([self.delta], lr=self.lr)
        perm = torch.randperm(len(data), generator=generator)
        loss_value = 0.0
        with eval_mode(model):
            for sl in batches(len(data), batch_size):
                x = data.x[perm[sl]].to(device)
                with torch.no_grad():
                    pseudo = model(x).argmax(1)
                loss = -F.cross_entropy(model(self(x)), pseudo) + self.weight * self.delta.pow(2).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss_value = float(loss.item())
        for p in model.parameters():
            p.grad = None
        return loss_value


def hypergradient_objective(
    delta: Tensor,
    x_inner: Tensor,
    y_inner: Tensor,
    fixed_point_steps: int,
    inner_lr: float,
    inner_weight: float,
    portion: float,
    generator: torch.Generator,
    outer_losses: list[float],
) -> Any:
    """The per-batch objective for `fine_tune` whose θ-gradient is I-BAU's implicit hypergradient."""

    def objective(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        d = delta.detach().clone().requires_grad_(True)
        n = max(1, int(len(x) * portion))
        chosen = torch.zeros(len(x), 1, 1, 1, device=x.device)
        chosen[torch.randperm(len(x), generator=generator)[:n].to(x.device)] = 1.0
        outer = F.cross_entropy(model(x + chosen * d), y)
        (g_outer,) = torch.autograd.grad(outer, d, retain_graph=True)
        inner = -F.cross_entropy(model(x_inner + d), y_inner) + inner_weight * d.pow(2).sum()
        (g_inner,) = torch.autograd.grad(inner, d, create_graph=True)
        mapped = d - inner_lr * g_inner
        v = torch.zeros_like(d)
        for _ in range(fixed_point_steps):
            (jv,) = torch.autograd.grad(mapped, d, grad_outputs=v, retain_graph=True)
            v = jv + g_outer
        outer_losses.append(float(outer.item()))
        return outer + (mapped * v.detach()).sum()

    return objective


@dataclass(frozen=True, kw_only=True)
class IBAUSettings(MitigationSettings):
    """BackdoorBench's I-BAU: 5 rounds, K = 5 fixed-point steps, Adam lr 1e-4, batch 256, inner lr
    0.1, perturbation SGD lr 10 with L2 weight 0.001, on 1% of each batch."""

    augment: bool = True
    rounds: int = 5
    fixed_point_steps: int = 5
    batch_size: int = 256
    lr: float = 1e-4
    inner_lr: float = 0.1
    perturbation_lr: float = 10.0
    perturbation_weight: float = 0.001
    portion: float = 0.01

    scaled_fields: ClassVar[tuple[str, ...]] = ("rounds",)
    positive: ClassVar[tuple[str, ...]] = ("clean_samples", "rounds", "batch_size", "lr")


class IBAU(Mitigation):
    """`rounds` rounds of {fit a universal perturbation; one epoch of hypergradient unlearning}."""

    name: ClassVar[str] = "ibau"
    Settings: ClassVar[type[MitigationSettings]] = IBAUSettings
    params: IBAUSettings

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "optimizer": "adam"}

    def repair(self, model: nn.Module, clean: CleanData) -> tuple[nn.Module, dict[str, Any]]:
        data, dev = self.prepare(model, clean)
        p = self.params
        rounds = p.scaled(p.rounds)
        config = FineTuneConfig(
            epochs=1,
            batch_size=p.batch_size,
            lr=p.lr,
            weight_decay=0.0,
            schedule="constant",
            train_mode=False,
            augment=p.augment,
        )
        g = make_generator(p.seed)
        opt = torch.optim.Adam(model.parameters(), lr=p.lr)
        x_inner = data.x[: p.batch_size].to(dev)
        y_inner = data.y[: p.batch_size].to(dev)
        log: list[dict[str, float]] = []
        for r in range(rounds):
            pert = UniversalPerturbation(data.image_shape, p.perturbation_lr, p.perturbation_weight)
            inner_loss = pert.fit(model, data, p.batch_size, g, dev)
            outer_losses: list[float] = []
            objective = hypergradient_objective(
                pert.delta,
                x_inner,
                y_inner,
                p.fixed_point_steps,
                p.inner_lr,
                p.perturbation_weight,
                p.portion,
                g,
                outer_losses,
            )
            fine_tune(
                model,
                data,
                config,
                objective=objective,
                optimizer=opt,
                generator=g,
                device=dev,
                quiet=p.quiet,
                description=f"I-BAU round {r + 1}/{rounds}",
            )
            log.append(
                {
                    "round": r + 1,
                    "inner_loss": inner_loss,
                    "perturbation_l2": float(pert.delta.detach().norm()),
                    "outer_loss": sum(outer_losses) / max(len(outer_losses), 1),
                }
            )
        return model, {"rounds": log, "clean_used": len(data)}
