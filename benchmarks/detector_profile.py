"""Where a detector's time goes: run it under cProfile on one checkpoint for a fixed allowance and print
the functions with the most cumulative and own time, and the share of the run spent in the model's
forward and backward passes.

Usage: python benchmarks/detector_profile.py runs/fmnist-r18/models/badnets-...safetensors \\
           --detectors nc,tabor,featurere,unicorn,btidbf,btidbf-star --seconds 60 [--budget 1.0] [--threads 1]
Clean data: the defender's held-out 10 % of Fashion-MNIST's training set (the benches' split, seed 0).
The allowance is each detector's `time_limit` (a baseline decides from what it has when it runs out),
so every profile covers the same wall time of the method at its own settings.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time
from pathlib import Path

import torch

from ban.checkpoint import load_model
from ban.clean_data import CleanData
from ban.data.registry import load_dataset
from ban.data.split import defender_split
from ban.detectors import create_detector

HOT = ("conv2d", "batch_norm", "linear", "run_backward", "_conv_forward")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--detectors", default="nc,tabor,featurere,unicorn,btidbf,btidbf-star")
    ap.add_argument("--seconds", type=float, default=60.0, help="time_limit of every detector")
    ap.add_argument("--budget", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ckpt = load_model(args.checkpoint)
    train = load_dataset("fashion-mnist", "train", None)
    clean = CleanData.from_images(defender_split(train, 0.1, 0)[1])
    for name in [d for d in args.detectors.split(",") if d]:
        det = create_detector(name, seed=args.seed, device="cpu", quiet=True, budget=args.budget,
                              time_limit=args.seconds)  # fmt: skip
        prof = cProfile.Profile()
        start = time.perf_counter()
        prof.enable()
        verdict = det.detect(ckpt.model, clean)
        prof.disable()
        wall = time.perf_counter() - start
        buf = io.StringIO()
        stats = pstats.Stats(prof, stream=buf)
        own = {f"{Path(k[0]).name}:{k[2]}": v[2] for k, v in stats.stats.items()}  # type: ignore[attr-defined]
        hot = sum(t for f, t in own.items() if any(h in f for h in HOT))
        cut = verdict.details.get("cut_by_time_limit")
        print(f"\n## {name}: {wall:.1f} s, cut by the allowance: {cut}; verdict {verdict.backdoored} "
              f"target {verdict.target} score {verdict.score:.3f}")  # fmt: skip
        print(f"own time in conv/BN/linear forward and autograd backward: {hot:.1f} s ({hot / wall:.0%})")
        for key in ("cumulative", "tottime"):
            buf.seek(0)
            buf.truncate()
            stats.sort_stats(key).print_stats(args.top)
            lines = [ln for ln in buf.getvalue().splitlines() if ln.strip()][-(args.top + 1) :]
            print(f"by {key}:")
            print("\n".join(lines))


if __name__ == "__main__":
    main()
