"""Training and inference throughput (images/s) of every architecture at width 1 and 1/4.

Usage: python benchmarks/train_speed.py [--size 32] [--channels 3] [--batch 64] [--steps 5] [--device auto]
Numbers are comparable only within one run on one machine.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from ban.models import create_model, list_models
from ban.utils import resolve_device


def throughput(arch: str, width: float, args: argparse.Namespace, device: torch.device) -> tuple[float, float]:
    model = create_model(arch, 10, args.channels, width, seed=0).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(args.batch, args.channels, args.size, args.size, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)

    def train_step() -> None:
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    def infer_step() -> None:
        with torch.no_grad():
            model(x)

    rates = []
    for step, mode in ((train_step, True), (infer_step, False)):
        model.train(mode)
        step()  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        rates.append(args.steps * args.batch / (time.perf_counter() - start))
    return rates[0], rates[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--widths", default="1,0.25")
    p.add_argument("--archs", default=",".join(list_models()))
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    device = resolve_device(args.device)
    print(
        f"device {device}, threads {torch.get_num_threads()}, input {args.channels}x{args.size}x{args.size}, "
        f"batch {args.batch}, {args.steps} timed steps"
    )
    print(f"{'arch':<16} {'width':>5} {'train img/s':>12} {'infer img/s':>12}")
    for arch in args.archs.split(","):
        for width in (float(w) for w in args.widths.split(",")):
            tr, inf = throughput(arch, width, args, device)
            print(f"{arch:<16} {width:>5.2f} {tr:>12.1f} {inf:>12.1f}", flush=True)


if __name__ == "__main__":
    main()
