"""BAN's noise with an additive bias shift, run through `ban_restarts.py`: a probe, not a detector setting.

BAN perturbs a normalisation layer's bias multiplicatively, β' = β(1 + ξ) with |ξ| ≤ ε, so a channel whose
bias is negative (dormant on clean images, as backdoor channels are said to be) can never be switched on.
This probe replaces that term by a shift in units of the layer's scale, β' = β + k·ξ·|γ| (k = `--shift`):
the normalised pre-activation moves by up to k·ε standard deviations, either way. Everything else is the
default detector; the rows are `ban_restarts.py`'s (its `--summary` scores them).

    python benchmarks/ban_bias_shift.py runs/fmnist-r18 --out runs/fmnist-r18/restarts-shift1.jsonl --seeds 2 --shift 1
    python benchmarks/ban_restarts.py runs/fmnist-r18 --out runs/fmnist-r18/restarts-shift1.jsonl --summary
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path
from typing import Any

from torch import Tensor, nn

import ban.blocks.noise as noise_module

_HOOK = noise_module.NeuronNoise._hook


def shifted_hook(k: float) -> Any:
    """NeuronNoise._hook with β·ξ replaced by k·|γ|·ξ on normalisation layers (one noise group, as BAN's search)."""

    def make(self: noise_module.NeuronNoise, i: int) -> Any:
        plain = _HOOK(self, i)

        def hook(module: nn.Module, inputs: tuple[Tensor, ...], out: Tensor) -> Tensor:
            if self.groups > 1 or self.kind != "norm" or self.mask is not None or not self.noise_on:
                return plain(module, inputs, out)
            shape = noise_module._shape_for
            new = out + shape(module, self.delta[i], out) * (out - shape(module, module.bias, out))
            xi = self.xi[i]
            return new if xi is None else new + shape(module, xi * k * module.weight.abs(), out)

        return hook

    return make


def main() -> None:
    args = sys.argv[1:]
    k = 1.0
    if "--shift" in args:
        at = args.index("--shift")
        k = float(args[at + 1])
        del args[at : at + 2]
    noise_module.NeuronNoise._hook = shifted_hook(k)  # type: ignore[method-assign]
    sys.argv = ["ban_restarts.py", *args]
    runpy.run_path(str(Path(__file__).with_name("ban_restarts.py")), run_name="__main__")


if __name__ == "__main__":
    main()
