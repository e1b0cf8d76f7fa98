"""Sharpness-aware minimisation as an optimiser wrapper (SAM, Foret et al. 2021; ASAM, Kwon et al. 2021).

``SAM(params, base=torch.optim.SGD, rho=2.0, adaptive=True, lr=..., momentum=...)`` wraps a base
optimiser. ``step(closure)`` needs the closure (zero the gradients, compute the loss, backward):

1. the closure gives ∇L(w);
2. ascend to w + e with e = ρ · T² ∇L / ‖T ∇L‖₂, where T = |w| elementwise for ASAM
   (``adaptive=True``) and T = 1 for plain SAM; the norm runs over all parameters together;
3. the closure again gives ∇L(w + e); restore w and let the base optimiser step with that gradient.

It returns the loss at w (the first closure call). The wrapper shares ``param_groups`` with the
base optimiser, so learning-rate schedulers built on it drive the base optimiser.
FT-SAM (Zhu et al., ICCV 2023) uses ASAM with ρ = 2 on top of SGD.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from ban.errors import BanError


class SAM(torch.optim.Optimizer):
    """A two-pass optimiser: perturb the weights towards higher loss, then step with the gradient there."""

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        base: type[torch.optim.Optimizer] = torch.optim.SGD,
        rho: float = 2.0,
        adaptive: bool = True,
        eps: float = 1e-12,
        **base_kwargs: Any,
    ) -> None:
        if rho < 0:
            raise BanError(f"SAM's rho must be non-negative, got {rho}")
        super().__init__(params, dict(rho=rho, adaptive=adaptive, **base_kwargs))
        self.base_optimizer = base(self.param_groups, **base_kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.defaults.update(self.base_optimizer.defaults)
        self.eps = eps

    def _scaled(self, p: Tensor, group: dict[str, Any]) -> Tensor:
        """T·∇L for one parameter."""
        assert p.grad is not None
        return p.abs() * p.grad if group["adaptive"] else p.grad

    @torch.no_grad()
    def grad_norm(self) -> Tensor:
        """‖T ∇L‖₂ over all parameters with a gradient."""
        norms = [
            self._scaled(p, group).norm(p=2)
            for group in self.param_groups
            for p in group["params"]
            if p.grad is not None
        ]
        if not norms:
            return torch.zeros(())
        return torch.stack([n.to(norms[0].device) for n in norms]).norm(p=2)

    @torch.no_grad()
    def ascend(self) -> None:
        """w ← w + e (remembering e)."""
        scale_norm = self.grad_norm()
        for group in self.param_groups:
            scale = group["rho"] / (scale_norm + self.eps)
            for p in group["params"]:
                if p.grad is None:
                    continue
                t2 = p.pow(2) if group["adaptive"] else 1.0
                e = t2 * p.grad * scale.to(p.device)
                p.add_(e)
                self.state[p]["e"] = e

    @torch.no_grad()
    def descend_back(self) -> None:
        """w ← w − e (undo `ascend`)."""
        for group in self.param_groups:
            for p in group["params"]:
                e = self.state[p].pop("e", None)
                if e is not None:
                    p.sub_(e)

    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor:  # type: ignore[override]
        if closure is None:
            raise BanError("SAM needs a closure that zeroes the gradients, computes the loss and calls backward()")
        with torch.enable_grad():
            loss = closure()
        self.ascend()
        with torch.enable_grad():
            closure()
        self.descend_back()
        self.base_optimizer.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base_optimizer.zero_grad(set_to_none=set_to_none)
