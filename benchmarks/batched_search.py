"""What batching the per-class search buys: NC, Tabor, FeatureRE and Unicorn, batched vs a Python loop.

Same model (the reference zoo's BadNets small CNN, ban.zoo), same clean images, same settings; only `batched`
differs (the loop draws its random initialisations per class, so norms/values differ slightly).
Usage: python benchmarks/batched_search.py [--detectors nc featurere] [--threads 1]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ban.clean_data import CleanData
from ban.detectors import create_detector
from ban.zoo import Zoo, cache_folder

SETTINGS = {
    "nc": {"n_samples": 100, "batch_size": 32, "epochs": 5},
    "tabor": {"n_samples": 100, "batch_size": 32, "epochs": 5},
    "featurere": {"n_samples": 100, "warmup_epochs": 3, "epochs": 5, "filters": 8, "blocks": 3},
    "unicorn": {"n_samples": 100, "pretrain_epochs": 1, "epochs": 2, "inner_steps": 2, "filters": 8, "blocks": 3},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detectors", nargs="*", default=list(SETTINGS))
    parser.add_argument("--model", default="badnets")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    z = Zoo(cache_folder(Path(__file__).resolve().parents[1]))
    clean = CleanData.from_images(z.defender)
    model = z.get(args.model).model
    print(f"{'detector':>10} {'batched s':>10} {'looped s':>10} {'speed-up':>9}  target (batched / looped)")
    for name in args.detectors:
        seconds, targets = {}, {}
        for batched in (True, False):
            det = create_detector(name, device=args.device, quiet=True, batched=batched, **SETTINGS[name])
            v = det.detect(model, clean)
            seconds[batched] = v.seconds
            key = "norms" if "norms" in v.details else "mixed_value"
            values = v.details[key]
            targets[batched] = min(range(len(values)), key=values.__getitem__)
        print(
            f"{name:>10} {seconds[True]:10.1f} {seconds[False]:10.1f} {seconds[False] / seconds[True]:8.2f}x"
            f"  {targets[True]} / {targets[False]}",
            flush=True,
        )


if __name__ == "__main__":
    main()
