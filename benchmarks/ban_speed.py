"""Time BAN's `paper` and `faithful` presets on the same models in one run and print the speed ratio.

Usage: python benchmarks/ban_speed.py [--budget 1.0] [--models badnets,clean] [--threads 1]
Models come from the reference zoo (ban.zoo, cached with the tests' models); held-out pool: its 6000 defender images.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from ban.clean_data import CleanData
from ban.detectors import create_detector
from ban.zoo import Zoo, cache_folder


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--budget", type=float, default=1.0)
    p.add_argument("--models", default="badnets,clean")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--eval-samples", type=int, default=5000)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    z = Zoo(cache_folder(Path(__file__).resolve().parents[1]))
    clean = CleanData.from_images(z.defender)
    totals = {"paper": 0.0, "faithful": 0.0}
    print(f"budget {a.budget}, held-out images up to {a.eval_samples}, torch threads {a.threads}")
    print("model | preset | flagged | target | score | seconds | stages (s)")
    for name in a.models.split(","):
        model = z.get(name).model
        for preset in ("faithful", "paper"):
            det = create_detector("ban", preset=preset, budget=a.budget, eval_samples=a.eval_samples)
            start = time.perf_counter()
            v = det.detect(model, clean)
            seconds = time.perf_counter() - start
            totals[preset] += seconds
            stages = {k: round(t, 1) for k, t in v.details["seconds_per_stage"].items()}
            print(
                f"{name} | {preset} | {v.backdoored} | {v.target} | {v.score:.3f} | {seconds:.1f} | {stages}",
                flush=True,
            )
    ratio = totals["faithful"] / max(totals["paper"], 1e-9)
    print(f"total: faithful {totals['faithful']:.1f} s, paper {totals['paper']:.1f} s -> paper is {ratio:.1f}x faster")


if __name__ == "__main__":
    main()
