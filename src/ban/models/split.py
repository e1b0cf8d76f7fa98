"""The `features | head` split of any model.

Registered architectures declare theirs (`SplitModel.features` / `.head`). An unknown
`nn.Module` is split at the input of its last `nn.Linear`: features = what that layer receives,
head = that layer (the model's output must be that layer's output).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from ban.errors import BanError
from ban.models.base import SplitModel


class _Stop(Exception):
    def __init__(self, value: Tensor) -> None:
        self.value = value


@dataclass
class Split:
    """Callables `features(x)` and `head(f)` with `head(features(x)) == model(x)`."""

    model: nn.Module
    linear: nn.Linear | None = None

    def features(self, x: Tensor) -> Tensor:
        if isinstance(self.model, SplitModel):
            return self.model.features(x)
        assert self.linear is not None

        def grab(_m: nn.Module, inputs: tuple[Tensor, ...]) -> None:
            raise _Stop(inputs[0])

        handle = self.linear.register_forward_pre_hook(grab)
        try:
            self.model(x)
        except _Stop as stop:
            return stop.value
        finally:
            handle.remove()
        raise BanError("the model never called its last nn.Linear; it has no usable features | head split")

    def head(self, f: Tensor) -> Tensor:
        if isinstance(self.model, SplitModel):
            return self.model.head(f)
        assert self.linear is not None
        return self.linear(f)


def get_split(model: nn.Module) -> Split:
    """The model's declared split, or one at the input of its last `nn.Linear`."""
    if isinstance(model, SplitModel):
        return Split(model)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise BanError(
            f"model {type(model).__name__} has no nn.Linear layer, so ban cannot split it into features | head; "
            "wrap it in a ban.models.SplitModel that declares features() and head()"
        )
    return Split(model, linears[-1])
